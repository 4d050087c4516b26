/* The order of KVM's state calls on save and restore (libvmm/cpu_state.c, "Ordering
 * requirements"), checked on the fake kernel's call log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/cpu_state.h"
#include "libvmm/vm_internal.h"

/* Asserts that the calls appear in this order, each after the previous one. */
static void assert_order(const unsigned long *reqs, const char *const *names, size_t n)
{
	int prev = -1;

	for (size_t i = 0; i < n; i++) {
		int at = fake_kvm_log_find(reqs[i], prev + 1);

		if (at < 0)
			fail_msg("%s not called after %s", names[i], i ? names[i - 1] : "start");
		prev = at;
	}
}

#define ORDER(...)                                                                     \
	do {                                                                           \
		static const unsigned long r_[] = { __VA_ARGS__ };                     \
		assert_order(r_, names_of(#__VA_ARGS__, sizeof(r_) / sizeof(r_[0])),  \
			     sizeof(r_) / sizeof(r_[0]));                              \
	} while (0)

/* Splits "A, B, C" into names for the failure message. */
static const char *const *names_of(const char *list, size_t n)
{
	static char buf[1024];
	static const char *names[32];
	char *p = buf;

	snprintf(buf, sizeof(buf), "%s", list);
	for (size_t i = 0; i < n && i < 32; i++) {
		while (*p == ' ')
			p++;
		names[i] = p;
		p += strcspn(p, ",");
		if (*p)
			*p++ = 0;
	}
	return names;
}

static void vcpu_restore_order(void **state)
{
	struct vmm_vm *vm = fake_vm_new(16, 1, 0, NULL, NULL);
	struct vmm__cpu_state st = { .id = 0 };
	int msrs1, msrs2;

	(void)state;
	assert_non_null(vm);
	fake_kvm_log_clear();
	assert_int_equal(vmm__cpu_state_get(vm->kvm, vm->vcpus[0].fd, &st), 0);
	/* Save: MP_STATE first (it may take a latched INIT), events right after it, before
	 * SREGS and DEBUGREGS (CR2 and DR6 must match the exception in the events). */
	ORDER(KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_GET_SREGS, KVM_GET_DEBUGREGS);
	assert_true(fake_kvm_log_find(KVM_GET_REGS, 0) > fake_kvm_log_find(KVM_GET_MP_STATE, 0));

	/* A different CPUID and TSC rate, so that neither set is skipped as already in place. */
	st.cpuid[0].eax ^= 1;
	st.tsc_khz = 3000000;
	fake_kvm_log_clear();
	assert_int_equal(vmm__cpu_state_set(vm->kvm, vm->vcpus[0].fd, &st, NULL, NULL), 0);
	ORDER(KVM_SET_CPUID2, KVM_SET_TSC_KHZ, KVM_SET_SREGS, KVM_SET_REGS, KVM_SET_LAPIC,
	      KVM_SET_MSRS, KVM_SET_VCPU_EVENTS, KVM_SET_MP_STATE);
	ORDER(KVM_SET_CPUID2, KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS, KVM_SET_LAPIC);
	ORDER(KVM_SET_TSC_KHZ, KVM_SET_MSRS);
	/* The TSC deadline goes in a batch of its own, after the one with the TSC. */
	msrs1 = fake_kvm_log_find(KVM_SET_MSRS, 0);
	msrs2 = fake_kvm_log_find(KVM_SET_MSRS, msrs1 + 1);
	assert_true(msrs2 > msrs1);
	assert_true(msrs2 < fake_kvm_log_find(KVM_SET_VCPU_EVENTS, 0));
	assert_true(fake_kvm_log_find(KVM_SET_MP_STATE, 0) < fake_kvm_log_find(KVM_KVMCLOCK_CTRL, 0));
	vmm__cpu_state_free(&st);
	vmm_vm_destroy(vm);
}

static void vm_wide_restore_order(void **state)
{
	struct vmm_vm *vm = fake_vm_new(16, 1, 0, NULL, NULL);
	struct vmm__vm_kstate ks;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm__vm_kstate_get(vm->fd, &ks), 0);
	fake_kvm_log_clear();
	assert_int_equal(vmm__vm_kstate_set(vm->fd, &ks), 0);
	/* PICs and IOAPIC, then the PIT (its first tick must land in them), kvmclock last. */
	ORDER(KVM_SET_IRQCHIP, KVM_SET_IRQCHIP, KVM_SET_IRQCHIP, KVM_SET_PIT2, KVM_SET_CLOCK);
	vmm_vm_destroy(vm);
}

/* vmm_vm_state_load: every vCPU's LAPIC before the VM-wide interrupt controllers (an
 * IOAPIC restored first would deliver into a LAPIC that is then overwritten). */
static void state_load_order(void **state)
{
	struct vmm_vm *vm = fake_vm_new_loaded(16, 2, NULL, NULL), *vm2;
	void *buf;
	size_t len;
	int last_lapic, first_chip;

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_start(vm), 0);
	assert_int_equal(vmm_vm_pause(vm), 0);
	assert_int_equal(vmm_vm_state_save(vm, &buf, &len), 0);
	vm2 = fake_vm_new(16, 2, 0, NULL, NULL);
	assert_non_null(vm2);
	fake_kvm_log_clear();
	assert_int_equal(vmm_vm_state_load(vm2, buf, len), 0);
	first_chip = fake_kvm_log_find(KVM_SET_IRQCHIP, 0);
	last_lapic = fake_kvm_log_find(KVM_SET_LAPIC, 0);
	assert_true(last_lapic >= 0 && first_chip >= 0);
	last_lapic = fake_kvm_log_find(KVM_SET_LAPIC, last_lapic + 1); /* the second vCPU's */
	assert_true(last_lapic >= 0);
	assert_true(last_lapic < first_chip);
	free(buf);
	vmm_vm_destroy(vm2);
	vmm_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(vcpu_restore_order, fake_vm_setup),
		cmocka_unit_test_setup(vm_wide_restore_order, fake_vm_setup),
		cmocka_unit_test_setup(state_load_order, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
