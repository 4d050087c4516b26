/* A VM running on the fake kernel: guest output through the UART's port reaches the serial
 * callback, the exit port and a triple fault end the VM with their reasons, and pause /
 * state save / load round-trips the vCPU and in-kernel state. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"

#define COM1 0x3f8

static void out(uint16_t port, const char *s)
{
	fake_kvm_script_pio_out(0, port, s, (uint32_t)strlen(s));
}

static void serial_reaches_callback(void **state)
{
	struct tu_output o;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	char *got;

	(void)state;
	tu_output_init(&o);
	vm = fake_vm_new_loaded(16, 1, tu_output_sink, &o);
	assert_non_null(vm);
	out(COM1, "hello ");
	out(COM1 + 3, "\x80"); /* LCR: DLAB on, so the next byte sets the divisor, not output */
	out(COM1, "\x01");
	out(COM1 + 3, "\x03"); /* DLAB off, 8N1 */
	out(COM1, "world\n");
	out(0xf4, "\x2a");     /* the exit port: status 42 */
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_GUEST);
	assert_int_equal(ex.status, 42);
	got = tu_output_copy(&o);
	assert_string_equal(got, "hello world\n");
	free(got);
	vmm_vm_destroy(vm);
	tu_output_free(&o);
}

static void shutdown_exit(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 1, NULL, NULL);
	struct vmm_exit ex;

	(void)state;
	assert_non_null(vm);
	fake_kvm_script_exit(0, KVM_EXIT_SHUTDOWN);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_wait(vm, 5000, &ex), 0);
	assert_int_equal(ex.reason, VMM_EXIT_SHUTDOWN);
	assert_non_null(strstr(ex.detail, "shutdown"));
	vmm_vm_destroy(vm);
}

/* Pause, save, load into a new VM: the new vCPUs and in-kernel devices hold what the old
 * ones did, UART registers included. */
static void state_round_trip(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 2, NULL, NULL), *vm2;
	struct fake_kvm_vcpu_state before[2];
	void *buf, *buf2;
	size_t len, len2;

	(void)state;
	assert_non_null(vm);
	out(COM1 + 7, "\x5c"); /* scratch register */
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(fake_kvm_script_wait(0), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	for (uint32_t i = 0; i < 2; i++) {
		struct fake_kvm_vcpu_state *s = fake_kvm_vcpu(i);

		s->regs.rbx = 0x1111 * (i + 1);
		s->sregs.cr2 = 0xdead000 + i;
		s->lapic.regs[0x80] = (char)(0x10 + i); /* TPR */
		s->events.nmi.pending = 1;
		s->debugregs.db[1] = 0xbeef;
		before[i] = *s;
	}
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vm2 = fake_vm_new(16, 2, 0, NULL, NULL);
	assert_non_null(vm2);
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), 0);
	for (uint32_t i = 0; i < 2; i++) {
		struct fake_kvm_vcpu_state *s = fake_kvm_vcpu(i);

		assert_memory_equal(&s->regs, &before[i].regs, sizeof(s->regs));
		assert_int_equal(s->sregs.cr2, before[i].sregs.cr2);
		assert_int_equal(s->sregs.efer, before[i].sregs.efer);
		assert_memory_equal(&s->lapic, &before[i].lapic, sizeof(s->lapic));
		assert_int_equal(s->events.nmi.pending, 1);
		assert_int_equal(s->debugregs.db[1], 0xbeef);
		assert_int_equal(s->mp_state.mp_state, before[i].mp_state.mp_state);
	}
	/* And what vm2 saves is what it was given (devices included). */
	assert_int_equal(vmm_vm_stop(vm2), VMM_ESTATE); /* never started: still CREATED */
	assert_int_equal(vmm_vm_start(vm2), 0);
	assert_int_equal(vmm_vm_pause(vm2), 0);
	assert_int_equal(vmm_vm_state_save(vm2, &buf2, &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(buf2, buf, len);
	free(buf);
	free(buf2);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(serial_reaches_callback, fake_vm_setup),
		cmocka_unit_test_setup(shutdown_exit, fake_vm_setup),
		cmocka_unit_test_setup(state_round_trip, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
