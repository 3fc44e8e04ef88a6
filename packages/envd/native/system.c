// aiva-exec set-clock and reseed-rng: the guest clock and kernel RNG after a restore.
#include "aiva-exec.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------- clock

int cmd_set_clock(int argc, char **argv) {
  if (argc != 2) usage();
  struct timespec ts = {.tv_sec = (time_t)strtoll(argv[0], NULL, 10), .tv_nsec = strtol(argv[1], NULL, 10)};
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) die("clock_settime");
  return 0;
}

int cmd_reseed_rng(int argc, char **argv) {
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
