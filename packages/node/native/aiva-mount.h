// aiva-mount: shared declarations (see aiva-mount.c for the commands).
#pragma once
#define _GNU_SOURCE
#include <stdnoreturn.h>

/* A mapping of ids: ID..ID+COUNT-1 inside ↔ HOSTID.. on the host (one uid_map/gid_map line). */
struct idmap {
  unsigned long id, host, count;
};

/* Prints "aiva-mount: <message>[: strerror(errno)]", undoes what cleanup hooks hold, exits. */
noreturn void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
noreturn void usage(const char *why);
/* What fail() undoes first (attached layers); may be NULL. */
extern void (*on_fail)(void);

/* "ID:HOSTID:COUNT" */
struct idmap parse_map(const char *s);

/*
 * A new user namespace with `map` as its uid and gid map, held by a child process that
 * waits on *gate (close it to let the child exit, then reap *pid). With `net`, the child
 * also makes a network namespace, owned by the user namespace.
 */
void spawn_userns(struct idmap map, int net, int *pid, int *gate);
/* A user namespace fd carrying `map` only (the child is gone when this returns). */
int make_userns(struct idmap map);

int cmd_userns(int argc, char **argv);
int cmd_bind(int argc, char **argv);
