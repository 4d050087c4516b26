/* The receiver's populate-ahead (migrate/rx_populate.h) on a memfd, as guest RAM is: it
 * stays a window ahead of the connection and no further, stops on a zero-heavy connection,
 * gives back on stop what no page landed in, and is joined on the error path too. What is
 * populated is read with mincore (page-cache residency of the shared mapping). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "migrate/protocol.h"
#include "migrate/rx_populate.h"

#define PG 4096ull
#define CH VMM_MIGRATE_CHUNK_PAGES

struct ram {
	int fd;
	uint8_t *p;
	uint64_t npages;
};

static void ram_new(struct ram *r, uint64_t npages)
{
	r->npages = npages;
	r->fd = memfd_create("test-rx-populate", MFD_CLOEXEC);
	assert_true(r->fd >= 0);
	assert_int_equal(ftruncate(r->fd, (off_t)(npages * PG)), 0);
	r->p = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	assert_true(r->p != MAP_FAILED);
}

static void ram_free(struct ram *r)
{
	munmap(r->p, r->npages * PG);
	close(r->fd);
}

static uint64_t resident(const struct ram *r, uint64_t *odd)
{
	unsigned char *v = malloc(r->npages);
	uint64_t n = 0;

	assert_non_null(v);
	assert_int_equal(mincore(r->p, r->npages * PG, v), 0);
	if (odd)
		*odd = 0;
	for (uint64_t i = 0; i < r->npages; i++) {
		n += v[i] & 1;
		if (odd && (i & 1))
			*odd += v[i] & 1;
	}
	free(v);
	return n;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000l };

	nanosleep(&ts, NULL);
}

/* Waits (up to 10 s) until want pages are resident, then a little longer: it must not go
 * past them. */
static void settles_at(const struct ram *r, uint64_t want)
{
	for (int i = 0; i < 1000 && resident(r, NULL) < want; i++)
		sleep_ms(10);
	sleep_ms(150);
	assert_int_equal(resident(r, NULL), want);
}

static int even_written(void *opaque, uint64_t page)
{
	(void)opaque;
	return !(page & 1);
}

/* Never more than the window ahead of the connection's cursor; nothing more while its
 * batches are mostly zero; on again once they are not. */
static void window_and_zero_heavy(void **state)
{
	struct vmm__rx_populate *p;
	struct ram r;
	uint64_t released;

	(void)state;
	vmm__rx_populate_enable(VMM__RX_POPULATE_ON);
	ram_new(&r, 64 * CH);
	assert_int_equal(vmm__rx_populate_start(r.p, r.npages, 1, &p), 0);
	assert_non_null(p);
	/* Before any batch: the chunk the connection starts in and the window after it. */
	settles_at(&r, (1 + VMM__RX_POPULATE_AHEAD) * CH);
	/* Mostly zero pages at chunk 4: it would be allowed to chunk 20, but stays put. */
	vmm__rx_populate_progress(p, 0, 4 * CH + 255, 256, 128);
	settles_at(&r, (1 + VMM__RX_POPULATE_AHEAD) * CH);
	/* Data again: up to chunk 4 + the window. */
	vmm__rx_populate_progress(p, 0, 4 * CH + 511, 256, 0);
	settles_at(&r, (5 + VMM__RX_POPULATE_AHEAD) * CH);
	/* Everything written: nothing given back. */
	assert_int_equal(vmm__rx_populate_stop(p, NULL, NULL, &released),
			 (5 + VMM__RX_POPULATE_AHEAD) * CH);
	assert_int_equal(released, 0);
	assert_int_equal(resident(&r, NULL), (5 + VMM__RX_POPULATE_AHEAD) * CH);
	ram_free(&r);
}

/* Populated pages no batch wrote (zero pages, the source's holes) are given back. */
static void unwritten_given_back(void **state)
{
	struct vmm__rx_populate *p;
	struct ram r;
	uint64_t released, odd;

	(void)state;
	vmm__rx_populate_enable(VMM__RX_POPULATE_ON);
	ram_new(&r, 8 * CH);
	assert_int_equal(vmm__rx_populate_start(r.p, r.npages, 2, &p), 0);
	assert_non_null(p);
	settles_at(&r, 8 * CH); /* two connections: every chunk is within a window */
	assert_int_equal(vmm__rx_populate_stop(p, even_written, NULL, &released), 8 * CH);
	assert_int_equal(released, 4 * CH);
	assert_int_equal(resident(&r, &odd), 4 * CH);
	assert_int_equal(odd, 0);
	ram_free(&r);
}

/* Off, and small VMs in the default mode: no thread at all; stop(NULL) is a no-op. */
static void off_and_small(void **state)
{
	struct vmm__rx_populate *p = (void *)1;
	struct ram r;

	(void)state;
	ram_new(&r, 4 * CH);
	vmm__rx_populate_enable(VMM__RX_POPULATE_OFF);
	assert_int_equal(vmm__rx_populate_start(r.p, r.npages, 1, &p), 0);
	assert_null(p);
	vmm__rx_populate_enable(VMM__RX_POPULATE_AUTO);
	assert_int_equal(vmm__rx_populate_start(r.p, r.npages, 1, &p), 0);
	assert_null(p);
	assert_int_equal(vmm__rx_populate_stop(NULL, even_written, NULL, NULL), 0);
	assert_int_equal(resident(&r, NULL), 0);
	ram_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(window_and_zero_heavy),
		cmocka_unit_test(unwritten_given_back),
		cmocka_unit_test(off_and_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
