/* The pager (memory_pager.h): guest RAM loaded on demand through userfaultfd, every page
 * checked against its hash before the guest can see it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <xxhash.h>

#include "libvmm/bitmap.h"
#include "libvmm/clock.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory_pager.h"
#include "libvmm/sandbox.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* /dev/userfaultfd, Linux 6.1 */
#endif

/* Guest pages (memory.h has the same; not included: memory.c uses this file). */
#define VMM_PAGE_SIZE 4096ull

/* Latency slots for faults waiting on an asynchronous source. */
#define FAULT_SLOTS 256

/* Pages read from the file per pread when loading everything. */
#define LOAD_CHUNK 64

struct vmm__pager {
	uint8_t *host;
	uint64_t npages;
	int uffd;
	int stopfd; /* eventfd: wakes the thread (stop, or a recording to start) */
	int stop;   /* atomic */
	int fd;     /* the file source's file, our own duplicate (-1 for another source) */
	uint64_t offset;
	struct vmm__pager_source src; /* where pages come from (memory_pager.h) */
	uint64_t *hashes;  /* NULL: the source vouches for its pages (a migration link) */
	uint64_t *requested; /* pages asked of an asynchronous source (bitmap, atomic) */
	/* Faults waiting for an asynchronous source, for their latency: slot page % FAULT_SLOTS
	 * holds page + 1 and when it faulted. A slot is filled only by the pager's thread
	 * while empty, emptied only by vmm__pager_supply: one writer per transition. A fault
	 * whose slot is taken is not sampled (a few vCPUs fault at once, not hundreds). */
	struct {
		uint64_t page1, t;
	} waiting[FAULT_SLOTS];
	uint64_t lat[VMM__PAGER_LAT_SAMPLES]; /* fault latencies (ns), the first ones */
	uint64_t nlat;       /* atomic: samples taken (may exceed the array) */
	uint64_t pulled, pushed; /* atomic: async pages supplied after / without a request */
	uint64_t t0_ns, last_ns; /* start; when the last page came in (atomic, 0 before) */
	int lost;            /* atomic: the asynchronous source is gone */
	uint64_t *present; /* pages installed (bitmap, atomic) */
	uint64_t *bad;     /* pages that failed (bitmap, atomic) */
	uint64_t loaded;   /* pages installed, atomic */
	uint64_t faults;   /* faults the thread served, atomic */
	vmm__pager_fail_fn fail;
	void *ctx;
	pthread_t thread;
	/* Working-set recording (set before the VM starts; then the thread's own). */
	char *wset_path;
	uint64_t wset_tag;
	uint32_t wset_ms;
	uint64_t *wset;         /* pages that faulted in the window (published atomically) */
	int wset_closed;        /* the window is over (the thread's; read by stop after join) */
	uint64_t started_ns;    /* atomic: when the VM started, 0 before */
	pthread_mutex_t fail_lock; /* err and detail; start_* */
	pthread_cond_t start_cond;
	int start_done, start_err;
	int err;                   /* atomic: the first failure, 0 if none */
	char detail[200];
};

static unsigned test_delay_us;

void vmm__pager_test_delay_us(unsigned us)
{
	__atomic_store_n(&test_delay_us, us, __ATOMIC_RELAXED);
}

/* Sequentially consistent (free on x86: a plain load, a locked or): ask and
 * vmm__pager_source_lost order a requested bit against the lost flag with them. */
static int bit_test(const uint64_t *map, uint64_t i)
{
	return (__atomic_load_n(&map[i / 64], __ATOMIC_SEQ_CST) >> (i % 64)) & 1;
}

/* Sets bit i; returns whether it was clear. */
static int bit_set(uint64_t *map, uint64_t i)
{
	uint64_t b = 1ull << (i % 64);

	return !(__atomic_fetch_or(&map[i / 64], b, __ATOMIC_SEQ_CST) & b);
}

static void mark_present(struct vmm__pager *p, uint64_t page)
{
	if (bit_set(p->present, page) &&
	    __atomic_add_fetch(&p->loaded, 1, __ATOMIC_ACQ_REL) == p->npages)
		__atomic_store_n(&p->last_ns, vmm__now_ns(), __ATOMIC_RELEASE);
}

static void wake(struct vmm__pager *p, uint64_t page)
{
	struct uffdio_range r = { (uint64_t)(uintptr_t)(p->host + page * VMM_PAGE_SIZE),
				  VMM_PAGE_SIZE };

	ioctl(p->uffd, UFFDIO_WAKE, &r);
}

