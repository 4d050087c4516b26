/* Populate-ahead for a migration's receiver (rx_populate.h): one thread, owned by the
 * receive and joined on every path, that faults guest RAM in ahead of the connections. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "libvmm/bitmap.h"
#include "libvmm/error_internal.h"
#include "libvmm/memory.h"
#include "libvmm/sandbox.h"
#include "migrate/protocol.h"
#include "migrate/rx_populate.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define CHUNK_PAGES VMM_MIGRATE_CHUNK_PAGES

/* Smaller VMs go without: a thread per receive would cost more than it saves there (and the
 * receiver fuzzer receives a 2 MiB VM per input). */
#define MIN_PAGES (64ull << 20 >> 12)

struct rx_conn {
	uint64_t cursor;    /* global chunk of the last page applied */
	uint64_t next;      /* global chunk to populate next (this connection's share) */
	int zero_heavy;     /* its last batch was mostly zero pages: do not go ahead */
};

struct vmm__rx_populate {
	uint8_t *ram;
	uint64_t npages, nchunks;
	unsigned n;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	uint64_t populated;       /* pages; read after the join */
	uint64_t *done;           /* chunks populated; read after the join */
	struct rx_conn c[VMM_MIGRATE_MAX_CONNS];
};

static int enabled = VMM__RX_POPULATE_AUTO;

void vmm__rx_populate_enable(int mode)
{
	__atomic_store_n(&enabled, mode, __ATOMIC_RELAXED);
}

/* Whether c's next chunk may be populated now: there is one, c's stream is not mostly
 * zero pages, and it is within the window ahead of c. Under the lock. */
static int may_go(const struct vmm__rx_populate *p, const struct rx_conn *c)
{
	return c->next < p->nchunks && !c->zero_heavy &&
	       c->next <= c->cursor + (uint64_t)VMM__RX_POPULATE_AHEAD * p->n;
}

/* The connection whose next chunk is least far ahead of its cursor and may be populated
 * now, under the lock; -1 if none. Connection i carries chunks i, i + n, i + 2n, ... */
static int pick(struct vmm__rx_populate *p)
{
	uint64_t best = UINT64_MAX;
	int who = -1;

	for (unsigned i = 0; i < p->n; i++) {
		struct rx_conn *c = &p->c[i];

		if (c->next < c->cursor) /* it overtook us: skip to its position */
			c->next = c->cursor + (i + p->n - c->cursor % p->n) % p->n;
		if (!may_go(p, c))
			continue;
		if (c->next - c->cursor < best)
			best = c->next - c->cursor, who = (int)i;
	}
	return who;
}

static void *populate_thread(void *arg)
{
	struct vmm__rx_populate *p = arg;

	/* Unsandboxed is fine for a thread that only calls madvise; a failed filter still
	 * must not run it outside one. */
	if (vmm__sandbox_thread(VMM_THREAD_MIGRATION, "vmm-mig-pop"))
		return NULL;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		int i = pick(p);
		uint64_t chunk, first, len;

		if (i < 0) {
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		chunk = p->c[i].next;
		p->c[i].next += p->n;
		pthread_mutex_unlock(&p->lock);
		first = chunk * CHUNK_PAGES;
		len = p->npages - first < CHUNK_PAGES ? p->npages - first : CHUNK_PAGES;
		/* Only faults pages in (allocated and zeroed once): a page a connection is
		 * writing meanwhile keeps what it writes. */
		if (madvise(p->ram + first * VMM_PAGE_SIZE, len * VMM_PAGE_SIZE, MADV_POPULATE_WRITE)) {
			/* EINVAL: a kernel without it; anything else (no memory): the connections
			 * fault pages in themselves, as without this thread. */
			pthread_mutex_lock(&p->lock);
			break;
		}
		p->populated += len;
		vmm__bitmap_set(p->done, chunk);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int vmm__rx_populate_start(uint8_t *ram, uint64_t npages, unsigned nconns,
			   struct vmm__rx_populate **out)
{
	struct vmm__rx_populate *p;
	int mode = __atomic_load_n(&enabled, __ATOMIC_RELAXED);

	*out = NULL;
	if (mode == VMM__RX_POPULATE_OFF || (mode == VMM__RX_POPULATE_AUTO && npages < MIN_PAGES) ||
	    !ram || !npages || !nconns || nconns > VMM_MIGRATE_MAX_CONNS)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return vmm__err(VMM_ENOMEM, "populate-ahead");
	p->ram = ram;
	p->npages = npages;
	p->nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	p->n = nconns;
	p->done = calloc(vmm__bitmap_words(p->nchunks), 8);
	for (unsigned i = 0; i < nconns; i++)
		p->c[i] = (struct rx_conn){ .cursor = i, .next = i };
	if (!p->done) {
		free(p);
		return vmm__err(VMM_ENOMEM, "populate-ahead");
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (pthread_create(&p->thread, NULL, populate_thread, p)) {
		/* Not fatal: the receive works without it. */
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p->done);
		free(p);
		return 0;
	}
	*out = p;
	return 0;
}

void vmm__rx_populate_progress(struct vmm__rx_populate *p, unsigned conn, uint64_t last,
			       uint32_t count, uint32_t zeros)
{
	struct rx_conn *c;
	int wake;

	if (!p || conn >= p->n)
		return;
	c = &p->c[conn];
	pthread_mutex_lock(&p->lock);
	/* Mostly zero: an eighth of the batch or more (a half-zero guest, a guest of small
	 * files). Those pages are never written here, so populating them would only cost
	 * memory and time. */
	c->zero_heavy = count && (uint64_t)zeros * 8 >= count;
	c->cursor = last / CHUNK_PAGES;
	wake = may_go(p, c);
	pthread_mutex_unlock(&p->lock);
	if (wake)
		pthread_cond_signal(&p->cond);
}

uint64_t vmm__rx_populate_stop(struct vmm__rx_populate *p,
			       int (*written)(void *opaque, uint64_t page), void *opaque,
			       uint64_t *released)
{
	uint64_t n, freed = 0;

	if (released)
		*released = 0;
	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_signal(&p->cond);
	pthread_join(p->thread, NULL);
	/* Give back what no page landed in, run by run. */
	for (uint64_t ch = 0; written && ch < p->nchunks; ch++) {
		uint64_t end, run = 0;

		if (!vmm__bitmap_test(p->done, ch))
			continue;
		end = (ch + 1) * CHUNK_PAGES < p->npages ? (ch + 1) * CHUNK_PAGES : p->npages;
		for (uint64_t pg = ch * CHUNK_PAGES; pg <= end; pg++) {
			if (pg < end && !written(opaque, pg)) {
				run++;
				continue;
			}
			if (run && !madvise(p->ram + (pg - run) * VMM_PAGE_SIZE, run * VMM_PAGE_SIZE,
					    MADV_REMOVE))
				freed += run;
			run = 0;
		}
	}
	if (released)
		*released = freed;
	n = p->populated;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->done);
	free(p);
	return n;
}
