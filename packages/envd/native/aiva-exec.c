// aiva-exec: the small native helper envd runs for what Node.js cannot do itself.
// Built static (no NSS, no shared libraries) so that it runs in any guest rootfs.
//
//   aiva-exec exec [--uid U --gid G --groups G1,G2,...] [--pty COLS ROWS] -- CMD ARG...
//       Runs CMD as the given user (supplementary groups included, unlike libuv's
//       uid/gid options, which drop them). Without --pty it becomes CMD (same pid). With
//       --pty it forks CMD on a new pseudo-terminal as a session leader with the PTY as
//       its controlling terminal, relays stdin -> PTY and PTY -> stdout, takes resize
//       requests on fd 3 ("R cols rows\n"), and exits the way CMD exited (same code, or
//       killed by the same signal).
//       fd 3 (when open) reports how the start went: "E <message>\n" if CMD could not be
//       started; otherwise, with --pty, "P <pid>\n" once CMD has been exec'd, and without,
//       nothing (fd 3 is close-on-exec, so its EOF means CMD runs).
//   aiva-exec xattr-get PATH...        user.e2b.* attributes of each path: a line "<n>",
//                                      then n lines "<key hex>\t<value hex>"
//   aiva-exec xattr-set PATH [KEYHEX=VALUEHEX]...   replaces the user.e2b.* set of PATH
//   aiva-exec watch [--recursive] DIR  inotify events as lines "<TYPE>\t<name hex>",
//                                      after a first line "S"; ends on stdin EOF
//   aiva-exec set-clock SECONDS NANOSECONDS          clock_settime(CLOCK_REALTIME)
//   aiva-exec reseed-rng HEX           mixes the bytes into the kernel's entropy pool,
//                                      credited, and reseeds its CRNG at once: clones
//                                      of one saved VM stop sharing their random state
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define XATTR_PREFIX "user.e2b."
#define CONTROL_FD 3

static void die(const char *what) {
  fprintf(stderr, "aiva-exec: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void usage(void) {
  fprintf(stderr, "aiva-exec: usage: exec|xattr-get|xattr-set|watch|set-clock|reseed-rng ...\n");
  exit(2);
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void put_hex(FILE *out, const unsigned char *data, size_t len) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    fputc(digits[data[i] >> 4], out);
    fputc(digits[data[i] & 15], out);
  }
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes hex in place; returns the decoded length or -1.
static ssize_t unhex(char *s, size_t len) {
  if (len % 2 != 0) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    s[i] = (char)(hi << 4 | lo);
  }
  return (ssize_t)(len / 2);
}

// ---------------------------------------------------------------------------- exec

struct creds {
  int set;
  uid_t uid;
  gid_t gid;
  gid_t groups[NGROUPS_MAX];
  size_t ngroups;
};

// Drops to the user. Returns 0 or an errno.
static int apply_creds(const struct creds *c) {
  if (!c->set) return 0;
  if (setgroups(c->ngroups, c->groups) != 0) return errno;
  if (setgid(c->gid) != 0) return errno;
  if (setuid(c->uid) != 0) return errno;
  return 0;
}

static void parse_groups(struct creds *c, const char *list) {
  char *copy = strdup(list), *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok && c->ngroups < NGROUPS_MAX; tok = strtok_r(NULL, ",", &save))
    c->groups[c->ngroups++] = (gid_t)strtoul(tok, NULL, 10);
  free(copy);
}

// Reports a start failure on fd 3 (if open) and stderr.
static void report_start_error(int control, const char *what, int err, const char *cmd) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "E %s '%s': %s\n", what, cmd, strerror(err));
  if (control >= 0) write_all(control, msg, (size_t)n);
  else write_all(2, msg + 2, (size_t)n - 2);
}

static void exit_like(int status) {
  if (WIFEXITED(status)) exit(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
  }
  exit(125);
}

static int sigchld_pipe[2];
static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  (void)write(sigchld_pipe[1], "c", 1);
  errno = saved;
}

static void set_winsize(int fd, unsigned cols, unsigned rows) {
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  ioctl(fd, TIOCSWINSZ, &ws);
}

// Reads and applies "R cols rows" lines from the control fd. Returns 0 at EOF.
static int handle_control(int control, int master, char *buf, size_t *len, size_t cap) {
  ssize_t n = read(control, buf + *len, cap - *len - 1);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return 0;
  *len += (size_t)n;
  buf[*len] = 0;
  char *line = buf, *nl;
  while ((nl = strchr(line, '\n')) != NULL) {
    *nl = 0;
    unsigned cols, rows;
    if (sscanf(line, "R %u %u", &cols, &rows) == 2) set_winsize(master, cols, rows);
    line = nl + 1;
  }
  *len = strlen(line);
  memmove(buf, line, *len);
  if (*len >= cap - 1) *len = 0;  // a line that long is garbage
  return 1;
}

