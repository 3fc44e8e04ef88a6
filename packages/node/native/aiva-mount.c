// aiva-mount: mounts a container sandbox's overlayfs root with idmapped layers, which
// `mount` (util-linux 2.38) cannot do. Built static like envd's aiva-exec.
//
//   aiva-mount overlay [--map ID:HOSTID:COUNT [--userns FILE]] [--idmap-upper]
//                      [--attach DIR] [-o KEY[=VALUE]]... --lower DIR...
//                      [--upper DIR --work DIR] TARGET
//   aiva-mount userns ...   (see userns.c)
//   aiva-mount bind ...     (see bind.c)
//
//   --lower DIR     a read-only layer; give them top first (like lowerdir=top:...:bottom)
//   --map           uid and gid mapping of the idmapped layers: a file owned by ID on
//                   disk is seen as HOSTID (and created as ID on disk by HOSTID). Without
//                   it, the layers are passed as they are (a plain overlay, by fd).
//   --userns FILE   idmap through this user namespace (the sandbox's, pinned by `aiva-mount
//                   userns`), whose mapping --map must give; else a throwaway one is made
//   --idmap-upper   idmap the upper and work directories as well, so that the upper
//                   layer keeps unshifted owners on disk. They must have one parent.
//   --attach DIR    do not pass layers by fd: attach each idmapped layer under DIR (which
//                   must exist), name it by path, and detach it once overlayfs has taken
//                   its own private copy; for kernels that refuse detached mounts as layers
//   -o KEY[=VALUE]  an overlayfs option (metacopy=on, index=off, ...)
//
// Exit status: 0 mounted, 1 the kernel refused (message on stderr, with overlayfs' own
// log when it gave one), 2 usage error, 3 a system call this needs does not exist.
// Nothing stays mounted (or attached under DIR) on failure.
#include "aiva-mount.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LAYERS 500 /* overlayfs' own limit (OVL_MAX_STACK) */
#define MAX_OPTS 32

static const char *lowers[MAX_LAYERS];
static int n_lowers;
static const char *opts[MAX_OPTS];
static int n_opts;
static const char *upper, *work, *target, *attach_dir, *userns_file;
static int idmap_upper;
static struct idmap map;
static int have_map;

/* Attached layer mounts to detach again (attach mode); set before anything can fail. */
static char attached[MAX_LAYERS + 1][4096];
static int n_attached;

static void cleanup_attached(void) {
  for (int i = n_attached - 1; i >= 0; i--) {
    umount2(attached[i], MNT_DETACH);
    rmdir(attached[i]);
  }
  n_attached = 0;
}

void (*on_fail)(void);

void fail(int code, const char *fmt, ...) {
  int e = errno;
  va_list ap;
  fputs("aiva-mount: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (e) fprintf(stderr, ": %s", strerror(e));
  fputc('\n', stderr);
  if (on_fail) on_fail();
  exit(e == ENOSYS ? 3 : code);
}

void usage(const char *why) {
  fprintf(stderr,
          "aiva-mount: %s\nusage: aiva-mount overlay [--map ID:HOSTID:COUNT [--userns FILE]] "
          "[--idmap-upper] [--attach DIR] [-o OPT]... --lower DIR... [--upper DIR --work DIR] TARGET\n"
          "       aiva-mount userns --map ID:HOSTID:COUNT USERNS_FILE [NETNS_FILE]\n"
          "       aiva-mount bind --userns USERNS_FILE SOURCE TARGET\n",
          why);
  if (on_fail) on_fail();
  exit(2);
}

/* overlayfs' messages about a failed fsconfig/create, from the context's log. */
static void print_fs_log(int fsfd) {
  int e = errno;
  char buf[1024];
  ssize_t n;
  while ((n = read(fsfd, buf, sizeof buf - 1)) > 0) {
    while (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = 0;
    fprintf(stderr, "aiva-mount: overlayfs says: %s\n", buf);
  }
  errno = e;
}

/* A detached copy of the mount at `path`, idmapped through `ns` (when >= 0). */
static int idmapped_clone(const char *path, int ns, int readonly) {
  int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) fail(1, "open_tree %s", path);
  if (ns < 0) return fd;
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | (readonly ? MOUNT_ATTR_RDONLY : 0),
                            .userns_fd = (unsigned long long)ns};
  if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    fail(1, "cannot idmap %s (mount_setattr MOUNT_ATTR_IDMAP; does its filesystem support idmapped mounts?)", path);
  return fd;
}

