/* Run control with plain threads standing in for vCPUs: a fake vCPU "runs the guest"
 * until kicked, then meets the checkpoint, exactly as the KVM_RUN loop does. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "libvmm/error_internal.h"
#include "libvmm/run_control.h"

#define NV 4

struct fake {
	struct vmm__run_control *rc;
	pthread_t th[NV];
	int started[NV];
	int fail_spawn_at; /* spawn of this vCPU fails; -1: none */
	atomic_int kicked[NV];     /* immediate_exit */
	atomic_int in_guest[NV];   /* between leaving the checkpoint and the next kick */
	atomic_ulong runs[NV];     /* guest progress */
	atomic_ulong checkpoints[NV];
	atomic_ulong checkpoint_ns[NV]; /* time spent inside the checkpoint */
	atomic_int hold[NV];       /* 1: stuck in a device (deaf to kicks) until set to 0 */
	atomic_int leave_alone[NV]; /* 1: the thread ends on its own at the next run */
	atomic_int exited[NV];     /* the thread has ended (joinable) */
	atomic_ulong kicks[NV];    /* kicks received, counted whoever sent them */
	atomic_ulong late_kicks[NV]; /* kicks sent after the thread ended: must stay 0 */
	int stop_status;
};

struct arg {
	struct fake *f;
	uint32_t i;
} args[NV];

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	usleep(ms * 1000u);
}

static void *vcpu_main(void *p)
{
	struct arg *a = p;
	struct fake *f = a->f;
	uint32_t i = a->i;

	for (;;) {
		uint64_t t0;
		int stop;

		atomic_store(&f->in_guest[i], 1);
		while (!atomic_load(&f->kicked[i])) {
			atomic_fetch_add(&f->runs[i], 1);
			if (atomic_load(&f->leave_alone[i])) {
				atomic_store(&f->in_guest[i], 0);
				goto out;
			}
			if (atomic_load(&f->hold[i])) {
				/* A device handler that takes long, then ends the VM. */
				while (atomic_load(&f->hold[i]))
					sleep_ms(1);
				vmm__run_control_stop(f->rc, VMM_EXIT_GUEST, f->stop_status,
						      "vcpu%u: guest exit %d", i, f->stop_status);
			}
			usleep(200);
		}
		atomic_store(&f->in_guest[i], 0);
		t0 = now_ns();
		stop = vmm__run_control_checkpoint(f->rc, i);
		atomic_fetch_add(&f->checkpoint_ns[i], now_ns() - t0);
		atomic_fetch_add(&f->checkpoints[i], 1);
		if (stop)
			break;
	}
out:
	vmm__run_control_exited(f->rc, i);
	atomic_store(&f->exited[i], 1);
	return NULL;
}

static void kick(void *ctx, uint32_t i)
{
	struct fake *f = ctx;

	/* For a real vCPU this is pthread_kill: undefined on a joined thread. */
	if (atomic_load(&f->exited[i]))
		atomic_fetch_add(&f->late_kicks[i], 1);
	atomic_fetch_add(&f->kicks[i], 1);
	atomic_store(&f->kicked[i], 1);
}

static void clear(void *ctx, uint32_t i)
{
	struct fake *f = ctx;

	atomic_store(&f->kicked[i], 0);
}

static int spawn(void *ctx, uint32_t i)
{
	struct fake *f = ctx;

	if ((int)i == f->fail_spawn_at)
		return vmm__err(VMM_ESYS, "no thread for vcpu%u", i);
	args[i] = (struct arg){ f, i };
	assert_int_equal(pthread_create(&f->th[i], NULL, vcpu_main, &args[i]), 0);
	f->started[i] = 1;
	return 0;
}

static const struct vmm__run_kicker kicker = { kick, clear, spawn };

static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->fail_spawn_at = -1;
	assert_int_equal(vmm__run_control_new(NV, &kicker, f, &f->rc), 0);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_CREATED);
	return f;
}

static void fake_free(struct fake *f)
{
	vmm__run_control_wait_exited(f->rc);
	for (int i = 0; i < NV; i++)
		if (f->started[i])
			pthread_join(f->th[i], NULL);
	vmm__run_control_free(f->rc);
	free(f);
}

/* Waits (up to 10 s) until every listed vCPU made progress beyond base. */
static void wait_progress(struct fake *f, const unsigned long *base, uint32_t from)
{
	uint64_t deadline = now_ns() + 10000000000ull;

	for (uint32_t i = from; i < NV; i++)
		while (atomic_load(&f->runs[i]) <= base[i]) {
			assert_true(now_ns() < deadline);
			sleep_ms(1);
		}
}

static void snapshot_runs(struct fake *f, unsigned long *out)
{
	for (int i = 0; i < NV; i++)
		out[i] = atomic_load(&f->runs[i]);
}

