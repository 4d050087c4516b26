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
#include "handover_proxy.h"
#include "migrate_util.h"
#include "migrate/stream.h"
#include "stream.pb-c.h"

#define MIB 8
#define TIMEOUT_MS 700 /* both sides' silence timeout: stalled cells wait this long */

/* ---- the two sides */

struct cell {
	struct vmm_vm *src;
	struct mu_rx d;
	struct hp_proxy p;
	int r;              /* the send's result */
	char why[512];
	struct vmm_migrate_stats st;
};

static void cell_run(struct cell *c, enum hp_fault fault, int dir, unsigned type,
		     struct vmm_migrate_opts *o)
{
	struct vmm_migrate_opts def;

	memset(c, 0, sizeof(*c));
	c->src = fake_vm_new_loaded(MIB, 1, NULL, NULL);
	assert_non_null(c->src);
	assert_int_equal(vmm_vm_start(c->src), 0);
	mu_rx_init(&c->d);
	c->d.o.timeout_ms = TIMEOUT_MS;
	mu_rx_start(&c->d);
	hp_start(&c->p, c->d.port, fault, dir, type, c->src);
	if (!o) {
		vmm_migrate_opts_init(&def);
		o = &def;
	}
	o->timeout_ms = TIMEOUT_MS;
	c->r = vmm_migrate_send_to(c->src, "127.0.0.1", c->p.port, o, &c->st);
	snprintf(c->why, sizeof(c->why), "%s", vmm_last_error());
	mu_rx_join(&c->d);
	print_message("    source %s (%s)\n    destination %s (%s)\n", vmm_err_name(c->r), c->why,
		      vmm_err_name(c->d.r), c->d.detail);
	/* The hand-over's one rule, whatever the fault: the destination runs only if the
	 * source did not take the guest back. */
	if (c->d.r == 0)
		assert_true(c->r == 0 || c->r == VMM_EINDOUBT);
	if (c->r != 0 && c->r != VMM_EINDOUBT)
		assert_true(c->d.r != 0);
	assert_true(fault == HP_NONE || hp_fired(&c->p));
}

static int running(struct vmm_vm *vm)
{
	return vm && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
}

static void cell_end(struct cell *c)
{
	hp_stop(&c->p);
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
	const int no_fd = -1; /* refused before any socket is looked at */

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
	assert_int_equal(vmm_migrate_send(c->src, &no_fd, 1, NULL, NULL), VMM_EINDOUBT);
	assert_int_equal(vmm_migrate_send(c->d.vm, &no_fd, 1, NULL, NULL), VMM_EINDOUBT);
	assert_int_equal(vmm_vm_in_doubt(c->src), 1);
	assert_int_equal(vmm_vm_in_doubt(c->d.vm), 1);
	assert_int_equal(vmm_vm_run_state(c->src), VMM_VM_PAUSED);
	assert_int_equal(vmm_migrate_resolve(run_dst ? c->src : c->d.vm, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_migrate_resolve(run_dst ? c->d.vm : c->src, VMM_RESOLVE_RUN), 0);
	assert_int_equal(vmm_vm_migrated(run_dst ? c->src : c->d.vm), 1);
	one_runs(c, run_dst);
}

/* ---- the matrix: {cut, stall} x each step */

static void cell_before_complete(enum hp_fault f)
{
	struct cell c;

	cell_run(&c, f, HP_TO_DST, VMM_REC_COMPLETE, NULL);
	src_kept(&c);
	assert_true(c.d.r == VMM_EPEER || c.d.r == VMM_ETIMEDOUT);
	cell_end(&c);
}

static void cut_before_complete(void **state) { (void)state; cell_before_complete(HP_CUT); }
static void stall_before_complete(void **state) { (void)state; cell_before_complete(HP_STALL); }

/* READY lost: the source resumes; the destination cannot know it did, and waits. */
static void cell_before_ready(enum hp_fault f)
{
	struct cell c;

	cell_run(&c, f, HP_TO_SRC, VMM_REC_READY, NULL);
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

static void cut_before_ready(void **state) { (void)state; cell_before_ready(HP_CUT); }
static void stall_before_ready(void **state) { (void)state; cell_before_ready(HP_STALL); }

/* GO lost: both in doubt; either side may be chosen. */
static void cut_before_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, HP_CUT, HP_TO_DST, VMM_REC_GO, NULL);
	both_in_doubt(&c, 1);
	cell_end(&c);
}

static void stall_before_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, HP_STALL, HP_TO_DST, VMM_REC_GO, NULL);
	both_in_doubt(&c, 0);
	cell_end(&c);
}

/* A cancel once GO is out does nothing: the outcome is as without it. */
static void cancel_after_go(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, HP_CANCEL, HP_TO_DST, VMM_REC_GO, NULL);
	assert_int_equal(c.r, VMM_EINDOUBT);
	both_in_doubt(&c, 1);
	cell_end(&c);
}

/* STARTED lost: the destination runs, the source is in doubt and is resolved DISCARD. */
static void cell_before_started(enum hp_fault f)
{
	struct cell c;

	cell_run(&c, f, HP_TO_SRC, VMM_REC_STARTED, NULL);
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

static void cut_before_started(void **state) { (void)state; cell_before_started(HP_CUT); }
static void stall_before_started(void **state) { (void)state; cell_before_started(HP_STALL); }

/* A fault after STARTED changes nothing: migrated. */
static void clean_handover(void **state)
{
	struct cell c;

	(void)state;
	cell_run(&c, HP_NONE, 0, 0, NULL);
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
	cell_run(&c, HP_MANGLE, HP_TO_DST, VMM_REC_COMPLETE, NULL);
	assert_int_equal(c.d.r, VMM_EPROTO);
	assert_non_null(strstr(c.d.detail, "pages"));
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
	cell_run(&c, HP_NONE, 0, 0, &o);
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
