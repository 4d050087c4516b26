/* The pager with an asynchronous page source, as post-copy migration uses it: a fault asks
 * the "source" (a thread of this test holding the true pages) for the page and its
 * neighbours on a priority queue, the source answers those first while it pushes every
 * other page in the background, all over a socketpair that a receiver thread reads and
 * hands to vmm__pager_supply. Pure post-copy (every page missing) and hybrid (the pages
 * pre-copy sent are in RAM, the stale ones punched out) move every page correctly (checked
 * page by page, while threads fault on them in random order); the statistics count
 * faults, pulled and pushed pages and latencies. A link that breaks mid-way: the owner is
 * told first (VMM_EINDOUBT), a thread faulting on a missing page does not hang, the
 * library's check of that page reports the error, pages that came before are intact. A
 * source that is neither a file nor asynchronous is VMM_EINVAL. Skipped where
 * userfaultfd is refused. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/memory.h"
#include "libvmm/memory_pager.h"
#include "libvmm/vm_move.h"

#define PAGE 4096ull
#define NPAGES 1024ull
#define QMAX 4096

struct link {
	uint8_t *ref;   /* the source's true pages */
	uint64_t *send; /* pages the source still has to send (bitmap) */
	int fd_src, fd_dst;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t q[QMAX][2]; /* priority requests: page, n */
	unsigned qh, qt;
	int stop;
	uint64_t break_after; /* source stops sending after this many pages (0: never) */
	unsigned push_us;     /* background pace */
	struct vmm__pager *pager;
	uint8_t *host;
	int fails, fail_err;
};

/* The request op: on the pager's (sandboxed) thread, so it only queues and signals. */
static int req(void *ctx, uint64_t page, uint64_t n)
{
	struct link *l = ctx;

	pthread_mutex_lock(&l->lock);
	if (l->qt - l->qh < QMAX) {
		l->q[l->qt % QMAX][0] = page;
		l->q[l->qt % QMAX][1] = n;
		l->qt++;
	}
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int send_page(struct link *l, uint64_t page)
{
	uint8_t msg[8 + PAGE];

	memcpy(msg, &page, 8);
	memcpy(msg + 8, l->ref + page * PAGE, PAGE);
	return write(l->fd_src, msg, sizeof(msg)) == (ssize_t)sizeof(msg) ? 0 : -1;
}

static int take(uint64_t *map, uint64_t i)
{
	int had = (map[i / 64] >> (i % 64)) & 1;

	map[i / 64] &= ~(1ull << (i % 64));
	return had;
}

/* The source: requests first, else the next page of the background push. */
static void *source(void *arg)
{
	struct link *l = arg;
	uint64_t next = 0, sent = 0;

	for (;;) {
		uint64_t page = UINT64_MAX, n = 0;

		pthread_mutex_lock(&l->lock);
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			break;
		}
		if (l->qh != l->qt) {
			page = l->q[l->qh % QMAX][0];
			n = l->q[l->qh % QMAX][1];
			l->qh++;
		}
		pthread_mutex_unlock(&l->lock);
		if (n) {
			for (uint64_t i = page; i < page + n && i < NPAGES; i++)
				if (take(l->send, i) && !send_page(l, i))
					sent++;
		} else {
			while (next < NPAGES && !take(l->send, next))
				next++;
			if (next < NPAGES) {
				send_page(l, next++);
				sent++;
				unsigned us = __atomic_load_n(&l->push_us, __ATOMIC_RELAXED);

				if (us)
					usleep(us);
			} else {
				pthread_mutex_lock(&l->lock);
				while (!l->stop && l->qh == l->qt)
					pthread_cond_wait(&l->cond, &l->lock);
				pthread_mutex_unlock(&l->lock);
			}
		}
		if (l->break_after && sent >= l->break_after)
			break;
	}
	shutdown(l->fd_src, SHUT_RDWR); /* the link breaks (or the test ends) */
	return NULL;
}

