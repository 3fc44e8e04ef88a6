// aiva-exec exec: a command as a user, on pipes or a pseudo-terminal.
#include "aiva-exec.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

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

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)write(fd, text, strlen(text));
  close(fd);
}

// A command started here is the user's. It joins the user's cgroup where the runtime
// gives one (a container's: its limits are the sandbox's, and envd stays outside it),
// and the out-of-memory killer takes it (the biggest first) before envd and init, which
// run at -1000 where the host lets them and at 0 otherwise (raising one's own score needs
// no privilege).
// A command that cannot join (its processes at their limit: EAGAIN) does not start, rather
// than run outside the user's limits.
static void enter_user_share(void) {
  static const char *const controllers[] = {"memory", "cpu", "cpuacct", "pids"};
  char path[64];
  for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++) {
    snprintf(path, sizeof path, "/run/aiva/user-cgroup/%s", controllers[i]);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;  // no user's cgroup here (the runtime gives none)
    if (write(fd, "0\n", 2) < 0) {
      int e = errno;
      fprintf(stderr, "aiva-exec: cannot start the command: %s\n",
              e == EAGAIN ? "the sandbox's processes are at their limit (Resource temporarily unavailable)"
                          : strerror(e));
      exit(126);
    }
    close(fd);
  }
  write_file("/proc/self/oom_score_adj", "500");
}

int cmd_exec(int argc, char **argv) {
  enter_user_share();
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

