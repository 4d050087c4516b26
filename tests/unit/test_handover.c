/* The migration hand-over (migrate/protocol.h) on the fake kernel, both sides in this
 * process: a proxy between source and destination cuts the link (both sides see it reset)
 * or stalls it (a partition: both wait out their timeout) just before a chosen record, at
 * every step of the hand-over. In every cell at most one side runs the guest, and the
 * in-doubt cells end with vmm_migrate_resolve on both sides, after which exactly one runs.
 * Also: cancel after GO is refused, COMPLETE.pages_total is checked, the final round is not
 * rate-limited, and the in-doubt state's rules (resume, start, resolve). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"
#include "migrate/stream.h"
#include "stream.pb-c.h"

#define MIB 8
#define TIMEOUT_MS 700 /* both sides' silence timeout: stalled cells wait this long */

/* ---- the proxy: forwards records one by one, and breaks the link at one of them */

enum fault {
	F_NONE,
	F_CUT,     /* shut down both connections: each side sees the other gone */
	F_STALL,   /* forward nothing more, keep the sockets open: both sides time out */
	F_MANGLE,  /* COMPLETE's pages_total off by one (item 11), then forward */
	F_CANCEL,  /* cancel the source's send, then stall (cancel after GO must not work) */
};

enum { TO_DST = 0, TO_SRC = 1 };

struct proxy {
	int lfd, up, down;  /* listening for the source; to the destination; from the source */
	uint16_t port;
	uint16_t dst_port;
	enum fault fault;
	int dir;            /* the fault fires before forwarding the first `type` going `dir` */
	unsigned type;
	struct vmm_vm *src; /* F_CANCEL */
	int fired, stalled, done; /* atomics */
	pthread_t th[2];
};

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n;
	}
	return 0;
}

static void stall_until_done(struct proxy *p)
{
	__atomic_store_n(&p->stalled, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE))
		tu_sleep_us(5000);
}

static void mangle_complete(uint8_t **payload, uint32_t *plen)
{
	uint32_t l = *plen;
	uint32_t *len = &l;

	Vmm__Stream__Complete *c = vmm__stream__complete__unpack(NULL, *len, *payload);

	assert_non_null(c);
	c->pages_total++;
	*len = (uint32_t)vmm__stream__complete__get_packed_size(c);
	*payload = realloc(*payload, *len);
	assert_non_null(*payload);
	vmm__stream__complete__pack(c, *payload);
	vmm__stream__complete__free_unpacked(c, NULL);
	*plen = l;
}

struct pump {
	struct proxy *p;
	int dir;
};

static void *pump_main(void *arg)
{
	struct pump *pu = arg;
	struct proxy *p = pu->p;
	int in = pu->dir == TO_DST ? p->down : p->up, out = pu->dir == TO_DST ? p->up : p->down;
	uint8_t pre[16];

	if (pu->dir == TO_DST && (read_full(in, pre, sizeof(pre)) || write_full(out, pre, 16)))
		return NULL;
	for (;;) {
		struct vmm__rec_hdr h;
		uint8_t *payload;

		if (read_full(in, &h, sizeof(h)) || h.len > VMM_REC_MAX_LEN)
			break;
		payload = malloc(h.len ? h.len : 1);
		assert_non_null(payload);
		if (read_full(in, payload, h.len)) {
			free(payload);
			break;
		}
		if (__atomic_load_n(&p->stalled, __ATOMIC_ACQUIRE)) {
			free(payload);
			stall_until_done(p);
			break;
		}
		if (p->fault != F_NONE && pu->dir == p->dir && h.type == p->type &&
		    !__atomic_exchange_n(&p->fired, 1, __ATOMIC_ACQ_REL)) {
			switch (p->fault) {
			case F_CUT:
				shutdown(p->up, SHUT_RDWR);
				shutdown(p->down, SHUT_RDWR);
				free(payload);
				return NULL;
			case F_CANCEL:
				vmm_migrate_cancel(p->src);
				/* fall through */
			case F_STALL:
				free(payload);
				stall_until_done(p);
				return NULL;
			case F_MANGLE: {
				uint32_t len = h.len;

				mangle_complete(&payload, &len);
				h.len = len;
				break;
			}
			default:
				break;
			}
		}
		if (write_full(out, &h, sizeof(h)) || write_full(out, payload, h.len)) {
			free(payload);
			break;
		}
		free(payload);
	}
	return NULL;
}

