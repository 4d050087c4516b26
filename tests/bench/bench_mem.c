/* Shared by the memory-path benches: bench_mem.h. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_mem.h"
#include "libvmm/clock.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

extern const char *program_invocation_short_name;

void bench_fail(const char *what)
{
	fprintf(stderr, "%s: %s\n", program_invocation_short_name, what);
	exit(1);
}

double bench_median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];

			v[j] = v[j - 1], v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

void bench_fill(uint8_t *buf, size_t len, uint64_t first_page, const char *pattern, uint64_t *x)
{
	static const char *const words[] = { "migration ", "guest ", "memory ", "page ", "the ",
					     "of ", "kernel ", "libvmm ", "and ", "dirty\n" };

	if (!strcmp(pattern, "text")) {
		for (size_t i = 0; i < len;)
			for (const char *w = words[xs(x) % 10]; *w && i < len; w++)
				buf[i++] = (uint8_t)*w;
		return;
	}
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xs(x);

		memcpy(buf + i, &v, 8);
	}
	if (!strcmp(pattern, "halfzero"))
		for (uint64_t p = 0; p < len / 4096; p++)
			if ((first_page + p) & 1)
				memset(buf + p * 4096, 0, 4096);
}

double bench_first_touch(uint64_t bytes, int memfd, int populate)
{
	int fd = memfd ? memfd_create("bench-touch", 0) : -1;
	uint8_t *m;
	double t0, t;

	if (memfd && (fd < 0 || ftruncate(fd, (off_t)bytes)))
		bench_fail("memfd");
	m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, memfd ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS,
		 fd, 0);
	if (m == MAP_FAILED)
		bench_fail("mmap");
	t0 = vmm__now_ns() / 1e9;
	if (!populate)
		memset(m, 0x5a, bytes);
	else if (madvise(m, bytes, MADV_POPULATE_WRITE))
		bench_fail("MADV_POPULATE_WRITE (Linux 5.14)");
	t = vmm__now_ns() / 1e9 - t0;
	munmap(m, bytes);
	if (fd >= 0)
		close(fd);
	return t;
}

void bench_drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return;
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}