/* Installs src as page (UFFDIO_COPY, which wakes its waiters). Another thread having
 * installed it first is success. 0 or the errno. */
static int install(struct vmm__pager *p, uint64_t page, const void *src)
{
	struct uffdio_copy c;
	int exist = 0;

	for (;;) {
		memset(&c, 0, sizeof(c));
		c.dst = (uint64_t)(uintptr_t)(p->host + page * VMM_PAGE_SIZE);
		c.src = (uint64_t)(uintptr_t)src;
		c.len = VMM_PAGE_SIZE;
		if (!ioctl(p->uffd, UFFDIO_COPY, &c))
			break;
		if (errno == EEXIST) {
			exist = 1;
			break;
		}
		if (errno != EAGAIN && errno != EINTR)
			return errno;
	}
	if (exist) /* whoever installed it woke its waiters; a late one is woken here */
		wake(p, page);
	mark_present(p, page);
	return 0;
}

/* A page that must not reach the guest: marked bad, the failure recorded and the owner
 * told (it stops the VM: the vCPUs get their kick signal queued) and only then is the
 * fault released with zeros, so that no waiter hangs (memory_pager.h). */
static void page_failed(struct vmm__pager *p, uint64_t page, int err, const char *what)
{
	struct uffdio_zeropage z;
	int first = 0;

	bit_set(p->bad, page);
	pthread_mutex_lock(&p->fail_lock);
	if (!__atomic_load_n(&p->err, __ATOMIC_ACQUIRE)) {
		snprintf(p->detail, sizeof(p->detail), "%s RAM page %llu (guest "
			 "physical RAM offset 0x%llx): %s", p->fd >= 0 ? "lazily restored" :
			 "post-copied", (unsigned long long)page,
			 (unsigned long long)(page * VMM_PAGE_SIZE), what);
		__atomic_store_n(&p->err, err, __ATOMIC_RELEASE);
		first = 1;
	}
	pthread_mutex_unlock(&p->fail_lock);
	if (first && p->fail)
		p->fail(p->ctx, err, p->detail);
	memset(&z, 0, sizeof(z));
	z.range.start = (uint64_t)(uintptr_t)(p->host + page * VMM_PAGE_SIZE);
	z.range.len = VMM_PAGE_SIZE;
	while (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z)) {
		if (errno == EEXIST)
			wake(p, page);
		if (errno != EAGAIN && errno != EINTR)
			break;
		memset(&z, 0, sizeof(z));
		z.range.start = (uint64_t)(uintptr_t)(p->host + page * VMM_PAGE_SIZE);
		z.range.len = VMM_PAGE_SIZE;
	}
	mark_present(p, page);
}

/* Checks and installs page from buf (its bytes as read from the file, got of them). */
static void verify_install(struct vmm__pager *p, uint64_t page, const uint8_t *buf, size_t got)
{
	char what[96];
	int e;

	if (got < VMM_PAGE_SIZE) {
		page_failed(p, page, VMM_ETRUNCATED, p->fd >= 0 ? "the snapshot file ends "
			    "before it" : "the source gave a short page");
		return;
	}
	if (p->hashes && XXH3_64bits(buf, VMM_PAGE_SIZE) != p->hashes[page]) {
		page_failed(p, page, VMM_ECORRUPT, "checksum mismatch (the snapshot file is "
			    "damaged); the page was not given to the guest");
		return;
	}
	e = install(p, page, buf);
	if (e) {
		snprintf(what, sizeof(what), "UFFDIO_COPY: %s", strerror(e));
		page_failed(p, page, VMM_ESYS, what);
	}
}

/* The file source: reads n pages from first (fewer where the file ends); returns the
 * bytes read or -errno. */
