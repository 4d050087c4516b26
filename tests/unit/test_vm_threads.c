/* Threads, callbacks and the VM on the fake kernel: an embedder callback may call back
 * into the library (no lock is held while it runs), and the serial state is saved under
 * its lock while host input arrives. A deadlock would hang, so every test runs under an
 * alarm: SIGALRM ends the process, and the test fails instead of hanging. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "fake_vm.h"
#include "migrate_util.h"
#include "libvmm/vm_move.h"

#define COM1 0x3f8
#define DEADLOCK_S 20

static int setup(void **state)
{
	alarm(DEADLOCK_S);
	return fake_vm_setup(state);
}

static int teardown(void **state)
{
	(void)state;
	alarm(0);
	return 0;
}

static void out(uint16_t port, const char *s)
{
	fake_kvm_script_pio_out(0, port, s, (uint32_t)strlen(s));
}

/* ---- item 9: callbacks with no lock held */

struct echo {
	struct vmm_vm *vm;
	atomic_int echoed;
};

/* A serial sink that answers the guest, as a terminal or an expect script does. */
static void echo_back(void *opaque, const uint8_t *buf, size_t len)
{
	struct echo *e = opaque;
	struct vmm_vm *vm = __atomic_load_n(&e->vm, __ATOMIC_ACQUIRE);

	if (vm && vmm_vm_serial_input(vm, buf, len) == (int)len)
		atomic_fetch_add(&e->echoed, (int)len);
}

static void serial_out_may_answer(void **state)
{
	struct echo e = { 0 };
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, echo_back, &e);
	struct vmm_exit ex;
	void *buf;
	size_t len;

	(void)state;
	assert_non_null(vm);
	__atomic_store_n(&e.vm, vm, __ATOMIC_RELEASE);
	out(COM1, "ping");
	out(0xf4, "\x01");
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(atomic_load(&e.echoed), 4);
	/* The answer sits in the receive FIFO, and so in the saved state. */
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	assert_non_null(memmem(buf, len, "ping", 4));
	free(buf);
	vmm_vm_destroy(vm);
}

struct logger {
	struct vmm_vm *vm;
	atomic_int lines;
	atomic_int answered;
};

/* A log callback that looks at the VM it logs for: vmm_vm_resume takes the VM's lock. */
static void log_and_look(void *opaque, int level, const char *msg)
{
	struct logger *l = opaque;
	struct vmm_vm *vm = __atomic_load_n(&l->vm, __ATOMIC_ACQUIRE);

	(void)level;
	if (!strstr(msg, "MSR 0x174"))
		return;
	atomic_fetch_add(&l->lines, 1);
	if (vm && vmm_vm_resume(vm) == VMM_ESTATE) /* still CREATED while it loads */
		atomic_fetch_add(&l->answered, 1);
}

static void log_callback_may_call_in(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL), *vm2;
	struct logger l = { 0 };
	struct vmm_vm_config cfg;
	void *buf;
	size_t len;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vmm_vm_destroy(vm);

	vmm_vm_config_init(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.log = log_and_look;
	cfg.log_opaque = &l;
	assert_int_equal(vmm_vm_create(&cfg, &vm2), 0);
	__atomic_store_n(&l.vm, vm2, __ATOMIC_RELEASE);
	fake_kvm_refuse_msr(0x174); /* SYSENTER_CS: skipped, and logged */
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), 0);
	assert_int_equal(atomic_load(&l.lines), 1);
	assert_int_equal(atomic_load(&l.answered), 1);
	free(buf);
	vmm_vm_destroy(vm2);
}

struct feeder {
	struct vmm_vm *vm;
	atomic_int done;
	atomic_ulong fed;
};

/* Byte by byte until the FIFO (64 KiB) is full. */
static void *feed(void *p)
{
	struct feeder *f = p;

	for (;;) {
		uint8_t b = (uint8_t)atomic_load(&f->fed);

		if (vmm_vm_serial_input(f->vm, &b, 1) != 1)
			break;
		atomic_fetch_add(&f->fed, 1);
	}
	atomic_store(&f->done, 1);
	return NULL;
}

/* The UART's FIFO is saved under its lock while host input keeps arriving (TSan and ASan
 * see the difference: the save read rx_len while a writer moved it). */
static void serial_save_while_input_arrives(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	struct feeder f = { .vm = vm };
	pthread_t t;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
	for (int saves = 0; saves < 20 || !atomic_load(&f.done); saves++) {
		void *buf;
		size_t len;

		assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
		free(buf);
	}
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&f.fed), 64 * 1024);
	vmm_vm_destroy(vm);
}

