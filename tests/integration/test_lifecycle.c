/* The state machine: every call in a wrong state is refused with VMM_ESTATE; pause and
 * resume are prompt and lose nothing (1000 cycles while counter runs give the same output
 * as an uninterrupted run); stop ends a running or paused VM. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define COUNTER_ARGS "count=400 interval=2000"

static void wrong_states(void **state)
{
	struct tu_output out;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	void *buf;
	size_t len;

	(void)state;
	tu_output_init(&out);
	vm = tu_vm_new(NULL, "", 16, 1, &out);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_CREATED);
	assert_int_equal(vmm_vm_start(vm), VMM_ESTATE); /* nothing loaded */
	assert_int_equal(vmm_vm_pause(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_resume(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_wait(vm, 0, &ex), VMM_ESTATE);
	assert_int_equal(vmm_vm_stop(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), VMM_ESTATE);
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("counter.elf"), NULL), 0);
	assert_int_equal(vmm_vm_load_kernel(vm, tu_guest("counter.elf"), NULL), VMM_ESTATE);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_RUNNING);
	assert_int_equal(vmm_vm_start(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), VMM_ESTATE); /* running */
	assert_int_equal(vmm_vm_state_load(vm, "x", 1), VMM_ESTATE);
	assert_int_equal(vmm_vm_wait(vm, 60000, &ex), 0);
	assert_int_equal(vmm_vm_run_state(vm), VMM_VM_STOPPED);
	assert_int_equal(vmm_vm_pause(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_resume(vm), VMM_ESTATE);
	assert_int_equal(vmm_vm_register_pio(vm, 0x500, 1, NULL, NULL), VMM_ESTATE);
	vmm_vm_destroy(vm);
	vmm_vm_destroy(NULL);
	tu_output_free(&out);
}

static void pause_resume_1000(void **state)
{
	struct vmm_exit ex;
	char *ref = tu_run_guest("counter.elf", COUNTER_ARGS, 32, 1, &ex);
	struct tu_output out;
	struct vmm_vm *vm;
	int cycles = 0;
	char *s;

	(void)state;
	assert_int_equal(ex.status, 0);
	tu_output_init(&out);
	vm = tu_vm_new("counter.elf", COUNTER_ARGS, 32, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	for (; cycles < 1000; cycles++) {
		if (vmm_vm_pause(vm) != 0)
			break; /* the guest finished */
		assert_int_equal(vmm_vm_run_state(vm), VMM_VM_PAUSED);
		assert_int_equal(vmm_vm_pause(vm), 0); /* idempotent */
		assert_int_equal(vmm_vm_resume(vm), 0);
		tu_sleep_us(200);
	}
	assert_int_equal(cycles, 1000);
	assert_int_equal(vmm_vm_wait(vm, 120000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(ex.status, 0);
	s = tu_output_copy(&out);
	assert_string_equal(s, ref);
	vmm_vm_destroy(vm);
	tu_output_free(&out);
	free(s);
	free(ref);
}

static void *pauser(void *arg)
{
	struct vmm_vm *vm = arg;

	for (int i = 0; i < 200; i++) {
		if (vmm_vm_pause(vm) == 0)
			vmm_vm_resume(vm);
	}
	return NULL;
}

/* Pause and resume from two threads at once while the guest runs on two vCPUs. */
static void pause_from_threads(void **state)
{
	struct tu_output out;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	pthread_t t[2];
	char *s;

	(void)state;
	tu_output_init(&out);
	vm = tu_vm_new("smp.elf", "cpus=2 iters=2000000", 32, 2, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, pauser, vm);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	vmm_vm_resume(vm);
	assert_int_equal(vmm_vm_wait(vm, 120000, &ex), 0);
	s = tu_output_copy(&out);
	assert_string_equal(tu_last_line(s), "smp ok");
	vmm_vm_destroy(vm);
	tu_output_free(&out);
	free(s);
}

static void stop_running_and_paused(void **state)
{
	struct tu_output out;
	struct vmm_vm *vm;
	struct vmm_exit ex;

	(void)state;
	tu_output_init(&out);
	vm = tu_vm_new("counter.elf", "count=100000 interval=1000", 32, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 50, &ex), VMM_ETIMEDOUT);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 10000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_HOST);
	vmm_vm_destroy(vm);
	vm = tu_vm_new("counter.elf", "count=100000 interval=1000", 32, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_stop(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 10000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_HOST);
	vmm_vm_destroy(vm);
	/* destroy while running */
	vm = tu_vm_new("counter.elf", "count=100000 interval=1000", 32, 1, &out);
	assert_int_equal(vmm_vm_start(vm), 0);
	vmm_vm_destroy(vm);
	tu_output_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wrong_states),
		cmocka_unit_test(pause_resume_1000),
		cmocka_unit_test(pause_from_threads),
		cmocka_unit_test(stop_running_and_paused),
	};

	tu_require_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
