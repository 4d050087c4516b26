/* The host side of KVM: /dev/kvm, the capabilities libvmm relies on, the CPUID KVM
 * supports and the MSRs it saves. Opened once per VM (cheap) so a VM owns all its fds. */
#ifndef VMM_KVM_H
#define VMM_KVM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every call libvmm makes on a KVM fd (/dev/kvm, a VM, a vCPU) goes through these, so that
 * unit tests can run VMs on a fake kernel (tests/util/fake_kvm.c) on hosts without KVM.
 * The real ops are the system calls. Failures return -1 (MAP_FAILED for mmap) with errno. */
struct vmm__kvm_ops {
	int (*open_dev)(void);                              /* /dev/kvm, read-write */
	int (*ioctl)(int fd, unsigned long req, void *arg); /* once: EINTR is returned */
	void *(*mmap)(int fd, size_t len, off_t offset);    /* shared, read-write */
	int (*munmap)(void *p, size_t len);
	int (*close)(int fd);
};

/* The kernel is one per process: the ops are too. A test installs a fake before it creates
 * its first VM and keeps it until the last is destroyed; NULL puts the system calls back.
 * Not for the public API, and not thread-safe. */
void vmm__kvm_set_ops_for_tests(const struct vmm__kvm_ops *ops);

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
/* How many vCPUs a VM may have here: KVM_CAP_NR_VCPUS, what KVM recommends (its online
 * CPUs on x86; 4 if not reported), and KVM_CAP_MAX_VCPUS, what it allows (the recommended
 * figure if not reported). Opens /dev/kvm for the question: no VM needed. */
int vmm__kvm_vcpu_limits(uint32_t *recommended, uint32_t *max);

/* ioctl on a KVM fd, retried on EINTR. */
int vmm__ioctl(int fd, unsigned long req, void *arg);
/* ioctl on a KVM fd, not retried: KVM_RUN, whose EINTR is the pause kick. */
int vmm__ioctl_once(int fd, unsigned long req, void *arg);
/* Maps len bytes of a KVM fd at offset (kvm_run, a dirty ring); MAP_FAILED on error. */
void *vmm__kvm_mmap(int fd, size_t len, off_t offset);
void vmm__kvm_munmap(void *p, size_t len);
/* Closes a VM or vCPU fd. */
void vmm__kvm_close_fd(int fd);

#endif