static struct pump pumps[2];

static void *proxy_accept(void *arg)
{
	struct proxy *p = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(p->dst_port) };
	struct pollfd pf = { .fd = p->lfd, .events = POLLIN };

	if (poll(&pf, 1, 10000) != 1)
		return NULL;
	p->down = accept(p->lfd, NULL, NULL);
	p->up = socket(AF_INET, SOCK_STREAM, 0);
	if (p->down < 0 || p->up < 0 || connect(p->up, (struct sockaddr *)&a, sizeof(a)))
		return NULL;
	pumps[TO_DST] = (struct pump){ p, TO_DST };
	pumps[TO_SRC] = (struct pump){ p, TO_SRC };
	assert_int_equal(pthread_create(&p->th[TO_SRC], NULL, pump_main, &pumps[TO_SRC]), 0);
	pump_main(&pumps[TO_DST]);
	pthread_join(p->th[TO_SRC], NULL);
	return NULL;
}

/* ---- the two sides */

struct dst {
	int lfd;
	uint16_t port;
	pthread_t th;
	int r;
	struct vmm_vm *vm;
	char why[512];
};

static void *dst_main(void *arg)
{
	struct dst *d = arg;
	struct vmm_receive_opts o;

	vmm_receive_opts_init(&o);
	o.timeout_ms = TIMEOUT_MS;
	d->r = vmm_migrate_receive(d->lfd, &o, &d->vm);
	snprintf(d->why, sizeof(d->why), "%s", vmm_last_error());
	return NULL;
}

struct cell {
	struct vmm_vm *src;
	struct dst d;
	struct proxy p;
	pthread_t proxy_th;
	int r;              /* the send's result */
	char why[512];
	struct vmm_migrate_stats st;
};

static void cell_run(struct cell *c, enum fault fault, int dir, unsigned type,
		     struct vmm_migrate_opts *o)
{
	struct vmm_migrate_opts def;

	memset(c, 0, sizeof(*c));
	c->src = fake_vm_new_loaded(MIB, 1, NULL, NULL);
	assert_non_null(c->src);
	assert_int_equal(vmm_vm_start(c->src), 0);
	c->d.lfd = mu_listen(&c->d.port);
	c->p.lfd = mu_listen(&c->p.port);
	c->p.up = c->p.down = -1;
	c->p.dst_port = c->d.port;
	c->p.fault = fault, c->p.dir = dir, c->p.type = type, c->p.src = c->src;
	assert_int_equal(pthread_create(&c->d.th, NULL, dst_main, &c->d), 0);
	assert_int_equal(pthread_create(&c->proxy_th, NULL, proxy_accept, &c->p), 0);
	if (!o) {
		vmm_migrate_opts_init(&def);
		o = &def;
	}
	o->timeout_ms = TIMEOUT_MS;
	c->r = vmm_migrate_send_to(c->src, "127.0.0.1", c->p.port, o, &c->st);
	snprintf(c->why, sizeof(c->why), "%s", vmm_last_error());
	pthread_join(c->d.th, NULL);
	print_message("    source %s (%s)\n    destination %s (%s)\n", vmm_err_name(c->r), c->why,
		      vmm_err_name(c->d.r), c->d.why);
	/* The hand-over's one rule, whatever the fault: the destination runs only if the
	 * source did not take the guest back. */
	if (c->d.r == 0)
		assert_true(c->r == 0 || c->r == VMM_EINDOUBT);
	if (c->r != 0 && c->r != VMM_EINDOUBT)
		assert_true(c->d.r != 0);
	assert_true(c->p.fault == F_NONE || c->p.fault == F_MANGLE || c->p.fired);
}

