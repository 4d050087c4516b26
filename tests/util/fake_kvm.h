/* A fake of the KVM kernel API, enough to create VMs, load kernels, run scripted exits,
 * save and restore state and track dirty pages on hosts without /dev/kvm. It keeps every
 * register set it is given, hands it back on GET, and records the sequence of calls so
 * tests can check the order libvmm makes them in. Install it before creating a VM. */
#ifndef VMM_FAKE_KVM_H
#define VMM_FAKE_KVM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

/* Resets the fake (no VMs, empty log and scripts, default capabilities) and routes
 * libvmm's KVM calls to it. fake_kvm_uninstall() puts the system calls back. */
void fake_kvm_install(void);
void fake_kvm_uninstall(void);

/* Capabilities reported to the next vmm__kvm_open: manual dirty protect on or off, and the
 * dirty ring's maximum size in bytes (0: no ring). */
void fake_kvm_set_caps(int manual_protect, uint32_t dirty_ring_bytes);

/* KVM_SET_MSRS refuses MSR index (as KVM does a value it does not take): libvmm skips it
 * and says so through the log callback. 0: none (the default after install). */
void fake_kvm_refuse_msr(uint32_t index);

/* The call log: every ioctl in order, with the fd it was made on. */
struct fake_kvm_call {
	int fd;
	unsigned long req;
};
void fake_kvm_log_clear(void);
size_t fake_kvm_log(const struct fake_kvm_call **calls);
/* Index of the first logged call of req at or after `from`, -1 if none. */
int fake_kvm_log_find(unsigned long req, size_t from);

/* The newest VM's vCPU `id` (its kernel-side state), and VM-wide state. */
struct fake_kvm_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	uint32_t tsc_khz;
};
struct fake_kvm_vcpu_state *fake_kvm_vcpu(uint32_t id);
int fake_kvm_vcpu_fd(uint32_t id);
int fake_kvm_vm_fd(void);

/* Scripted exits of the newest VM's vCPU `id`, taken one per KVM_RUN. With none left the
 * vCPU "runs" until kicked (KVM_RUN then fails with EINTR, as a signal makes it). */
void fake_kvm_script_pio_out(uint32_t id, uint16_t port, const void *data, uint32_t len);
void fake_kvm_script_exit(uint32_t id, uint32_t exit_reason);
/* Waits (up to 5 s) until vCPU id has taken every scripted exit. Returns 0 or -1. */
int fake_kvm_script_wait(uint32_t id);

/* Dirty tracking: marks a page of memory slot `slot` dirty in KVM's bitmap, or publishes
 * an entry in vCPU id's dirty ring. */
void fake_kvm_dirty_set(uint32_t slot, uint64_t page);
void fake_kvm_ring_push(uint32_t id, uint32_t slot, uint64_t offset);
/* Whether slot logs dirty pages (KVM_MEM_LOG_DIRTY_PAGES), and its page count. */
int fake_kvm_slot_logging(uint32_t slot);
/* How many pages KVM_CLEAR_DIRTY_LOG (with a set bit) re-protected in slot, so far. */
uint64_t fake_kvm_cleared(uint32_t slot);

#endif