static int read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t k = read(fd, buf + got, len - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* The destination's receiver: every page to the pager; EOF is a broken link. */
static void *receiver(void *arg)
{
	struct link *l = arg;
	static __thread uint8_t msg[8 + PAGE];
	struct vmm__pager_stats st;

	for (;;) {
		uint64_t page;

		vmm__pager_stats(l->pager, &st);
		if (st.loaded == NPAGES)
			break;
		if (read_full(l->fd_dst, msg, sizeof(msg))) {
			vmm__pager_source_lost(l->pager, VMM_EINDOUBT, "post-copy: the link to "
					       "the source broke");
			break;
		}
		memcpy(&page, msg, 8);
		assert_int_equal(vmm__pager_supply(l->pager, page, msg + 8), 0);
	}
	return NULL;
}

static void on_fail(void *ctx, int err, const char *detail)
{
	struct link *l = ctx;

	(void)detail;
	__atomic_store_n(&l->fail_err, err, __ATOMIC_RELEASE);
	__atomic_fetch_add(&l->fails, 1, __ATOMIC_ACQ_REL);
}

/* RAM (a shared memfd mapping), the true pages, the link. Returns 0, or 1 to skip. */
static int setup_link(struct link *l, int hybrid)
{
	int sv[2], fd = memfd_create("pager-src-test", MFD_CLOEXEC);

	memset(l, 0, sizeof(*l));
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(NPAGES * PAGE)), 0);
	l->host = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(l->host != MAP_FAILED);
	l->ref = malloc(NPAGES * PAGE);
	l->send = calloc(NPAGES / 64, 8);
	assert_non_null(l->ref);
	assert_non_null(l->send);
	for (uint64_t i = 0; i < NPAGES * PAGE / 8; i++)
		((uint64_t *)l->ref)[i] = i * 0x9e3779b97f4a7c15ull + 1;
	for (uint64_t i = 0; i < NPAGES; i++)
		l->send[i / 64] |= 1ull << (i % 64);
	if (hybrid) {
		/* Pre-copy sent every page; one in three was dirtied since: stale here. */
		memcpy(l->host, l->ref, NPAGES * PAGE);
		for (uint64_t i = 0; i < NPAGES; i++) {
			if (i % 3) {
				take(l->send, i);
				continue;
			}
			memset(l->host + i * PAGE, 0xee, PAGE);
			/* The destination drops the stale page: a hole, missing to the pager. */
			assert_int_equal(madvise(l->host + i * PAGE, PAGE, MADV_REMOVE), 0);
		}
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	l->fd_src = sv[0];
	l->fd_dst = sv[1];
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	{
		struct vmm__pager_source s = { .request = req, .ctx = l, .what = "test link" };
		int r = vmm__pager_start_source(l->host, NPAGES, &s, NULL, on_fail, l, &l->pager);

		if (r == VMM_EUNSUPPORTED)
			return 1;
		assert_int_equal(r, 0);
	}
	if (hybrid) {
		uint64_t *have = calloc(NPAGES / 64, 8);

		assert_non_null(have);
		for (uint64_t i = 0; i < NPAGES; i++)
			if (i % 3)
				have[i / 64] |= 1ull << (i % 64);
		vmm__pager_have(l->pager, have);
		free(have);
	}
	return 0;
}

static void teardown_link(struct link *l)
{
	vmm__pager_stop(l->pager);
	munmap(l->host, NPAGES * PAGE);
	close(l->fd_src);
	close(l->fd_dst);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->ref);
	free(l->send);
}

struct toucher {
	struct link *l;
	unsigned seed;
	int bad;
};

/* The guest: touches pages in a random order, each must read as the source's. */
static void *touch(void *arg)
{
	struct toucher *t = arg;

	for (int k = 0; k < 200; k++) {
		uint64_t page = (uint64_t)rand_r(&t->seed) % NPAGES;

		if (memcmp(t->l->host + page * PAGE, t->l->ref + page * PAGE, PAGE))
			t->bad++;
	}
	return NULL;
}

static void stop_source(struct link *l, pthread_t src)
{
	pthread_mutex_lock(&l->lock);
	l->stop = 1;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(src, NULL);
}