static int run_pty(const struct creds *c, unsigned cols, unsigned rows, char **argv) {
  int control = fcntl(CONTROL_FD, F_GETFD) == -1 ? -1 : CONTROL_FD;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    report_start_error(control, "cannot open a pty for", errno, argv[0]);
    return 125;
  }
  char *slave_name = ptsname(master);
  set_winsize(master, cols, rows);
  int status_pipe[2];
  if (pipe2(status_pipe, O_CLOEXEC) != 0 || pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("pipe");
  struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(status_pipe[0]);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    int err = 0;
    const char *what = "cannot start";
    if (setsid() < 0) err = errno, what = "setsid failed for";
    int slave = err ? -1 : open(slave_name, O_RDWR);
    if (!err && slave < 0) err = errno, what = "cannot open the pty for";
    if (!err && ioctl(slave, TIOCSCTTY, 0) != 0) err = errno, what = "cannot make the pty the terminal of";
    if (!err) {
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      if (slave > 2) close(slave);
      if (control >= 0) close(control);
      err = apply_creds(c);
      if (err) what = "cannot switch user for";
    }
    if (!err) {
      execvp(argv[0], argv);
      err = errno;
      what = "cannot execute";
    }
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s '%s': %s", what, argv[0], strerror(err));
    write_all(status_pipe[1], msg, (size_t)n);
    _exit(127);
  }
  close(status_pipe[1]);
  char msg[512];
  ssize_t n, got = 0;
  while ((n = read(status_pipe[0], msg + got, sizeof msg - 1 - (size_t)got)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) got += n;
  close(status_pipe[0]);
  if (got > 0) {
    msg[got] = 0;
    char line[600];
    int len = snprintf(line, sizeof line, "E %s\n", msg);
    if (control >= 0) write_all(control, line, (size_t)len);
    else fprintf(stderr, "aiva-exec: %s\n", msg);
    waitpid(pid, NULL, 0);
    return 125;
  }
  if (control >= 0) {
    char line[32];
    int len = snprintf(line, sizeof line, "P %d\n", (int)pid);
    write_all(control, line, (size_t)len);
  }

  char buf[16384], ctl[256];
  size_t ctl_len = 0;
  int stdin_open = 1, control_open = control >= 0, master_open = 1, exited = 0, status = 0;
  while (master_open) {
    struct pollfd fds[4] = {
        {.fd = master, .events = POLLIN},
        {.fd = stdin_open ? 0 : -1, .events = POLLIN},
        {.fd = control_open ? control : -1, .events = POLLIN},
        {.fd = sigchld_pipe[0], .events = POLLIN},
    };
    // Once the command has exited, drain what the PTY still holds, then stop: other
    // processes of the session may keep the terminal open, but the command is over.
    int r = poll(fds, 4, exited ? 0 : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (r == 0 && exited) break;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      n = read(master, buf, sizeof buf);
      if (n > 0) {
        if (write_all(1, buf, (size_t)n) != 0) stdin_open = 0;
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        master_open = 0;  // EIO: no process holds the terminal any more
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      n = read(0, buf, sizeof buf);
      if (n > 0) write_all(master, buf, (size_t)n);
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) stdin_open = 0;
    }
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR))
      control_open = handle_control(control, master, ctl, &ctl_len, sizeof ctl);
    if (fds[3].revents & POLLIN) {
      char drain[64];
      while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
      }
      if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
    }
  }
  if (!exited) waitpid(pid, &status, 0);
  close(master);
  exit_like(status);
  return 125;
}

