/* The hand-over fault matrix with a real guest: a counter migrates between two VMs of this
 * process through a proxy (tests/util/handover_proxy.h) that cuts or stalls the link before
 * COMPLETE, READY, GO or STARTED. In every cell at most one copy runs at any time, in-doubt
 * cells are resolved with vmm_migrate_resolve (RUN on one side, DISCARD on the other), and
 * the output of source then destination is exactly what an uninterrupted run prints: no
 * count lost, none repeated. (The same matrix on the fake kernel, for any machine:
 * tests/unit/test_handover.c.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "handover_proxy.h"
#include "migrate_util.h"
#include "migrate/stream.h"

#define GUEST "counter.elf"
#define CMDLINE "count=100 interval=20000"
#define MIB 32

static char *want; /* the uninterrupted run's output */
static int timeout_ms = 1000;

static char *strip_cr(char *s)
{
	char *w = s;

	for (char *p = s; *p; p++)
		if (*p != '\r')
			*w++ = *p;
	*w = '\0';
	return s;
}

struct side {
	struct vmm_vm *vm;
	struct tu_output out;
};

struct dst {
	struct side s;
	int lfd;
	uint16_t port;
	pthread_t th;
	int r;
	char why[512];
};

static void *dst_main(void *arg)
{
	struct dst *d = arg;
	struct vmm_receive_opts o;

	vmm_receive_opts_init(&o);
	o.timeout_ms = timeout_ms;
	o.serial_out = tu_output_sink;
	o.serial_opaque = &d->s.out;
	d->r = vmm_migrate_receive(d->lfd, &o, &d->s.vm);
	snprintf(d->why, sizeof(d->why), "%s", vmm_last_error());
	return NULL;
}

struct cell {
	struct side src;
	struct dst d;
	struct hp_proxy p;
	int r;
	char why[512];
};

static int running(struct vmm_vm *vm)
{
	return vm && vmm_vm_run_state(vm) == VMM_VM_RUNNING;
}

static void cell_run(struct cell *c, enum hp_fault fault, int dir, unsigned type)
{
	struct vmm_migrate_opts o;

	memset(c, 0, sizeof(*c));
	tu_output_init(&c->src.out);
	tu_output_init(&c->d.s.out);
	c->src.vm = tu_vm_new(GUEST, CMDLINE, MIB, 1, &c->src.out);
	assert_int_equal(vmm_vm_start(c->src.vm), 0);
	tu_wait_lines(&c->src.out, c->src.vm, 5, 30);
	c->d.lfd = mu_listen(&c->d.port);
	assert_int_equal(pthread_create(&c->d.th, NULL, dst_main, &c->d), 0);
	hp_start(&c->p, c->d.port, fault, dir, type, c->src.vm);
	vmm_migrate_opts_init(&o);
	o.timeout_ms = timeout_ms;
	c->r = vmm_migrate_send_to(c->src.vm, "127.0.0.1", c->p.port, &o, NULL);
	snprintf(c->why, sizeof(c->why), "%s", vmm_last_error());
	pthread_join(c->d.th, NULL);
	print_message("    source %s (%s)\n    destination %s (%s)\n", vmm_err_name(c->r), c->why,
		      vmm_err_name(c->d.r), c->d.why);
	assert_true(fault == HP_NONE || hp_fired(&c->p));
	/* At most one copy runs, now and from here on: the other cannot be made to. */
	assert_false(running(c->src.vm) && running(c->d.s.vm));
	if (c->d.r == 0)
		assert_true(c->r == 0 || c->r == VMM_EINDOUBT);
}

/* After the outcome (and any resolve): the copy that runs finishes the count; the other is
 * still stopped where it was, and source output then destination output is the
 * uninterrupted run's. */
