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
#include "aiva-exec.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void die(const char *what) {
  fprintf(stderr, "aiva-exec: %s: %s\n", what, strerror(errno));
  exit(125);
}

void usage(void) {
  fprintf(stderr, "aiva-exec: usage: exec|xattr-get|xattr-set|watch|set-clock|reseed-rng ...\n");
  exit(2);
}

int write_all(int fd, const char *buf, size_t len) {
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

void put_hex(FILE *out, const unsigned char *data, size_t len) {
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
ssize_t unhex(char *s, size_t len) {
  if (len % 2 != 0) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    s[i] = (char)(hi << 4 | lo);
  }
  return (ssize_t)(len / 2);
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