static void pause_parks_everyone(void **state)
{
	struct fake *f = fake_new();
	unsigned long before[NV], after[NV], zero[NV] = { 0 };
	struct vmm_exit ex;

	(void)state;
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), VMM_ESTATE); /* not started */
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	assert_int_equal(vmm__run_control_start(f->rc), VMM_ESTATE);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_RUNNING);
	wait_progress(f, zero, 0);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
		assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_PAUSED);
		for (int i = 0; i < NV; i++)
			assert_int_equal(atomic_load(&f->in_guest[i]), 0);
		snapshot_runs(f, before);
		sleep_ms(30);
		snapshot_runs(f, after);
		assert_memory_equal(before, after, sizeof(before)); /* nobody runs */
		assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0); /* already paused */
		assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0);
		assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_RUNNING);
		wait_progress(f, after, 0);
		assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0); /* already running */
	}
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "stopped by the %s", "host");
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, -1, &ex, NULL), 0);
	assert_int_equal(ex.reason, VMM_EXIT_HOST);
	assert_string_equal(ex.detail, "stopped by the host");
	fake_free(f);
}

struct pauser {
	struct fake *f;
	atomic_int done;
	int r;
};

static void *pause_main(void *p)
{
	struct pauser *ps = p;

	ps->r = vmm__run_control_pause(ps->f->rc, VMM__RC_EMBEDDER);
	atomic_store(&ps->done, 1);
	return NULL;
}

/* vCPU 0 is busy in a device when the pause comes, and ends the VM from there: the pause
 * gives up instead of waiting for a vCPU that will never park. */
static void stop_from_vcpu_during_pause(void **state)
{
	struct fake *f = fake_new();
	struct pauser ps = { .f = f };
	unsigned long zero[NV] = { 0 };
	struct vmm_exit ex;
	pthread_t t;

	(void)state;
	f->stop_status = 7;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	atomic_store(&f->hold[0], 1);
	sleep_ms(5);
	assert_int_equal(pthread_create(&t, NULL, pause_main, &ps), 0);
	sleep_ms(50);
	assert_int_equal(atomic_load(&ps.done), 0);
	for (int i = 1; i < NV; i++)
		assert_int_equal(atomic_load(&f->in_guest[i]), 0);
	atomic_store(&f->hold[0], 0);
	pthread_join(t, NULL);
	assert_int_equal(ps.r, VMM_ESTATE);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_STOPPED);
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 1000, &ex, NULL), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(ex.status, 7);
	assert_string_equal(ex.detail, "vcpu0: guest exit 7");
	fake_free(f);
}

/* A stop releases parked vCPUs for good; the first reason stays. */
static void stop_wins_over_pause(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 };
	struct vmm_exit ex;

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
	vmm__run_control_stop(f->rc, VMM_EXIT_SHUTDOWN, -1, "first");
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "second");
	vmm__run_control_wait_exited(f->rc);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_STOPPED);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), VMM_ESTATE);
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), VMM_ESTATE);
	assert_int_equal(vmm__run_control_start(f->rc), VMM_ESTATE);
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 0, &ex, NULL), 0);
	assert_int_equal(ex.reason, VMM_EXIT_SHUTDOWN);
	assert_string_equal(ex.detail, "first");
	fake_free(f);
}

/* vCPUs whose threads have ended count as parked. */
static void pause_with_exited_vcpus(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 }, base[NV];

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	atomic_store(&f->leave_alone[1], 1);
	atomic_store(&f->leave_alone[3], 1);
	pthread_join(f->th[1], NULL);
	pthread_join(f->th[3], NULL);
	f->started[1] = f->started[3] = 0;
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0);
	snapshot_runs(f, base);
	while (atomic_load(&f->runs[0]) <= base[0] || atomic_load(&f->runs[2]) <= base[2])
		sleep_ms(1);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	fake_free(f);
}

static void assert_no_late_kicks(struct fake *f)
{
	for (int i = 0; i < NV; i++)
		assert_int_equal(atomic_load(&f->late_kicks[i]), 0);
}

/* vCPUs whose threads ended (and were joined) are not kicked by a later pause. */
static void pause_kicks_only_live_vcpus(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 };

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	atomic_store(&f->leave_alone[2], 1);
	pthread_join(f->th[2], NULL);
	f->started[2] = 0;
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 50), 0);
	sleep_ms(50); /* throttle kicks too */
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 0), 0);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	assert_no_late_kicks(f);
	assert_true(atomic_load(&f->kicks[0]) > 0);
	fake_free(f);
}

/* A stop after every thread ended and was joined (vmm_vm_stop() after vmm_vm_wait())
 * kicks nobody: the thread ids may already name other threads. */
static void stop_after_join_kicks_nobody(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 }, kicks[NV];
	struct vmm_exit ex;

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	vmm__run_control_stop(f->rc, VMM_EXIT_GUEST, 3, "guest exit");
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, -1, &ex, NULL), 0);
	vmm__run_control_wait_exited(f->rc);
	for (int i = 0; i < NV; i++) {
		pthread_join(f->th[i], NULL);
		f->started[i] = 0;
		kicks[i] = atomic_load(&f->kicks[i]);
	}
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "stopped by the host");
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), VMM_ESTATE);
	for (int i = 0; i < NV; i++)
		assert_int_equal(atomic_load(&f->kicks[i]), kicks[i]);
	assert_no_late_kicks(f);
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 0, &ex, NULL), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST); /* the first reason stays */
	fake_free(f);
}