static void run_all(int hybrid)
{
	struct link l;
	struct toucher t[2];
	pthread_t src, rx, th[2];
	struct vmm__pager_stats st;

	if (setup_link(&l, hybrid))
		skip();
	l.push_us = 200; /* slow enough that the touchers fault ahead of the push */
	assert_int_equal(pthread_create(&src, NULL, source, &l), 0);
	assert_int_equal(pthread_create(&rx, NULL, receiver, &l), 0);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct toucher){ &l, 1234u + (unsigned)i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, touch, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
	assert_int_equal(vmm__pager_load_all(l.pager), 0); /* waits for the push's end */
	pthread_join(rx, NULL);
	stop_source(&l, src);
	for (uint64_t i = 0; i < NPAGES; i++)
		if (memcmp(l.host + i * PAGE, l.ref + i * PAGE, PAGE))
			fail_msg("page %llu differs", (unsigned long long)i);
	vmm__pager_stats(l.pager, &st);
	assert_int_equal(st.loaded, NPAGES);
	assert_true(st.faults > 0);
	assert_true(st.pulled > 0);
	assert_true(st.pushed > 0);
	assert_int_equal(st.pulled + st.pushed, hybrid ? (NPAGES + 2) / 3 : NPAGES);
	assert_true(st.lat_samples > 0);
	assert_true(st.lat_median_ns > 0 && st.lat_p99_ns >= st.lat_median_ns);
	assert_true(st.complete_ns > 0);
	assert_int_equal(l.fails, 0);
	assert_int_equal(vmm__pager_error(l.pager), 0);
	print_message("%s: %llu faults, %llu pulled, %llu pushed, latency median %llu us p99 "
		      "%llu us, last page after %llu ms\n", hybrid ? "hybrid" : "post-copy",
		      (unsigned long long)st.faults, (unsigned long long)st.pulled,
		      (unsigned long long)st.pushed, (unsigned long long)st.lat_median_ns / 1000,
		      (unsigned long long)st.lat_p99_ns / 1000,
		      (unsigned long long)st.complete_ns / 1000000);
	teardown_link(&l);
}

static void test_postcopy(void **state)
{
	(void)state;
	run_all(0);
}

static void test_hybrid(void **state)
{
	(void)state;
	run_all(1);
}

static void *touch_one(void *arg)
{
	struct link *l = arg;

	/* The last page: never pushed before the link breaks. */
	return (void *)(uintptr_t)l->host[(NPAGES - 1) * PAGE];
}

static void test_link_breaks(void **state)
{
	struct link l;
	pthread_t src, rx, th;
	uint64_t good = 0;

	(void)state;
	if (setup_link(&l, 0))
		skip();
	l.break_after = 100;
	assert_int_equal(pthread_create(&src, NULL, source, &l), 0);
	assert_int_equal(pthread_create(&rx, NULL, receiver, &l), 0);
	pthread_join(src, NULL); /* the source sent 100 pages, then the link broke */
	pthread_join(rx, NULL);
	assert_int_equal(l.fails, 1);
	assert_int_equal(l.fail_err, VMM_EINDOUBT);
	/* A fault after the loss: released (no hang), the page is an error, not data. */
	assert_int_equal(pthread_create(&th, NULL, touch_one, &l), 0);
	pthread_join(th, NULL);
	assert_int_equal(vmm__pager_range_ok(l.pager, NPAGES - 1, 1), VMM_EINDOUBT);
	assert_int_equal(vmm__pager_error(l.pager), VMM_EINDOUBT);
	assert_int_equal(l.fails, 1); /* told once */
	/* What came before is intact and not an error. */
	for (uint64_t i = 0; i < 100; i++) {
		assert_int_equal(vmm__pager_range_ok(l.pager, i, 1), 0);
		good += !memcmp(l.host + i * PAGE, l.ref + i * PAGE, PAGE);
	}
	assert_int_equal(good, 100);
	assert_int_equal(vmm__pager_load_all(l.pager), VMM_EINDOUBT); /* no wait forever */
	teardown_link(&l);
}

/* A VM on the fake kernel: RAM handed to the pager by vmm__move_ram_postcopy (hybrid: the
 * pages below FIRST are valid, the rest hold stale bytes that must be dropped); a vCPU's
 * touches fault and are served from the source; all of RAM then reads as the source's. */
