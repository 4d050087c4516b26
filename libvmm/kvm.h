/* The host side of KVM: /dev/kvm, the capabilities libvmm relies on, the CPUID KVM
 * supports and the MSRs it saves. Opened once per VM (cheap) so a VM owns all its fds. */
#ifndef VMM_KVM_H
#define VMM_KVM_H

#include <linux/kvm.h>
#include <stdint.h>

struct vmm__kvm {
	int fd;                       /* /dev/kvm */
	int vcpu_mmap_size;           /* size of each vCPU's struct kvm_run mapping */
	int xsave_size;               /* bytes of KVM_GET_XSAVE2 (>= 4096) */
	int has_xsave2;
	int has_xcrs;
	int has_manual_dirty_protect; /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags, 0 if absent */
	int dirty_ring_max;           /* KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) bytes, 0 if absent */
	int dirty_ring_acq_rel;
	struct kvm_msr_list *msrs;    /* MSRs saved and restored: KVM's list, readable ones */
	struct kvm_cpuid2 *cpuid;     /* KVM_GET_SUPPORTED_CPUID */
};

/* Opens /dev/kvm and reads what libvmm needs. VMM_ENOKVM if absent or API != 12. */
int vmm__kvm_open(struct vmm__kvm **out);
void vmm__kvm_close(struct vmm__kvm *kvm);

/* ioctl retried on EINTR. */
int vmm__ioctl(int fd, unsigned long req, void *arg);

#endif