/* A job owns the run state: the embedder's pause and resume are refused, the job's are
 * not, a second job is refused, a stop is not. */
static void job_refuses_the_embedder(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 };

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	assert_int_equal(vmm__run_control_job_check(f->rc, "x"), 0);
	assert_int_equal(vmm__run_control_job_begin(f->rc, "a migration"), 0);
	assert_int_equal(vmm__run_control_job_begin(f->rc, "a snapshot"), VMM_EJOB);
	assert_int_equal(vmm__run_control_job_check(f->rc, "state load"), VMM_EJOB);
	assert_string_equal(vmm_last_error(), "state load: a migration owns the VM until it ends");
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), VMM_EJOB);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_RUNNING);
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_JOB), 0);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), VMM_EJOB);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_PAUSED);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_JOB), 0);
	vmm__run_control_job_end(f->rc);
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_job_begin(f->rc, "a snapshot"), 0);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_STOPPED);
	vmm__run_control_job_end(f->rc);
	fake_free(f);
}

static void throttle_sleeps_and_stops(void **state)
{
	struct fake *f = fake_new();
	unsigned long zero[NV] = { 0 };
	uint64_t slept[NV], calls[NV];

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	wait_progress(f, zero, 0);
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 150), 0);
	assert_int_equal(vmm__run_control_throttle(f->rc), 99);
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 50), 0);
	assert_int_equal(vmm__run_control_throttle(f->rc), 50);
	for (int i = 0; i < NV; i++)
		slept[i] = atomic_load(&f->checkpoint_ns[i]);
	sleep_ms(300);
	/* 50 %: about half the time asleep; only "clearly more than nothing" is checked. */
	for (int i = 0; i < NV; i++)
		assert_true(atomic_load(&f->checkpoint_ns[i]) - slept[i] > 20000000ull);
	/* A pause during throttling still parks everyone. */
	assert_int_equal(vmm__run_control_pause(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_resume(f->rc, VMM__RC_EMBEDDER), 0);
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 0), 0);
	assert_int_equal(vmm__run_control_throttle(f->rc), 0);
	sleep_ms(30); /* a kick sent just before the thread ended is consumed */
	for (int i = 0; i < NV; i++)
		calls[i] = atomic_load(&f->checkpoints[i]);
	sleep_ms(100);
	for (int i = 0; i < NV; i++) /* no more kicks */
		assert_int_equal(atomic_load(&f->checkpoints[i]), calls[i]);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	fake_free(f);
}

/* A throttle left on is stopped by the stop (and by free). */
static void throttle_ends_with_stop(void **state)
{
	struct fake *f = fake_new();

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	assert_int_equal(vmm__run_control_set_throttle(f->rc, 90), 0);
	sleep_ms(50);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	fake_free(f);
}

static void spawn_failure_stops(void **state)
{
	struct fake *f = fake_new();
	struct vmm_exit ex;

	(void)state;
	f->fail_spawn_at = 2;
	assert_int_equal(vmm__run_control_start(f->rc), VMM_ESYS);
	assert_int_equal(vmm__run_control_state(f->rc), VMM_VM_STOPPED);
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 0, &ex, NULL), 0);
	assert_int_equal(ex.reason, VMM_EXIT_ERROR);
	assert_string_equal(ex.detail, "could not start vCPU threads");
	fake_free(f); /* the two started threads end */
}

static void wait_times_out(void **state)
{
	struct fake *f = fake_new();
	enum vmm_vm_run_state st = VMM_VM_STOPPED;

	(void)state;
	assert_int_equal(vmm__run_control_start(f->rc), 0);
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 20, NULL, &st), VMM_ETIMEDOUT);
	assert_int_equal(st, VMM_VM_RUNNING);
	vmm__run_control_stop(f->rc, VMM_EXIT_HOST, -1, "done");
	assert_int_equal(vmm__run_control_wait_stopped(f->rc, 20, NULL, &st), 0);
	fake_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pause_parks_everyone),
		cmocka_unit_test(stop_from_vcpu_during_pause),
		cmocka_unit_test(stop_wins_over_pause),
		cmocka_unit_test(pause_with_exited_vcpus),
		cmocka_unit_test(pause_kicks_only_live_vcpus),
		cmocka_unit_test(stop_after_join_kicks_nobody),
		cmocka_unit_test(job_refuses_the_embedder),
		cmocka_unit_test(throttle_sleeps_and_stops),
		cmocka_unit_test(throttle_ends_with_stop),
		cmocka_unit_test(spawn_failure_stops),
		cmocka_unit_test(wait_times_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