#define FIRST 0x200000ull
static void test_vm(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(NPAGES * PAGE >> 20, 1, NULL, NULL);
	struct vmm__pager_source s = { .request = req, .what = "test link" };
	uint64_t *have = calloc(NPAGES / 64, 8);
	uint64_t last = NPAGES - 3;
	struct vmm__pager_stats st;
	struct link l;
	pthread_t src, rx;
	uint8_t *ram = malloc(NPAGES * PAGE);
	int r;

	(void)state;
	assert_non_null(vm);
	assert_non_null(have);
	assert_non_null(ram);
	memset(&l, 0, sizeof(l));
	l.ref = malloc(NPAGES * PAGE);
	l.send = calloc(NPAGES / 64, 8);
	assert_non_null(l.ref);
	assert_non_null(l.send);
	assert_int_equal(vmm_vm_mem_read(vm, 0, l.ref, NPAGES * PAGE), 0);
	for (uint64_t i = FIRST / PAGE; i < NPAGES; i++) {
		memset(l.ref + i * PAGE, (int)(i * 7 + 1), PAGE); /* the source's pages */
		memset(ram, 0xee, PAGE);                         /* stale here */
		assert_int_equal(vmm_vm_mem_write(vm, i * PAGE, ram, PAGE), 0);
		l.send[i / 64] |= 1ull << (i % 64);
	}
	for (uint64_t i = 0; i < FIRST / PAGE; i++)
		have[i / 64] |= 1ull << (i % 64);
	{
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		l.fd_src = sv[0];
		l.fd_dst = sv[1];
	}
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.cond, NULL);
	s.ctx = &l;
	r = vmm__move_ram_postcopy(vm, &s, have);
	free(have);
	if (r == VMM_EUNSUPPORTED) {
		vmm_vm_destroy(vm);
		skip();
	}
	assert_int_equal(r, 0);
	l.pager = vmm__move_ram(vm)->pager;
	vmm__pager_stats(l.pager, &st);
	assert_int_equal(st.npages, NPAGES);
	assert_int_equal(st.loaded, FIRST / PAGE);
	l.push_us = 2000; /* the vCPU's touches come long before the push reaches them */
	assert_int_equal(pthread_create(&src, NULL, source, &l), 0);
	assert_int_equal(pthread_create(&rx, NULL, receiver, &l), 0);
	fake_kvm_script_touch(0, (NPAGES - 40) * PAGE + 5);
	fake_kvm_script_touch(0, last * PAGE + 9);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(fake_kvm_script_wait(0), 0);
	assert_int_equal(fake_kvm_touched(0), l.ref[last * PAGE + 9]);
	vmm__pager_stats(l.pager, &st);
	assert_true(st.faults >= 2);
	assert_true(st.pulled >= 2);
	__atomic_store_n(&l.push_us, 0, __ATOMIC_RELAXED); /* the rest at full speed */
	assert_int_equal(vmm_vm_mem_read(vm, 0, ram, NPAGES * PAGE), 0);
	for (uint64_t i = 0; i < NPAGES; i++)
		if (memcmp(ram + i * PAGE, l.ref + i * PAGE, PAGE))
			fail_msg("page %llu differs", (unsigned long long)i);
	pthread_join(rx, NULL);
	stop_source(&l, src);
	vmm_vm_destroy(vm);
	close(l.fd_src);
	close(l.fd_dst);
	pthread_mutex_destroy(&l.lock);
	pthread_cond_destroy(&l.cond);
	free(l.ref);
	free(l.send);
	free(ram);
}

static void test_bad_source(void **state)
{
	struct vmm__pager_source s = { .ctx = NULL };
	struct vmm__pager *p = (struct vmm__pager *)1;
	uint8_t *host = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			     -1, 0);

	(void)state;
	assert_true(host != MAP_FAILED);
	assert_int_equal(vmm__pager_start_source(host, 1, &s, NULL, NULL, NULL, &p),
			 VMM_EINVAL);
	assert_null(p);
	assert_int_equal(vmm__pager_start_source(host, 1, NULL, NULL, NULL, NULL, &p),
			 VMM_EINVAL);
	munmap(host, PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postcopy),
		cmocka_unit_test(test_hybrid),
		cmocka_unit_test(test_link_breaks),
		cmocka_unit_test_setup(test_vm, fake_vm_setup),
		cmocka_unit_test(test_bad_source),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