static ssize_t file_read(void *ctx, uint64_t first, uint64_t n, uint8_t *buf)
{
	struct vmm__pager *p = ctx;
	size_t want = n * VMM_PAGE_SIZE, got = 0;

	while (got < want) {
		ssize_t k = pread(p->fd, buf + got, want - got,
				  (off_t)(p->offset + first * VMM_PAGE_SIZE + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (!k)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static ssize_t read_pages(struct vmm__pager *p, uint64_t first, uint64_t n, uint8_t *buf)
{
	return p->src.read(p->src.ctx, first, n, buf);
}

/* Loads [first, first + n): one read, then each page not yet in. */
static void load_run(struct vmm__pager *p, uint64_t first, uint64_t n, uint8_t *buf)
{
	ssize_t got = read_pages(p, first, n, buf);

	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = first + i;
		size_t have;

		if (bit_test(p->present, page))
			continue;
		if (got < 0) {
			char what[96];

			snprintf(what, sizeof(what), "reading %s: %s", p->src.what,
				 strerror((int)-got));
			page_failed(p, page, VMM_EIO, what);
			continue;
		}
		have = (uint64_t)got > i * VMM_PAGE_SIZE ? (size_t)got - i * VMM_PAGE_SIZE : 0;
		verify_install(p, page, buf + i * VMM_PAGE_SIZE,
			       have > VMM_PAGE_SIZE ? VMM_PAGE_SIZE : have);
	}
}

/* ---- an asynchronous source (a post-copy migration link) */

/* Asks the source for page and its neighbours (those not yet in or asked for). The fault
 * stays pending until vmm__pager_supply installs the page. The requested bit is set
 * before lost is read, and vmm__pager_source_lost sets lost before it sweeps the
 * requested bits (both sequentially consistent): a request racing the loss is failed by
 * one side or the other, never left waiting for a page that cannot come. */
static void ask(struct vmm__pager *p, uint64_t page)
{
	uint64_t n = 1, slot = page % FAULT_SLOTS;
	int r;

	if (!__atomic_load_n(&p->waiting[slot].page1, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&p->waiting[slot].t, vmm__now_ns(), __ATOMIC_RELAXED);
		__atomic_store_n(&p->waiting[slot].page1, page + 1, __ATOMIC_RELEASE);
		/* Supplied meanwhile (a push): no supply will empty the slot. */
		if (bit_test(p->present, page))
			__atomic_store_n(&p->waiting[slot].page1, 0, __ATOMIC_RELEASE);
	}
	if (!bit_set(p->requested, page))
		return; /* asked already (a neighbour, or another vCPU's fault) */
	/* Neighbours: the guest tends to touch the next pages soon (sequential access). */
	while (n < VMM__PAGER_NEIGHBOURS && page + n < p->npages &&
	       !bit_test(p->present, page + n) && bit_set(p->requested, page + n))
		n++;
	if (__atomic_load_n(&p->lost, __ATOMIC_SEQ_CST))
		r = 1;
	else
		r = p->src.request(p->src.ctx, page, n);
	/* The neighbours too: a later fault on one finds it asked for and would wait. */
	for (uint64_t i = 0; r && i < n; i++)
		if (!bit_test(p->present, page + i))
			page_failed(p, page + i, VMM_EINDOUBT, "the migration link broke "
				    "before it came");
}

int vmm__pager_supply(struct vmm__pager *p, uint64_t page, const void *buf)
{
	uint64_t t = 0, now, slot;

	if (!p || !buf || page >= p->npages)
		return vmm__err(VMM_EPROTO, "post-copy page %llu is past RAM",
				(unsigned long long)page);
	if (bit_test(p->present, page))
		return 0; /* a pushed page the guest pulled first, or the other way round */
	if (bit_test(p->requested, page))
		__atomic_fetch_add(&p->pulled, 1, __ATOMIC_RELAXED);
	else
		__atomic_fetch_add(&p->pushed, 1, __ATOMIC_RELAXED);
	verify_install(p, page, buf, VMM_PAGE_SIZE);
	slot = page % FAULT_SLOTS;
	if (__atomic_load_n(&p->waiting[slot].page1, __ATOMIC_ACQUIRE) == page + 1) {
		t = __atomic_load_n(&p->waiting[slot].t, __ATOMIC_RELAXED);
		__atomic_store_n(&p->waiting[slot].page1, 0, __ATOMIC_RELEASE);
	}
	if (t) {
		uint64_t i = __atomic_fetch_add(&p->nlat, 1, __ATOMIC_RELAXED);

		now = vmm__now_ns();
		if (i < VMM__PAGER_LAT_SAMPLES)
			__atomic_store_n(&p->lat[i], now > t ? now - t : 1, __ATOMIC_RELAXED);
	}
	return vmm__pager_range_ok(p, page, 1);
}

void vmm__pager_have(struct vmm__pager *p, const uint64_t *have)
{
	for (uint64_t i = 0; p && have && i < p->npages; i++)
		if (vmm__bitmap_test(have, i))
			mark_present(p, i);
}

/* Records the first failure and tells the owner (once). */
static void record_error(struct vmm__pager *p, int err, const char *detail)
{
	int first = 0;

	pthread_mutex_lock(&p->fail_lock);
	if (!__atomic_load_n(&p->err, __ATOMIC_ACQUIRE)) {
		snprintf(p->detail, sizeof(p->detail), "%s", detail);
		__atomic_store_n(&p->err, err, __ATOMIC_RELEASE);
		first = 1;
	}
	pthread_mutex_unlock(&p->fail_lock);
	if (first && p->fail)
		p->fail(p->ctx, err, p->detail);
}

void vmm__pager_source_lost(struct vmm__pager *p, int err, const char *detail)
{
	if (!p || p->src.read)
		return;
	__atomic_store_n(&p->lost, 1, __ATOMIC_SEQ_CST);
	/* The error first: the owner stops the VM (the kick is queued on every vCPU) before
	 * any waiting fault is released with zeros that the guest therefore never runs on. */
	record_error(p, err, detail);
	for (uint64_t i = 0; i < p->npages; i++)
		if (bit_test(p->requested, i) && !bit_test(p->present, i))
			page_failed(p, i, err, "the migration link broke before it came");
}

/* Whether the recording window is open; closes it when its time is up. Poll timeout for
 * the thread: -1 when there is nothing to wait for. */
static int wset_tick(struct vmm__pager *p, int *window_open)
{
	uint64_t t0 = __atomic_load_n(&p->started_ns, __ATOMIC_ACQUIRE), now;

	*window_open = __atomic_load_n(&p->wset, __ATOMIC_ACQUIRE) && !p->wset_closed;
	if (!*window_open)
		return -1;
	if (!t0)
		return 20; /* not started yet: look again */
	now = vmm__now_ns();
	if (now - t0 >= (uint64_t)p->wset_ms * 1000000ull) {
		p->wset_closed = 1;
		*window_open = 0;
		return -1;
	}
	return (int)((t0 + (uint64_t)p->wset_ms * 1000000ull - now) / 1000000ull) + 1;
}

/* Told to vmm__pager_start: whether the thread confined itself and serves faults. */
static void started(struct vmm__pager *p, int err)
{
	pthread_mutex_lock(&p->fail_lock);
	p->start_err = err;
	p->start_done = 1;
	pthread_cond_signal(&p->start_cond);
	pthread_mutex_unlock(&p->fail_lock);
}

static void *pager_thread(void *arg)
{
	struct vmm__pager *p = arg;
	uint8_t *buf = p->src.read ? aligned_alloc(VMM_PAGE_SIZE, VMM_PAGE_SIZE) : NULL;
	struct uffd_msg msg[16];
	/* The pager moves guest memory in, as a migration's receiver does: its allow-list
	 * (poll and read on the userfaultfd, pread64 on the file, the UFFDIO_* ioctls, tgkill
	 * for the stop a failed page makes). A filter that fails leaves no thread to serve a
	 * fault: the start fails instead. */
	int r = vmm__sandbox_thread(VMM_THREAD_MIGRATION, "vmm-pager");

	started(p, r);
	if (r) {
		free(buf);
		return NULL;
	}
	for (;;) {
		struct pollfd pf[2] = { { p->uffd, POLLIN, 0 }, { p->stopfd, POLLIN, 0 } };
		int recording, timeout = wset_tick(p, &recording);
		ssize_t n;

		if (poll(pf, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents) {
			uint64_t v;

			if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
				break;
			(void)!read(p->stopfd, &v, sizeof(v)); /* a recording began: tick again */
			continue;
		}
		n = read(p->uffd, msg, sizeof(msg));
		if (n < 0)
			continue; /* EAGAIN: another reader took it; no other reader exists today */
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			uint64_t addr = msg[i].arg.pagefault.address, page;
			unsigned delay = __atomic_load_n(&test_delay_us, __ATOMIC_RELAXED);

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			page = (addr - (uint64_t)(uintptr_t)p->host) / VMM_PAGE_SIZE;
			if (page >= p->npages)
				continue;
			__atomic_fetch_add(&p->faults, 1, __ATOMIC_RELAXED);
			if (recording)
				vmm__bitmap_set(p->wset, page);
			if (delay)
				usleep(delay);
			if (bit_test(p->present, page)) {
				wake(p, page);
				continue;
			}
			if (!p->src.read)
				ask(p, page);
			else if (buf)
				load_run(p, page, 1, buf);
			else
				page_failed(p, page, VMM_ENOMEM, "no buffer to read it into");
		}
	}
	free(buf);
	return NULL;
}

/* A userfaultfd: the system call, else /dev/userfaultfd (Linux 6.1: the way for a process
 * with rights on that node when vm.unprivileged_userfaultfd is 0 and it lacks
 * CAP_SYS_PTRACE). Kernel-mode faults must be handled too (KVM, process_vm_readv, a
 * writev from RAM), so no UFFD_USER_MODE_ONLY. */
static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), dev, e;

	if (fd >= 0)
		return fd;
	e = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	errno = e;
	return -1;
}

static void pager_free(struct vmm__pager *p)
{
	if (p->uffd >= 0)
		close(p->uffd);
	if (p->stopfd >= 0)
		close(p->stopfd);
	if (p->fd >= 0)
		close(p->fd);
	free(p->requested);
	pthread_mutex_destroy(&p->fail_lock);
	pthread_cond_destroy(&p->start_cond);
	free(p->wset);
	free(p->wset_path);
	free(p->present);
	free(p->bad);
	free(p->hashes);
	free(p);
}

/* src NULL: the file source on fd at offset. */
static int pager_start(uint8_t *host, uint64_t npages, int fd, uint64_t offset,
		       const struct vmm__pager_source *src, uint64_t *hashes,
		       vmm__pager_fail_fn fail, void *ctx, struct vmm__pager **out)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	uint64_t words = vmm__bitmap_words(npages);
	struct vmm__pager *p = calloc(1, sizeof(*p));
	int r = 0;

	*out = NULL;
	if (!p) {
		free(hashes);
		return vmm__err(VMM_ENOMEM, "pager");
	}
	p->host = host;
	p->npages = npages;
	p->offset = offset;
	p->hashes = hashes;
	p->fail = fail;
	p->ctx = ctx;
	p->uffd = p->stopfd = -1;
	pthread_mutex_init(&p->fail_lock, NULL);
	pthread_cond_init(&p->start_cond, NULL);
	p->t0_ns = vmm__now_ns();
	if (src) {
		p->fd = -1;
		p->src = *src;
		p->requested = calloc(words ? words : 1, 8);
	} else {
		p->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		p->src.read = file_read;
		p->src.ctx = p;
		p->src.what = "the snapshot file";
	}
	p->present = calloc(words ? words : 1, 8);
	p->bad = calloc(words ? words : 1, 8);
	if (!src && p->fd < 0)
		r = vmm__err_sys(VMM_ESYS, "dup the snapshot fd");
	else if (!p->present || !p->bad || (src && !p->requested))
		r = vmm__err(VMM_ENOMEM, "pager bitmaps");
	else if (src && (!src->request || src->read))
		r = vmm__err(VMM_EINVAL, "a pager source is either read (file) or request "
			     "(asynchronous): this one is neither or both");
	if (!r && (p->uffd = open_uffd()) < 0)
		r = vmm__err_sys(VMM_EUNSUPPORTED, "userfaultfd (root, /dev/userfaultfd or "
				 "vm.unprivileged_userfaultfd=1 is needed)");
	if (!r && ioctl(p->uffd, UFFDIO_API, &api))
		r = vmm__err_sys(VMM_EUNSUPPORTED, "UFFDIO_API");
	/* Huge pages would be filled 2 MiB at a time by the kernel, not page by page by us. */
	if (!r)
		madvise(host, npages * VMM_PAGE_SIZE, MADV_NOHUGEPAGE);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uint64_t)(uintptr_t)host;
	reg.range.len = npages * VMM_PAGE_SIZE;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (!r && ioctl(p->uffd, UFFDIO_REGISTER, &reg))
		r = vmm__err_sys(VMM_EUNSUPPORTED, "UFFDIO_REGISTER (missing mode) on guest RAM");
	if (!r && (!(reg.ioctls & (1ull << _UFFDIO_COPY)) ||
		   !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE))))
		r = vmm__err(VMM_EUNSUPPORTED, "userfaultfd on shared memory lacks UFFDIO_COPY or "
			     "UFFDIO_ZEROPAGE on this kernel");
	if (!r && (p->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		r = vmm__err_sys(VMM_ESYS, "eventfd");
	if (!r && pthread_create(&p->thread, NULL, pager_thread, p))
		r = vmm__err(VMM_ESYS, "cannot start the pager thread");
	else if (!r) {
		pthread_mutex_lock(&p->fail_lock);
		while (!p->start_done)
			pthread_cond_wait(&p->start_cond, &p->fail_lock);
		r = p->start_err;
		pthread_mutex_unlock(&p->fail_lock);
		if (r) /* the thread said why (vmm_last_error is per thread): say it here */
			r = vmm__err(r, "the pager thread could not install its sandbox filter");
		if (r)
			pthread_join(p->thread, NULL);
	}
	if (r) {
		pager_free(p); /* closing the userfaultfd unregisters RAM */
		return r;
	}
	*out = p;
	return 0;
}

int vmm__pager_start(uint8_t *host, uint64_t npages, int fd, uint64_t offset, uint64_t *hashes,
		     vmm__pager_fail_fn fail, void *ctx, struct vmm__pager **out)
{
	return pager_start(host, npages, fd, offset, NULL, hashes, fail, ctx, out);
}

int vmm__pager_start_source(uint8_t *host, uint64_t npages, const struct vmm__pager_source *src,
			    uint64_t *hashes, vmm__pager_fail_fn fail, void *ctx,
			    struct vmm__pager **out)
{
	if (!src) {
		free(hashes);
		*out = NULL;
		return vmm__err(VMM_EINVAL, "no pager source");
	}
	return pager_start(host, npages, -1, 0, src, hashes, fail, ctx, out);
}

static void wset_write(struct vmm__pager *p);

void vmm__pager_stop(struct vmm__pager *p)
{
	uint64_t one = 1;

	if (!p)
		return;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	/* An eventfd write of 1 cannot fail short of overflow: the result says nothing. */
	(void)!write(p->stopfd, &one, sizeof(one));
	pthread_join(p->thread, NULL);
	/* Written here, on the destroying thread, not by the pager when its window closes:
	 * faults would wait while it is written, and the pager's sandbox has no openat or
	 * rename. A VM destroyed inside its window: what it touched so far is its set. */
	if (p->wset && __atomic_load_n(&p->started_ns, __ATOMIC_ACQUIRE))
		wset_write(p);
	if (p->src.release)
		p->src.release(p->src.ctx);
	pager_free(p);
}

int vmm__pager_error(const struct vmm__pager *p)
{
	int e = p ? __atomic_load_n(&p->err, __ATOMIC_ACQUIRE) : 0;
	char detail[sizeof(p->detail)];

	if (!e)
		return 0;
	pthread_mutex_lock((pthread_mutex_t *)&p->fail_lock);
	memcpy(detail, p->detail, sizeof(detail));
	pthread_mutex_unlock((pthread_mutex_t *)&p->fail_lock);
	return vmm__err(e, "%s", detail);
}

int vmm__pager_range_ok(const struct vmm__pager *p, uint64_t first, uint64_t n)
{
	if (!p || !__atomic_load_n(&p->err, __ATOMIC_ACQUIRE))
		return 0;
	for (uint64_t i = first; i < first + n && i < p->npages; i++)
		if (bit_test(p->bad, i))
			return vmm__pager_error(p);
	return 0;
}

int vmm__pager_load_all(struct vmm__pager *p)
{
	uint8_t *buf;

	if (!p || vmm__pager_complete(p))
		return vmm__pager_error(p);
	/* An asynchronous source pushes every page by itself: wait for the last, or a loss. */
	while (!p->src.read && !vmm__pager_complete(p) &&
	       !__atomic_load_n(&p->err, __ATOMIC_ACQUIRE))
		usleep(1000);
	if (!p->src.read)
		return vmm__pager_error(p);
	buf = aligned_alloc(VMM_PAGE_SIZE, LOAD_CHUNK * VMM_PAGE_SIZE);
	if (!buf)
		return vmm__err(VMM_ENOMEM, "pager read buffer");
	for (uint64_t first = 0; first < p->npages; first += LOAD_CHUNK) {
		uint64_t n = p->npages - first < LOAD_CHUNK ? p->npages - first : LOAD_CHUNK, i;

		for (i = 0; i < n && bit_test(p->present, first + i); i++)
			;
		if (i < n)
			load_run(p, first, n, buf);
	}
	free(buf);
	return vmm__pager_error(p);
}

int vmm__pager_complete(const struct vmm__pager *p)
{
	return !p || __atomic_load_n(&p->loaded, __ATOMIC_ACQUIRE) == p->npages;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median and p99 of the latency samples taken so far (a sample being written reads 0:
 * skipped). */
static void lat_summary(const struct vmm__pager *p, struct vmm__pager_stats *st)
{
	uint64_t n = __atomic_load_n(&p->nlat, __ATOMIC_RELAXED), k = 0, *v;

	if (n > VMM__PAGER_LAT_SAMPLES)
		n = VMM__PAGER_LAT_SAMPLES;
	if (!n || !(v = malloc(n * 8)))
		return;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t x = __atomic_load_n(&p->lat[i], __ATOMIC_RELAXED);

		if (x)
			v[k++] = x;
	}
	if (k) {
		qsort(v, k, 8, cmp_u64);
		st->lat_median_ns = v[k / 2];
		st->lat_p99_ns = v[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1];
		st->lat_samples = k;
	}
	free(v);
}

void vmm__pager_stats(const struct vmm__pager *p, struct vmm__pager_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!p)
		return;
	st->faults = __atomic_load_n(&p->faults, __ATOMIC_RELAXED);
	st->loaded = __atomic_load_n(&p->loaded, __ATOMIC_RELAXED);
	st->npages = p->npages;
	st->pulled = __atomic_load_n(&p->pulled, __ATOMIC_RELAXED);
	st->pushed = __atomic_load_n(&p->pushed, __ATOMIC_RELAXED);
	if (__atomic_load_n(&p->last_ns, __ATOMIC_ACQUIRE))
		st->complete_ns = __atomic_load_n(&p->last_ns, __ATOMIC_ACQUIRE) - p->t0_ns;
	lat_summary(p, st);
}

