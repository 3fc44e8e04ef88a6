// User namespaces for aiva-mount: throwaway ones that carry an idmapping, and pinned
// ones (bind-mounted on a file) that a sandbox joins, optionally with a network
// namespace they own.
//
//   aiva-mount userns --map ID:HOSTID:COUNT USERNS_FILE [NETNS_FILE]
//
// The files must exist (empty regular files); remove with `umount FILE; rm FILE` (`ip
// netns del` for a NETNS_FILE under /run/netns). A network namespace owned by the
// sandbox's user namespace lets runc mount sysfs there, and gives the sandbox's root its
// raw sockets and low ports, as without a user namespace.
#include "aiva-mount.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct idmap parse_map(const char *s) {
  struct idmap m;
  char *e;
  errno = 0;
  m.id = strtoul(s, &e, 10);
  if (errno || *e != ':') usage("bad --map (ID:HOSTID:COUNT)");
  m.host = strtoul(e + 1, &e, 10);
  if (errno || *e != ':') usage("bad --map (ID:HOSTID:COUNT)");
  m.count = strtoul(e + 1, &e, 10);
  if (errno || *e || m.count == 0) usage("bad --map (ID:HOSTID:COUNT)");
  return m;
}

static void read_byte(int fd) {
  char c;
  while (read(fd, &c, 1) < 0 && errno == EINTR) {
  }
}

void spawn_userns(struct idmap map, int net, int *pid_out, int *gate_out) {
  int gate[2], ready[2];
  if (pipe2(gate, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) fail(1, "pipe");
  pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) fail(1, "cannot create a user namespace (clone CLONE_NEWUSER)");
  if (pid == 0) {
    // Waits for its maps (the first byte), makes the network namespace if asked (as
    // root of the new user namespace), says so, and lives until the gate closes.
    close(gate[1]);
    close(ready[0]);
    read_byte(gate[0]);
    if (net && unshare(CLONE_NEWNET) < 0) _exit(1);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    read_byte(gate[0]);
    _exit(0);
  }
  close(gate[0]);
  close(ready[1]);
  char path[64], line[96];
  int len = snprintf(line, sizeof line, "%lu %lu %lu\n", map.id, map.host, map.count);
  const char *maps[] = {"uid_map", "gid_map"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "/proc/%d/%s", pid, maps[i]);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, line, (size_t)len) != len) {
      int e = errno;
      kill(pid, SIGKILL);
      errno = e;
      fail(1, "cannot write %s (%.*s)", path, len - 1, line);
    }
    close(fd);
  }
  char c;
  if (write(gate[1], "g", 1) != 1 || read(ready[0], &c, 1) != 1) {
    kill(pid, SIGKILL);
    errno = 0;
    fail(1, "the namespace holder failed (cannot make a network namespace?)");
  }
  close(ready[0]);
  *pid_out = pid;
  *gate_out = gate[1];
}

static void reap(int pid, int gate) {
  close(gate);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

int make_userns(struct idmap map) {
  int pid, gate;
  spawn_userns(map, 0, &pid, &gate);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) fail(1, "cannot open %s", path);
  reap(pid, gate);
  return ns;
}

int cmd_userns(int argc, char **argv) {
  struct idmap map = {0};
  const char *files[2] = {NULL, NULL};
  int n = 0, have_map = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--map") && i + 1 < argc) {
      map = parse_map(argv[++i]);
      have_map = 1;
    } else if (argv[i][0] != '-' && n < 2) {
      files[n++] = argv[i];
    } else {
      usage("aiva-mount userns --map ID:HOSTID:COUNT USERNS_FILE [NETNS_FILE]");
    }
  }
  if (!have_map || n == 0) usage("aiva-mount userns --map ID:HOSTID:COUNT USERNS_FILE [NETNS_FILE]");
  int pid, gate;
  spawn_userns(map, files[1] != NULL, &pid, &gate);
  const char *kinds[] = {"user", "net"};
  for (int i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, kinds[i]);
    if (mount(path, files[i], NULL, MS_BIND, NULL) < 0) {
      int e = errno;
      if (i == 1) umount2(files[0], MNT_DETACH);
      kill(pid, SIGKILL);
      reap(pid, gate);
      errno = e;
      fail(1, "cannot pin %s on %s", path, files[i]);
    }
  }
  reap(pid, gate);
  return 0;
}