static int running(struct vmm_vm *vm)
{
	return vm && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
}

static void cell_end(struct cell *c)
{
	__atomic_store_n(&c->p.done, 1, __ATOMIC_RELEASE);
	if (c->p.up >= 0)
		shutdown(c->p.up, SHUT_RDWR);
	if (c->p.down >= 0)
		shutdown(c->p.down, SHUT_RDWR);
	pthread_join(c->proxy_th, NULL);
	if (c->p.up >= 0)
		close(c->p.up);
	if (c->p.down >= 0)
		close(c->p.down);
	close(c->p.lfd);
	close(c->d.lfd);
	vmm_vm_destroy(c->d.vm);
	vmm_vm_destroy(c->src);
}

/* Exactly one copy runs, and the other can never run again. */
static void one_runs(struct cell *c, int on_dst)
{
	struct vmm_vm *other = on_dst ? c->src : c->d.vm;

	assert_true(running(on_dst ? c->d.vm : c->src));
	assert_false(running(other));
	assert_int_equal(vmm_vm_in_doubt(c->src), 0);
	assert_int_equal(vmm_vm_in_doubt(c->d.vm), 0);
	if (other) {
		assert_int_equal(vmm_vm_resume(other), VMM_ESTATE);
		assert_true(vmm_vm_start(other) < 0);
		assert_false(running(other));
	}
}

/* The source resumed, the destination kept nothing. */
static void src_kept(struct cell *c)
{
	assert_int_not_equal(c->r, 0);
	assert_int_not_equal(c->r, VMM_EINDOUBT);
	assert_null(c->d.vm);
	assert_int_equal(vmm_vm_migrated(c->src), 0);
	one_runs(c, 0);
}

/* Both paused and in doubt; resolved with RUN on `run_dst ? destination : source`. */
static void both_in_doubt(struct cell *c, int run_dst)
{
	assert_int_equal(c->r, VMM_EINDOUBT);
	assert_int_equal(c->d.r, VMM_EINDOUBT);
	assert_non_null(c->d.vm);
	assert_int_equal(vmm_vm_run_state(c->src), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_run_state(c->d.vm), VMM_VM_CREATED);
	assert_int_equal(vmm_vm_in_doubt(c->src), 1);
	assert_int_equal(vmm_vm_in_doubt(c->d.vm), 1);
	assert_int_equal(vmm_vm_migrated(c->src), 0);
	/* Neither side may take the guest but through resolve. */
	assert_int_equal(vmm_vm_resume(c->src), VMM_EINDOUBT);
	assert_int_equal(vmm_vm_start(c->d.vm), VMM_EINDOUBT);
	assert_int_equal(vmm_migrate_resolve(run_dst ? c->src : c->d.vm, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_migrate_resolve(run_dst ? c->d.vm : c->src, VMM_RESOLVE_RUN), 0);
	assert_int_equal(vmm_vm_migrated(run_dst ? c->src : c->d.vm), 1);
	one_runs(c, run_dst);
}

/* ---- the matrix: {cut, stall} x each step */

static void cell_before_complete(enum fault f)
{
	struct cell c;

	cell_run(&c, f, TO_DST, VMM_REC_COMPLETE, NULL);
	src_kept(&c);
	assert_true(c.d.r == VMM_EPEER || c.d.r == VMM_ETIMEDOUT);
	cell_end(&c);
}

static void cut_before_complete(void **state) { (void)state; cell_before_complete(F_CUT); }
static void stall_before_complete(void **state) { (void)state; cell_before_complete(F_STALL); }

/* READY lost: the source resumes; the destination cannot know it did, and waits. */
static void cell_before_ready(enum fault f)
{
	struct cell c;

	cell_run(&c, f, TO_SRC, VMM_REC_READY, NULL);
	assert_true(c.r == VMM_EPEER || c.r == VMM_ETIMEDOUT);
	assert_true(running(c.src));
	assert_int_equal(c.d.r, VMM_EINDOUBT);
	assert_int_equal(vmm_vm_in_doubt(c.d.vm), 1);
	assert_int_equal(vmm_vm_run_state(c.d.vm), VMM_VM_CREATED);
	/* The operator sees the source run: the destination's copy goes. */
	assert_int_equal(vmm_migrate_resolve(c.src, VMM_RESOLVE_DISCARD), VMM_ESTATE);
	assert_int_equal(vmm_migrate_resolve(c.d.vm, VMM_RESOLVE_DISCARD), 0);
	one_runs(&c, 0);
	cell_end(&c);
}

static void cut_before_ready(void **state) { (void)state; cell_before_ready(F_CUT); }
static void stall_before_ready(void **state) { (void)state; cell_before_ready(F_STALL); }

/* GO lost: both in doubt; either side may be chosen. */
static void cut_before_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, F_CUT, TO_DST, VMM_REC_GO, NULL);
	both_in_doubt(&c, 1);
	cell_end(&c);
}