/* Attach mode: puts the detached mount `fd` at ATTACH/<name> and returns that path. */
static const char *attach(int fd, const char *name) {
  char *p = attached[n_attached];
  snprintf(p, sizeof attached[0], "%s/%s", attach_dir, name);
  if (mkdir(p, 0700) < 0 && errno != EEXIST) fail(1, "mkdir %s", p);
  if (move_mount(fd, "", AT_FDCWD, p, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    rmdir(p);
    fail(1, "cannot attach an idmapped layer at %s", p);
  }
  n_attached++;
  close(fd);
  return p;
}

static void set_layer(int fsfd, const char *key, int fd, const char *path, const char *shown) {
  int r = path ? fsconfig(fsfd, FSCONFIG_SET_STRING, key, path, 0)
               : fsconfig(fsfd, FSCONFIG_SET_FD, key, NULL, fd);
  if (r < 0) {
    print_fs_log(fsfd);
    fail(1, "overlayfs refused %s %s", key, shown);
  }
}

/* dirname and basename that leave their argument alone. */
static const char *parent_of(const char *p, char *buf, size_t size) {
  snprintf(buf, size, "%s", p);
  return dirname(buf);
}
static const char *base_of(const char *p, char *buf, size_t size) {
  snprintf(buf, size, "%s", p);
  return basename(buf);
}

static void parse(int argc, char **argv) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--idmap-upper")) {
      idmap_upper = 1;
      continue;
    }
    if (a[0] != '-') {
      if (target) usage("more than one TARGET");
      target = a;
      continue;
    }
    if (!v) usage("an option lacks its value");
    i++;
    if (!strcmp(a, "--lower")) {
      if (n_lowers == MAX_LAYERS) usage("too many layers");
      lowers[n_lowers++] = v;
    } else if (!strcmp(a, "--upper")) {
      upper = v;
    } else if (!strcmp(a, "--work")) {
      work = v;
    } else if (!strcmp(a, "--attach")) {
      attach_dir = v;
    } else if (!strcmp(a, "-o")) {
      if (n_opts == MAX_OPTS) usage("too many -o");
      opts[n_opts++] = v;
    } else if (!strcmp(a, "--userns")) {
      userns_file = v;
    } else if (!strcmp(a, "--map")) {
      map = parse_map(v);
      have_map = 1;
    } else {
      usage("unknown option");
    }
  }
  if (!target) usage("no TARGET");
  if (n_lowers == 0) usage("no --lower");
  if (!upper != !work) usage("--upper and --work go together");
  if (idmap_upper && (!have_map || !upper)) usage("--idmap-upper needs --map and --upper");
  if ((attach_dir || userns_file) && !have_map) usage("--attach and --userns need --map");
  char a[4096], b[4096];
  if (idmap_upper && strcmp(parent_of(upper, a, sizeof a), parent_of(work, b, sizeof b)) != 0)
    usage("--idmap-upper needs --upper and --work in one directory");
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "userns")) return cmd_userns(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "bind")) return cmd_bind(argc, argv);
  if (argc < 2 || strcmp(argv[1], "overlay") != 0) usage("unknown command");
  on_fail = cleanup_attached;
  parse(argc, argv);
  int ns = -1;
  if (userns_file) {
    ns = open(userns_file, O_RDONLY | O_CLOEXEC);
    if (ns < 0) fail(1, "cannot open the user namespace %s", userns_file);
  } else if (have_map) {
    ns = make_userns(map);
  }

  int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
  if (fsfd < 0) fail(1, "fsopen overlay (is the overlay module loaded?)");
  for (int i = 0; i < n_opts; i++) {
    char key[256];
    snprintf(key, sizeof key, "%s", opts[i]);
    char *eq = strchr(key, '=');
    if (eq) *eq = 0;
    int r = eq ? fsconfig(fsfd, FSCONFIG_SET_STRING, key, eq + 1, 0)
               : fsconfig(fsfd, FSCONFIG_SET_FLAG, key, NULL, 0);
    if (r < 0) {
      print_fs_log(fsfd);
      fail(1, "overlayfs refused option %s", opts[i]);
    }
  }

  for (int i = 0; i < n_lowers; i++) {
    int fd = ns >= 0 ? idmapped_clone(lowers[i], ns, 1)
                     : open(lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(1, "cannot open layer %s", lowers[i]);
    char name[32];
    snprintf(name, sizeof name, "l%d", i);
    const char *path = attach_dir ? attach(fd, name) : NULL;
    set_layer(fsfd, "lowerdir+", fd, path, lowers[i]);
    // Not closed: overlayfs copies a layer's mount at FSCONFIG_CMD_CREATE, and closing
    // the last fd of a detached mount unmounts it (it would then refuse to copy it).
  }

  if (upper) {
    char a[4096], b[4096];
    const char *dir = parent_of(upper, a, sizeof a);
    // Idmapped, upperdir and workdir must be on one mount: one copy of their parent.
    int tree = idmap_upper ? idmapped_clone(dir, ns, 0) : AT_FDCWD;
    const char *at = idmap_upper && attach_dir ? attach(tree, "u") : NULL;
    const char *keys[] = {"upperdir", "workdir"}, *dirs[] = {upper, work};
    for (int i = 0; i < 2; i++) {
      const char *name = idmap_upper ? base_of(dirs[i], b, sizeof b) : dirs[i];
      if (at) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", at, name);
        set_layer(fsfd, keys[i], -1, path, dirs[i]);
      } else {
        int fd = openat(tree, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) fail(1, "cannot open %s", dirs[i]);
        set_layer(fsfd, keys[i], fd, NULL, dirs[i]);
      }
    }
  }

  if (idmap_upper) {
    // overlayfs does its own work in the upper layer (work/, whiteouts, copy-up) with
    // the credentials of whoever creates it. Through an idmapped upper, uid 0 cannot be
    // written (EOVERFLOW, and overlayfs falls back to read-only): create it as the
    // mapped id, keeping the capabilities that setfsuid would otherwise drop.
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0) fail(1, "prctl(PR_SET_SECUREBITS)");
    // map.host is stored as map.id on disk (0: the sandbox's root).
    unsigned long host = map.host;
    setfsuid((uid_t)host);
    setfsgid((gid_t)host);
    if (setfsuid((uid_t)-1) != (int)host || setfsgid((gid_t)-1) != (int)host)
      fail(1, "setfsuid/setfsgid %lu", host);
  }
  if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
    print_fs_log(fsfd);
    fail(1, "overlayfs refused to mount");
  }
  int mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
  if (mnt < 0) fail(1, "fsmount");
  if (move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    fail(1, "cannot mount the overlay at %s", target);
  print_fs_log(fsfd); /* warnings (e.g. about index or metacopy) */
  cleanup_attached();
  return 0;
}