/* argv[1], if given, picks the tests to run (a cmocka pattern, e.g. 'serial_*'). */
/* ---- item 2: a job owns the VM */

struct outsider {
	struct vmm_vm *vm;
	int pause, resume, save, load, snapshot, migrate;
};

static void *outsider_main(void *p)
{
	struct outsider *o = p;
	int fds[1] = { -1 };
	void *buf = NULL;
	size_t len;

	o->pause = vmm_vm_pause(o->vm);
	o->resume = vmm_vm_resume(o->vm);
	o->save = vmm_vm_state_save(o->vm, &buf, &len);
	free(buf);
	o->load = vmm_vm_state_load(o->vm, "x", 1);
	o->snapshot = vmm_snapshot_save(o->vm, "/nonexistent/snap", NULL, NULL);
	o->migrate = vmm_migrate_send(o->vm, fds, 1, NULL, NULL);
	return NULL;
}

static void assert_outsider_refused(struct vmm_vm *vm)
{
	struct outsider o = { .vm = vm };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, outsider_main, &o), 0);
	pthread_join(t, NULL);
	assert_int_equal(o.pause, VMM_EJOB);
	assert_int_equal(o.resume, VMM_EJOB);
	assert_int_equal(o.save, VMM_EJOB);
	assert_int_equal(o.load, VMM_EJOB);
	assert_int_equal(o.snapshot, VMM_EJOB);
	assert_int_equal(o.migrate, VMM_EJOB);
}

/* While a job owns the VM, the calls that would change or capture its run state are
 * refused from any thread, the job's own included (its callbacks run there); the job
 * itself pauses and resumes through vm_move.h. A stop still wins. */
static void job_owns_the_vm(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 2, NULL, NULL);
	struct vmm_exit ex;
	int by_us = 0;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm__job_begin(vm, VMM__JOB_SNAPSHOT), 0);
	assert_int_equal(vmm__job_begin(vm, VMM__JOB_MIGRATE), VMM_EJOB);
	assert_non_null(strstr(vmm_last_error(), "snapshot"));
	assert_outsider_refused(vm); /* while it runs */
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	assert_int_equal(vmm__move_pause(vm, &by_us, "stopped"), 0);
	assert_int_equal(by_us, 1);
	assert_outsider_refused(vm); /* while the job has it paused */
	assert_int_equal(vmm_vm_resume(vm), VMM_EJOB); /* same thread: refused too */
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_PAUSED);
	assert_int_equal(vmm__move_resume(vm), 0);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	vmm__job_end(vm);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_resume(vm), 0);
	/* A stop is never refused. */
	assert_int_equal(vmm__job_begin(vm, VMM__JOB_STATE_SAVE), 0);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_HOST);
	vmm__job_end(vm);
	vmm_vm_destroy(vm);
}

struct progress {
	struct vmm_vm *vm;
	int calls, resume_refused, pause_refused;
};

/* The sending thread's own callback tries to pause and resume the VM being sent. */
static void meddle(void *opaque, const struct vmm_migrate_round *round,
		   const struct vmm_migrate_stats *total)
{
	struct progress *p = opaque;

	(void)round;
	(void)total;
	p->calls++;
	p->resume_refused += vmm_vm_resume(p->vm) == VMM_EJOB;
	p->pause_refused += vmm_vm_pause(p->vm) == VMM_EJOB;
}

static void migration_progress_cannot_resume(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	struct progress p = { .vm = vm };
	struct mu_rx rv;
	struct vmm_migrate_opts mo;
	int r;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	mu_rx_init(&rv);
	rv.o.timeout_ms = 10000;
	mu_rx_start(&rv);
	vmm_migrate_opts_init(&mo);
	mo.progress = meddle;
	mo.progress_opaque = &p;
	r = vmm_migrate_send_to(vm, "127.0.0.1", rv.port, &mo, NULL);
	mu_rx_join(&rv);
	assert_int_equal(r, 0);
	assert_int_equal(rv.r, 0);
	assert_true(p.calls > 0);
	assert_int_equal(p.resume_refused, p.calls);
	assert_int_equal(p.pause_refused, p.calls);
	/* Sent away: paused for good. */
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_resume(vm), VMM_ESTATE);
	vmm_vm_destroy(rv.vm);
	vmm_vm_destroy(vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(serial_out_may_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(log_callback_may_call_in, setup, teardown),
		cmocka_unit_test_setup_teardown(serial_save_while_input_arrives, setup, teardown),
		cmocka_unit_test_setup_teardown(job_owns_the_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(migration_progress_cannot_resume, setup, teardown),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