static void cell_finish(struct cell *c, int on_dst)
{
	struct vmm_vm *runs = on_dst ? c->d.s.vm : c->src.vm, *other = on_dst ? c->src.vm : c->d.s.vm;
	struct vmm_exit ex;
	char *a, *b, *all;

	assert_true(running(runs));
	assert_false(running(other));
	if (other) {
		assert_true(vmm_vm_resume(other) < 0);
		assert_true(vmm_vm_start(other) < 0);
	}
	assert_int_equal(vmm_vm_wait(runs, 60000 * (int)tu_slowdown(), &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_false(running(other));
	a = strip_cr(tu_output_copy(&c->src.out));
	b = strip_cr(tu_output_copy(&c->d.s.out));
	all = malloc(strlen(a) + strlen(b) + 1);
	assert_non_null(all);
	strcpy(all, a);
	strcat(all, b);
	if (strcmp(all, want))
		fail_msg("output differs from the uninterrupted run\n--- source:\n%s--- destination:\n%s",
			 a, b);
	free(a), free(b), free(all);
	hp_stop(&c->p);
	close(c->d.lfd);
	vmm_vm_destroy(c->d.s.vm);
	vmm_vm_destroy(c->src.vm);
	tu_output_free(&c->src.out);
	tu_output_free(&c->d.s.out);
}

static void clean(void **state)
{
	struct cell c;

	cell_run(&c, HP_NONE, 0, 0);
	assert_int_equal(c.r, 0);
	assert_int_equal(c.d.r, 0);
	cell_finish(&c, 1);
}

static void cut_before_complete(void **state)
{
	struct cell c;

	cell_run(&c, HP_CUT, HP_TO_DST, VMM_REC_COMPLETE);
	assert_int_equal(c.r, VMM_EPEER);
	assert_null(c.d.s.vm);
	cell_finish(&c, 0);
}

/* READY lost: the source takes the guest back; the destination, in doubt, is discarded. */
static void cut_before_ready(void **state)
{
	struct cell c;

	cell_run(&c, HP_CUT, HP_TO_SRC, VMM_REC_READY);
	assert_int_equal(c.r, VMM_EPEER);
	assert_int_equal(c.d.r, VMM_EINDOUBT);
	assert_int_equal(vmm_migrate_resolve(c.d.s.vm, VMM_RESOLVE_DISCARD), 0);
	cell_finish(&c, 0);
}

/* GO lost: both paused in doubt; the destination is told to run. */
static void cut_before_go(void **state)
{
	struct cell c;

	cell_run(&c, HP_CUT, HP_TO_DST, VMM_REC_GO);
	assert_int_equal(c.r, VMM_EINDOUBT);
	assert_int_equal(c.d.r, VMM_EINDOUBT);
	tu_sleep_us(200000);
	assert_false(running(c.src.vm) || running(c.d.s.vm));
	assert_int_equal(vmm_migrate_resolve(c.src.vm, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_migrate_resolve(c.d.s.vm, VMM_RESOLVE_RUN), 0);
	cell_finish(&c, 1);
}

/* A partition after GO: both paused in doubt; this time the source keeps the guest. */
static void stall_before_go(void **state)
{
	struct cell c;

	cell_run(&c, HP_STALL, HP_TO_DST, VMM_REC_GO);
	assert_int_equal(c.r, VMM_EINDOUBT);
	assert_int_equal(c.d.r, VMM_EINDOUBT);
	assert_int_equal(vmm_migrate_resolve(c.d.s.vm, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_migrate_resolve(c.src.vm, VMM_RESOLVE_RUN), 0);
	cell_finish(&c, 0);
}

/* STARTED lost: the destination runs; the source, in doubt, is discarded. */
static void cut_before_started(void **state)
{
	struct cell c;

	cell_run(&c, HP_CUT, HP_TO_SRC, VMM_REC_STARTED);
	assert_int_equal(c.r, VMM_EINDOUBT);
	assert_int_equal(c.d.r, 0);
	assert_int_equal(vmm_migrate_resolve(c.src.vm, VMM_RESOLVE_DISCARD), 0);
	assert_int_equal(vmm_vm_migrated(c.src.vm), 1);
	cell_finish(&c, 1);
}

/* "proxy DST_PORT cut|stall to-dst|to-src complete|ready|go|started": a proxy for the shell
 * tests (test_cli_handover.sh); prints its port, then forwards until killed. */
static int proxy_main(int argc, char **argv)
{
	static const char *const recs[] = { [VMM_REC_COMPLETE] = "complete",
					    [VMM_REC_READY] = "ready", [VMM_REC_GO] = "go",
					    [VMM_REC_STARTED] = "started" };
	struct hp_proxy p;
	unsigned type = 0;

	if (argc != 6)
		return 2;
	for (unsigned i = 0; i < sizeof(recs) / sizeof(recs[0]); i++)
		if (recs[i] && !strcmp(argv[5], recs[i]))
			type = i;
	if (!type)
		return 2;
	hp_start(&p, (uint16_t)atoi(argv[2]), strcmp(argv[3], "cut") ? HP_STALL : HP_CUT,
		 strcmp(argv[4], "to-dst") ? HP_TO_SRC : HP_TO_DST, type, NULL);
	printf("%u\n", p.port);
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clean),
		cmocka_unit_test(cut_before_complete),
		cmocka_unit_test(cut_before_ready),
		cmocka_unit_test(cut_before_go),
		cmocka_unit_test(stall_before_go),
		cmocka_unit_test(cut_before_started),
	};
	struct vmm_exit ex;

	if (argc > 1 && !strcmp(argv[1], "proxy"))
		return proxy_main(argc, argv);
	tu_require_kvm();
	timeout_ms *= (int)tu_slowdown();
	want = strip_cr(tu_run_guest(GUEST, CMDLINE, MIB, 1, &ex));
	if (ex.reason != VMM_EXIT_GUEST || !strstr(want, "done"))
		return 1;
	return cmocka_run_group_tests_name("handover_guest", tests, NULL, NULL);
}
