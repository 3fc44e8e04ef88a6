// What aiva-exec's parts share: error exits, writes, hex, and one entry point per
// command (see aiva-exec.c for the commands and their protocols).
#ifndef AIVA_EXEC_H
#define AIVA_EXEC_H
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/types.h>

#define XATTR_PREFIX "user.e2b."
#define CONTROL_FD 3

void die(const char *what);
void usage(void);
int write_all(int fd, const char *buf, size_t len);
void put_hex(FILE *out, const unsigned char *data, size_t len);
// Decodes hex in place; returns the decoded length or -1.
ssize_t unhex(char *s, size_t len);

int cmd_exec(int argc, char **argv);
int cmd_xattr_get(int argc, char **argv);
int cmd_xattr_set(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_set_clock(int argc, char **argv);
int cmd_reseed_rng(int argc, char **argv);
#endif