static int cmd_exec(int argc, char **argv) {
  struct creds c = {0};
  int pty = 0;
  unsigned cols = 80, rows = 24;
  int i = 0;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else if (strcmp(argv[i], "--uid") == 0 && i + 1 < argc) {
      c.set = 1;
      c.uid = (uid_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--gid") == 0 && i + 1 < argc) {
      c.gid = (gid_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--groups") == 0 && i + 1 < argc) {
      parse_groups(&c, argv[++i]);
    } else if (strcmp(argv[i], "--pty") == 0 && i + 2 < argc) {
      pty = 1;
      cols = (unsigned)strtoul(argv[++i], NULL, 10);
      rows = (unsigned)strtoul(argv[++i], NULL, 10);
    } else {
      usage();
    }
  }
  if (i >= argc) usage();
  char **cmd = argv + i;
  if (pty) return run_pty(&c, cols, rows, cmd);

  int control = fcntl(CONTROL_FD, F_GETFD) == -1 ? -1 : CONTROL_FD;
  if (control >= 0) fcntl(control, F_SETFD, FD_CLOEXEC);
  int err = apply_creds(&c);
  if (err) {
    report_start_error(control, "cannot switch user for", err, cmd[0]);
    return 125;
  }
  execvp(cmd[0], cmd);
  report_start_error(control, "cannot execute", errno, cmd[0]);
  return 127;
}

// --------------------------------------------------------------------------- xattr

static int cmd_xattr_get(int argc, char **argv) {
  static char names[65536], value[65536];
  for (int i = 0; i < argc; i++) {
    ssize_t len = listxattr(argv[i], names, sizeof names);
    if (len < 0) len = 0;
    int count = 0;
    for (ssize_t off = 0; off < len; off += (ssize_t)strlen(names + off) + 1)
      if (strncmp(names + off, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) count++;
    printf("%d\n", count);
    for (ssize_t off = 0; off < len; off += (ssize_t)strlen(names + off) + 1) {
      const char *name = names + off;
      if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) continue;
      ssize_t vlen = getxattr(argv[i], name, value, sizeof value);
      if (vlen < 0) vlen = 0;
      const char *key = name + strlen(XATTR_PREFIX);
      put_hex(stdout, (const unsigned char *)key, strlen(key));
      putchar('\t');
      put_hex(stdout, (const unsigned char *)value, (size_t)vlen);
      putchar('\n');
    }
  }
  return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_xattr_set(int argc, char **argv) {
  if (argc < 1) usage();
  const char *path = argv[0];
  static char names[65536];
  ssize_t len = listxattr(path, names, sizeof names);
  if (len < 0 && errno != ENOTSUP) die(path);
  for (ssize_t off = 0; off < len; off += (ssize_t)strlen(names + off) + 1)
    if (strncmp(names + off, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0 && removexattr(path, names + off) != 0)
      die(path);
  for (int i = 1; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq) usage();
    *eq = 0;
    char *key = argv[i], *val = eq + 1;
    ssize_t klen = unhex(key, strlen(key)), vlen = unhex(val, strlen(val));
    if (klen <= 0 || vlen < 0) usage();
    char name[512];
    if ((size_t)klen + strlen(XATTR_PREFIX) >= sizeof name) {
      errno = ERANGE;
      die("metadata key");
    }
    snprintf(name, sizeof name, "%s%.*s", XATTR_PREFIX, (int)klen, key);
    if (setxattr(path, name, val, (size_t)vlen, 0) != 0) die(path);
  }
  return 0;
}

// --------------------------------------------------------------------------- watch

struct watch {
  int wd;
  char *rel;  // relative to the watched root; "" for the root
};
static struct watch *watches;
static size_t nwatches, capwatches;
static int inotify_fd;
static const char *watch_root;

#define WATCH_MASK                                                                                      \
  (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | \
   IN_MOVE_SELF | IN_ONLYDIR)

static const char *rel_of(int wd) {
  for (size_t i = 0; i < nwatches; i++)
    if (watches[i].wd == wd) return watches[i].rel;
  return NULL;
}

static void forget(int wd) {
  for (size_t i = 0; i < nwatches; i++)
    if (watches[i].wd == wd) {
      free(watches[i].rel);
      watches[i] = watches[--nwatches];
      return;
    }
}

static void add_watch(const char *rel, int recursive) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s%s%s", watch_root, *rel ? "/" : "", rel);
  int wd = inotify_add_watch(inotify_fd, path, WATCH_MASK);
  if (wd < 0) {
    if (*rel == 0) die(path);
    return;  // vanished or not a directory any more
  }
  if (!rel_of(wd)) {
    if (nwatches == capwatches) {
      capwatches = capwatches ? capwatches * 2 : 64;
      watches = realloc(watches, capwatches * sizeof *watches);
      if (!watches) die("realloc");
    }
    watches[nwatches].wd = wd;
    watches[nwatches].rel = strdup(rel);
    nwatches++;
  }
  if (!recursive) return;
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      char child[PATH_MAX + NAME_MAX + 2];
      snprintf(child, sizeof child, "%s/%s", path, e->d_name);
      is_dir = lstat(child, &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (!is_dir) continue;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    add_watch(sub, 1);
  }
  closedir(d);
}

static void emit(const char *type, const char *rel, const char *name) {
  char full[PATH_MAX];
  snprintf(full, sizeof full, "%s%s%s", rel, *rel ? "/" : "", name);
  fputs(type, stdout);
  putchar('\t');
  put_hex(stdout, (const unsigned char *)full, strlen(full));
  putchar('\n');
}

static int cmd_watch(int argc, char **argv) {
  int recursive = 0;
  if (argc >= 1 && strcmp(argv[0], "--recursive") == 0) recursive = 1, argc--, argv++;
  if (argc != 1) usage();
  watch_root = argv[0];
  inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd < 0) die("inotify_init1");
  add_watch("", recursive);
  puts("S");
  fflush(stdout);
  signal(SIGPIPE, SIG_IGN);
  _Alignas(struct inotify_event) char buf[65536];
  for (;;) {
    struct pollfd fds[2] = {{.fd = inotify_fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) {
      char tmp[256];
      ssize_t n = read(0, tmp, sizeof tmp);
      if (n <= 0) return 0;  // envd closed our stdin: the watch is over
    }
    if (!(fds[0].revents & POLLIN)) continue;
    ssize_t len = read(inotify_fd, buf, sizeof buf);
    if (len < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("read inotify");
    }
    for (char *p = buf; p < buf + len;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      p += sizeof *ev + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        puts("E\toverflow");
        continue;
      }
      const char *rel = rel_of(ev->wd);
      if (!rel) continue;
      if (ev->mask & IN_IGNORED) {
        int root = *rel == 0;
        forget(ev->wd);
        if (root) {
          puts("X");
          fflush(stdout);
          return 0;
        }
        continue;
      }
      if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && *rel == 0) {
        puts("X");
        fflush(stdout);
        return 0;
      }
      if (ev->len == 0) continue;
      const char *name = ev->name;
      if (ev->mask & IN_CREATE) emit("CREATE", rel, name);
      if (ev->mask & IN_MOVED_TO) emit("CREATE", rel, name);
      if (ev->mask & IN_MODIFY) emit("WRITE", rel, name);
      if (ev->mask & IN_DELETE) emit("REMOVE", rel, name);
      if (ev->mask & IN_MOVED_FROM) emit("RENAME", rel, name);
      if (ev->mask & IN_ATTRIB) emit("CHMOD", rel, name);
      if (recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name);
        add_watch(sub, 1);
      }
    }
    fflush(stdout);
  }
}