static void stall_before_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, F_STALL, TO_DST, VMM_REC_GO, NULL);
	both_in_doubt(&c, 0);
	cell_end(&c);
}

/* A cancel once GO is out does nothing: the outcome is as without it. */
static void cancel_after_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, F_CANCEL, TO_DST, VMM_REC_GO, NULL);
	assert_int_equal(c.r, VMM_EINDOUBT);
	both_in_doubt(&c, 1);
	cell_end(&c);
}

/* STARTED lost: the destination runs, the source is in doubt and is resolved DISCARD. */
static void cell_before_started(enum fault f)
{
	struct cell c;

	cell_run(&c, f, TO_SRC, VMM_REC_STARTED, NULL);
	assert_int_equal(c.r, VMM_EINDOUBT);
	assert_int_equal(c.d.r, 0);
	assert_true(running(c.d.vm));
	assert_int_equal(vmm_vm_run_state(c.src), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_in_doubt(c.src), 1);
	assert_int_equal(vmm_migrate_resolve(c.d.vm, VMM_RESOLVE_RUN), VMM_ESTATE);
	assert_int_equal(vmm_migrate_resolve(c.src, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_vm_migrated(c.src), 1);
	one_runs(&c, 1);
	cell_end(&c);
}

static void cut_before_started(void **state) { (void)state; cell_before_started(F_CUT); }
static void stall_before_started(void **state) { (void)state; cell_before_started(F_STALL); }

/* A fault after STARTED changes nothing: migrated. */
static void clean_handover(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, F_NONE, 0, 0, NULL);
	assert_int_equal(c.r, 0);
	assert_int_equal(c.d.r, 0);
	assert_int_equal(vmm_vm_migrated(c.src), 1);
	assert_int_equal(vmm_migrate_resolve(c.src, VMM_RESOLVE_RUN), VMM_ESTATE);
	one_runs(&c, 1);
	cell_end(&c);
}

/* Item 11: a COMPLETE whose pages_total differs from what arrived is refused; the source,
 * told so before it let go, resumes. */
static void complete_pages_checked(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, F_MANGLE, TO_DST, VMM_REC_COMPLETE, NULL);
	assert_int_equal(c.d.r, VMM_EPROTO);
	assert_non_null(strstr(c.d.why, "pages"));
	assert_int_equal(c.r, VMM_EREFUSED);
	assert_non_null(strstr(c.why, "pages"));
	src_kept(&c);
	cell_end(&c);
}

