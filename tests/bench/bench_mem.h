/* What the memory-path benches share (issue 14): the three memory contents of
 * tests/guests/fill.c, medians, and the first-touch limit of fresh memory. */
#ifndef VMM_BENCH_MEM_H
#define VMM_BENCH_MEM_H

#include <stddef.h>
#include <stdint.h>

/* Prints "NAME: what" on stderr and exits 1: a bench that cannot measure says why. */
void bench_fail(const char *what);
/* The median of v[0..n) (sorts v). */
double bench_median(double *v, int n);
/* Fills buf (len bytes, a multiple of 4096) with pattern "random", "text" or "halfzero"
 * (random with every odd page zero); first_page numbers buf's first page in RAM, *x is the
 * generator's state (non-zero), carried from one call to the next. */
void bench_fill(uint8_t *buf, size_t len, uint64_t first_page, const char *pattern, uint64_t *x);
/* Seconds to write every byte of `bytes` of fresh memory: a new memfd (shared, what guest
 * RAM is) or new anonymous memory. With populate, by MADV_POPULATE_WRITE instead of
 * stores (one call, no page faults: what a kernel can do at best). */
double bench_first_touch(uint64_t bytes, int memfd, int populate);
/* Writes back and evicts path from the page cache: the next read comes from the disk. */
void bench_drop_cache(const char *path);

#endif