/* ---- working set */

#define WSET_MAGIC "LIBVMMWS"
#define WSET_VERSION 1u

struct wset_head {
	char magic[8];
	uint32_t version;
	uint32_t count;
	uint64_t tag;
	uint64_t npages;
} __attribute__((packed));

int vmm__pager_record(struct vmm__pager *p, const char *path, uint64_t tag, uint32_t ms)
{
	uint64_t one = 1, *set;

	if (!p || !path || !ms || p->wset)
		return 0;
	if (!p->src.read) /* the set keeps copies of the pages, read back from the source */
		return vmm__err(VMM_EUNSUPPORTED, "a working set is recorded on a file source only");
	p->wset_path = strdup(path);
	set = calloc(vmm__bitmap_words(p->npages) ? vmm__bitmap_words(p->npages) : 1, 8);
	if (!p->wset_path || !set) {
		free(p->wset_path), free(set);
		p->wset_path = NULL;
		return vmm__err(VMM_ENOMEM, "working-set bitmap");
	}
	p->wset_tag = tag;
	p->wset_ms = ms;
	/* Published last, and the thread woken so that its next fault is recorded. */
	__atomic_store_n(&p->wset, set, __ATOMIC_RELEASE);
	(void)!write(p->stopfd, &one, sizeof(one));
	return 0;
}