// ---------------------------------------------------------------------------- clock

static int cmd_set_clock(int argc, char **argv) {
  if (argc != 2) usage();
  struct timespec ts = {.tv_sec = (time_t)strtoll(argv[0], NULL, 10), .tv_nsec = strtol(argv[1], NULL, 10)};
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) die("clock_settime");
  return 0;
}

static int cmd_reseed_rng(int argc, char **argv) {
  if (argc != 1) usage();
  size_t hexlen = strlen(argv[0]);
  if (hexlen == 0 || hexlen > 1024) usage();
  struct {
    struct rand_pool_info info;
    char bytes[512];
  } seed;
  // Decoded in place first: at most 1024 hex digits make at most 512 bytes.
  ssize_t n = unhex(argv[0], hexlen);
  if (n <= 0) usage();
  memcpy(seed.bytes, argv[0], (size_t)n);
  seed.info.buf_size = (int)n;
  seed.info.entropy_count = (int)n * 8;
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open /dev/urandom");
  if (ioctl(fd, RNDADDENTROPY, &seed.info) != 0) die("RNDADDENTROPY");
  if (ioctl(fd, RNDRESEEDCRNG) != 0) die("RNDRESEEDCRNG");
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *cmd = argv[1];
  argc -= 2;
  argv += 2;
  if (strcmp(cmd, "exec") == 0) return cmd_exec(argc, argv);
  if (strcmp(cmd, "xattr-get") == 0) return cmd_xattr_get(argc, argv);
  if (strcmp(cmd, "xattr-set") == 0) return cmd_xattr_set(argc, argv);
  if (strcmp(cmd, "watch") == 0) return cmd_watch(argc, argv);
  if (strcmp(cmd, "set-clock") == 0) return cmd_set_clock(argc, argv);
  if (strcmp(cmd, "reseed-rng") == 0) return cmd_reseed_rng(argc, argv);
  usage();
  return 2;
}
