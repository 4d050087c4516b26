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
/* KVM_CAP_NR_VCPUS (the recommended maximum: online CPUs on x86) and KVM_CAP_MAX_VCPUS
 * for the next vmm__kvm_open; the defaults are 8 and 64. */
void fake_kvm_set_vcpu_caps(int nr_vcpus, int max_vcpus);

/* KVM_SET_MSRS refuses MSR index (as KVM does a value it does not take): libvmm skips it
 * and says so through the log callback. 0: none (the default after install). */
void fake_kvm_refuse_msr(uint32_t index);

/* The host's CPUID (KVM_GET_SUPPORTED_CPUID) is a modern x86-64 with AVX-512, SHA, GFNI,
 * VAES and both VMX and SVM. fake_kvm_cpuid_clear hides one bit of it from the next
 * vmm__kvm_open (a "destination host" without that feature); reg is FAKE_EAX..FAKE_EDX. */
enum { FAKE_EAX, FAKE_EBX, FAKE_ECX, FAKE_EDX };
void fake_kvm_cpuid_clear(uint32_t leaf, uint32_t sub, int reg, uint32_t bit);
/* The TSC rate new vCPUs start at (default 2 GHz). */
void fake_kvm_set_host_tsc_khz(uint32_t khz);
/* A host running its TSC at host_khz without TSC scaling: KVM_CAP_TSC_CONTROL is 0 and
 * KVM_SET_TSC_KHZ refuses any other rate (EINVAL). */
void fake_kvm_no_tsc_scaling(uint32_t host_khz);
/* The entry (leaf, sub) of the CPUID the newest VM's vCPU id was given (KVM_SET_CPUID2);
 * 0, or -1 if it has none. */
int fake_kvm_vcpu_cpuid(uint32_t id, uint32_t leaf, uint32_t sub, struct kvm_cpuid_entry2 *out);

/* The newest VM's interrupt line irq (KVM_IRQ_LINE): its level, and in *raises (may be
 * NULL) how many times it went from 0 to 1. */
int fake_kvm_irq_level(uint32_t irq, uint32_t *raises);

/* The newest VM's KVM_IOEVENTFD and KVM_IRQFD registrations still assigned (at most max
 * into out): how many. */
uint32_t fake_kvm_ioeventfds(struct kvm_ioeventfd *out, uint32_t max);
uint32_t fake_kvm_irqfds(struct kvm_irqfd *out, uint32_t max);

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
/* A guest read of the byte at gpa in vCPU id's KVM_RUN, made outside the fake's lock as
 * KVM faults guest pages in: a page missing under userfaultfd makes the vCPU wait in
 * KVM_RUN until it is served. Not an exit: the run goes on (or ends with EINTR if kicked
 * meanwhile). fake_kvm_touched: the byte the vCPU's last touch read (-1: none yet, or the
 * gpa was not RAM). */
void fake_kvm_script_touch(uint32_t id, uint64_t gpa);
int fake_kvm_touched(uint32_t id);
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
