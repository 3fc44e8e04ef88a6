// aiva-exec xattr-get, xattr-set and watch: file metadata and inotify.
#include "aiva-exec.h"
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

// --------------------------------------------------------------------------- xattr

int cmd_xattr_get(int argc, char **argv) {
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

int cmd_xattr_set(int argc, char **argv) {
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

int cmd_watch(int argc, char **argv) {
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