/* Item 14: the final round, with the guest paused, is not held to max_bandwidth. */
struct dirtier {
	struct cell *c; /* its source exists once the send runs */
	uint64_t final_ns, final_bytes;
};

static void dirty_after_live_round(void *opaque, const struct vmm_migrate_round *rd,
				   const struct vmm_migrate_stats *total)
{
	struct dirtier *d = opaque;
	static uint8_t junk[4096];

	(void)total;
	if (rd->final) {
		d->final_ns = rd->duration_ns;
		d->final_bytes = rd->wire_bytes;
		return;
	}
	/* 2 MiB of non-zero pages dirtied for the final round. */
	memset(junk, 0x5a, sizeof(junk));
	for (uint64_t pg = 1024; pg < 1024 + 512; pg++) {
		assert_int_equal(vmm_vm_mem_write(d->c->src, pg * 4096, junk, sizeof(junk)), 0);
		fake_kvm_dirty_set(0, pg);
	}
}

static void final_round_uncapped(void **state)
{
	struct vmm_migrate_opts o;
	struct dirtier dt = { 0 };
	struct cell c;

	(void)state;
	vmm_migrate_opts_init(&o);
	o.max_bandwidth = 1000000; /* 1 MB/s: 2 MiB would take 2 s capped */
	o.max_rounds = 1;
	o.progress = dirty_after_live_round;
	o.progress_opaque = &dt;
	dt.c = &c;
	cell_run(&c, F_NONE, 0, 0, &o);
	assert_int_equal(c.r, 0);
	assert_int_equal(c.d.r, 0);
	print_message("    final round: %llu bytes in %.1f ms (cap %.1f MB/s)\n",
		      (unsigned long long)dt.final_bytes, dt.final_ns / 1e6, o.max_bandwidth / 1e6);
	assert_true(dt.final_bytes >= 2u << 20);
	assert_true(dt.final_ns < 1000000000ull);
	one_runs(&c, 1);
	cell_end(&c);
}

/* ---- the in-doubt rules without a migration */

static void resolve_needs_doubt(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(MIB, 1, NULL, NULL);

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_in_doubt(vm), 0);
	assert_int_equal(vmm_vm_in_doubt(NULL), 0);
	assert_int_equal(vmm_migrate_resolve(vm, VMM_RESOLVE_RUN), VMM_ESTATE);
	assert_int_equal(vmm_migrate_resolve(vm, VMM_RESOLVE_DISCARD), VMM_ESTATE);
	assert_int_equal(vmm_migrate_resolve(vm, (enum vmm_resolve)7), VMM_EINVAL);
	assert_int_equal(vmm_migrate_resolve(NULL, VMM_RESOLVE_RUN), VMM_EINVAL);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_migrate_resolve(vm, VMM_RESOLVE_RUN), VMM_ESTATE);
	assert_true(running(vm));
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(resolve_needs_doubt, fake_vm_setup),
		cmocka_unit_test_setup(clean_handover, fake_vm_setup),
		cmocka_unit_test_setup(cut_before_complete, fake_vm_setup),
		cmocka_unit_test_setup(stall_before_complete, fake_vm_setup),
		cmocka_unit_test_setup(cut_before_ready, fake_vm_setup),
		cmocka_unit_test_setup(stall_before_ready, fake_vm_setup),
		cmocka_unit_test_setup(cut_before_go, fake_vm_setup),
		cmocka_unit_test_setup(stall_before_go, fake_vm_setup),
		cmocka_unit_test_setup(cancel_after_go, fake_vm_setup),
		cmocka_unit_test_setup(cut_before_started, fake_vm_setup),
		cmocka_unit_test_setup(stall_before_started, fake_vm_setup),
		cmocka_unit_test_setup(complete_pages_checked, fake_vm_setup),
		cmocka_unit_test_setup(final_round_uncapped, fake_vm_setup),
	};

	return cmocka_run_group_tests_name("handover", tests, NULL, NULL);
}
