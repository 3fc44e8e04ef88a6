// Idmapped bind mounts for aiva-mount: a host directory (a volume) seen through a
// sandbox's user namespace, so that the ids stored on disk are the sandbox's own (a file
// its `user` writes is stored as 1000, whichever sandbox wrote it) and every sandbox that
// mounts the directory sees the same owners.
//
//   aiva-mount bind --userns USERNS_FILE SOURCE TARGET
//
// The mount at TARGET (which must exist) is SOURCE alone (not its submounts), nosuid and
// nodev; remove it with `umount TARGET`. SOURCE must be a directory, not a symlink.
#include "aiva-mount.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

int cmd_bind(int argc, char **argv) {
  const char *userns_path = NULL, *source = NULL, *target = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--userns")) {
      if (i + 1 >= argc) usage("--userns lacks its value");
      userns_path = argv[++i];
    } else if (!source) {
      source = argv[i];
    } else if (!target) {
      target = argv[i];
    } else {
      usage("bind takes one SOURCE and one TARGET");
    }
  }
  if (!userns_path || !source || !target) usage("bind needs --userns FILE SOURCE TARGET");
  int ns = open(userns_path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) fail(1, "cannot open the user namespace %s", userns_path);
  int fd = open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
  if (fd < 0) fail(1, "open_tree %s", source);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                            .userns_fd = (unsigned long long)ns};
  if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    fail(1, "cannot idmap %s (mount_setattr MOUNT_ATTR_IDMAP; does its filesystem support idmapped mounts?)", source);
  if (move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    fail(1, "cannot mount %s at %s", source, target);
  return 0;
}