void vmm__pager_started(struct vmm__pager *p)
{
	uint64_t zero = 0;

	if (p)
		__atomic_compare_exchange_n(&p->started_ns, &zero, vmm__now_ns(), 0,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Writes the recorded set (stop, after the join): the list, then a copy
 * of each page's bytes as the snapshot holds them, so the next restore reads the set in
 * one sequential read instead of one seek per page. Failures are not the VM's: the set is
 * an optimisation, and a missing one is simply recorded next time. */
static void wset_write(struct vmm__pager *p)
{
	struct wset_head h = { .version = WSET_VERSION, .tag = p->wset_tag, .npages = p->npages };
	size_t n = 0, len;
	uint64_t *buf, *pages;
	uint8_t *data = NULL;
	char tmp[4200];
	int fd, ok;

	n = vmm__bitmap_weight(p->wset, p->npages);
	len = sizeof(h) + n * 8 + 8;
	buf = malloc(len);
	data = aligned_alloc(VMM_PAGE_SIZE, LOAD_CHUNK * VMM_PAGE_SIZE);
	if (!buf || !data) {
		free(buf), free(data);
		return;
	}
	memcpy(h.magic, WSET_MAGIC, 8);
	h.count = (uint32_t)n;
	memcpy(buf, &h, sizeof(h));
	pages = (uint64_t *)((uint8_t *)buf + sizeof(h));
	n = 0;
	for (uint64_t i = 0; i < p->npages; i++)
		if (vmm__bitmap_test(p->wset, i))
			pages[n++] = i;
	pages[n] = XXH3_64bits(buf, len - 8);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", p->wset_path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	ok = write(fd, buf, len) == (ssize_t)len;
	for (size_t i = 0; ok && i < n; i += LOAD_CHUNK) {
		size_t k = n - i < LOAD_CHUNK ? n - i : LOAD_CHUNK;

		for (size_t j = 0; ok && j < k; j++)
			ok = read_pages(p, pages[i + j], 1, data + j * VMM_PAGE_SIZE) ==
			     (ssize_t)VMM_PAGE_SIZE;
		ok = ok && write(fd, data, k * VMM_PAGE_SIZE) == (ssize_t)(k * VMM_PAGE_SIZE);
	}
	close(fd);
	if (!ok || rename(tmp, p->wset_path))
		unlink(tmp);
out:
	free(data);
	free(buf);
}

/* Opens and checks a set file's list: *out its pages, *fd the file (the page copies follow
 * at *data_off). */
static int wset_read(const char *path, uint64_t tag, uint64_t npages, uint64_t **out,
		     uint32_t *count, int *fdp, off_t *data_off)
{
	struct wset_head h;
	uint64_t *pages = NULL, sum;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
	size_t len;
	XXH3_state_t *st;

	if (fd < 0)
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, path);
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		r = vmm__err(VMM_ETRUNCATED, "%s: shorter than its header", path);
	else if (memcmp(h.magic, WSET_MAGIC, 8) || h.version != WSET_VERSION)
		r = vmm__err(VMM_ECORRUPT, "%s: not a working-set file of this version", path);
	else if (h.tag != tag || h.npages != npages)
		r = vmm__err(VMM_ESTATEDATA, "%s: recorded on another snapshot (stale)", path);
	else if (h.count > npages)
		r = vmm__err(VMM_ECORRUPT, "%s: more pages than RAM has", path);
	if (r) {
		close(fd);
		return r;
	}
	len = (size_t)h.count * 8 + 8;
	pages = malloc(len);
	if (!pages)
		r = vmm__err(VMM_ENOMEM, "working set");
	else if (pread(fd, pages, len, sizeof(h)) != (ssize_t)len)
		r = vmm__err(VMM_ETRUNCATED, "%s: ends inside its page list", path);
	if (!r) {
		st = XXH3_createState();
		if (!st) {
			r = vmm__err(VMM_ENOMEM, "hash state");
		} else {
			XXH3_64bits_reset(st);
			XXH3_64bits_update(st, &h, sizeof(h));
			XXH3_64bits_update(st, pages, len - 8);
			sum = XXH3_64bits_digest(st);
			XXH3_freeState(st);
			if (sum != pages[h.count])
				r = vmm__err(VMM_ECORRUPT, "%s: checksum mismatch", path);
		}
	}
	for (uint32_t i = 0; !r && i < h.count; i++)
		if (pages[i] >= npages || (i && pages[i] <= pages[i - 1]))
			r = vmm__err(VMM_ECORRUPT, "%s: page list out of order or past RAM", path);
	if (r) {
		close(fd);
		free(pages);
		return r;
	}
	*out = pages;
	*count = h.count;
	*fdp = fd;
	*data_off = (off_t)(sizeof(h) + len);
	return 0;
}

int vmm__pager_prefetch(struct vmm__pager *p, const char *path, uint64_t tag, uint64_t *loaded)
{
	uint64_t *pages = NULL, before, refused = 0;
	uint32_t count = 0;
	off_t off = 0;
	uint8_t *buf;
	int r, fd = -1;

	if (loaded)
		*loaded = 0;
	if (!p->hashes || !p->src.read)
		return vmm__err(VMM_EUNSUPPORTED, "a working set prefetches from a file source");
	r = wset_read(path, tag, p->npages, &pages, &count, &fd, &off);
	if (r)
		return r;
	buf = aligned_alloc(VMM_PAGE_SIZE, LOAD_CHUNK * VMM_PAGE_SIZE);
	if (!buf) {
		close(fd);
		free(pages);
		return vmm__err(VMM_ENOMEM, "prefetch buffer");
	}
	before = __atomic_load_n(&p->loaded, __ATOMIC_RELAXED);
	/* The copies, in one sequential read. A copy that does not match the snapshot's hash
	 * for its page is skipped (that page faults in from the snapshot as usual): the set
	 * file is never trusted with the guest's bytes. */
	for (uint32_t i = 0; i < count; i += LOAD_CHUNK) {
		uint32_t k = count - i < LOAD_CHUNK ? count - i : LOAD_CHUNK;
		ssize_t got = pread(fd, buf, (size_t)k * VMM_PAGE_SIZE,
				    off + (off_t)i * (off_t)VMM_PAGE_SIZE);

		if (got < 0)
			got = 0;
		for (uint32_t j = 0; j < k; j++) {
			uint64_t page = pages[i + j];
			const uint8_t *src = buf + (size_t)j * VMM_PAGE_SIZE;

			if ((size_t)got < (size_t)(j + 1) * VMM_PAGE_SIZE ||
			    XXH3_64bits(src, VMM_PAGE_SIZE) != p->hashes[page]) {
				refused++;
				continue;
			}
			if (!bit_test(p->present, page) && install(p, page, src))
				refused++;
		}
	}
	if (loaded)
		*loaded = __atomic_load_n(&p->loaded, __ATOMIC_RELAXED) - before;
	close(fd);
	free(buf);
	free(pages);
	if (refused)
		return vmm__err(VMM_ECORRUPT, "%s: %llu of its %u page copies did not match the "
				"snapshot (short or damaged): those load from the snapshot", path,
				(unsigned long long)refused, count);
	return 0;
}
