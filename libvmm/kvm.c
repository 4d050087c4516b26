/* /dev/kvm: API version, capabilities, supported CPUID and the list of MSRs to migrate. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"

#define KVM_MSR_LIST_MAX 1024
#define KVM_CPUID_MAX 256

static int sys_open_dev(void)
{
	return open("/dev/kvm", O_RDWR | O_CLOEXEC);
}

static int sys_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static void *sys_mmap(int fd, size_t len, off_t offset)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
}

static const struct vmm__kvm_ops sys_ops = {
	.open_dev = sys_open_dev,
	.ioctl = sys_ioctl,
	.mmap = sys_mmap,
	.munmap = munmap,
	.close = close,
};

static const struct vmm__kvm_ops *ops = &sys_ops;

void vmm__kvm_set_ops_for_tests(const struct vmm__kvm_ops *o)
{
	ops = o ? o : &sys_ops;
}

int vmm__ioctl_once(int fd, unsigned long req, void *arg)
{
	return ops->ioctl(fd, req, arg);
}

int vmm__ioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ops->ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

void *vmm__kvm_mmap(int fd, size_t len, off_t offset)
{
	return ops->mmap(fd, len, offset);
}

void vmm__kvm_munmap(void *p, size_t len)
{
	ops->munmap(p, len);
}

void vmm__kvm_close_fd(int fd)
{
	ops->close(fd);
}

static int read_msr_list(struct vmm__kvm *kvm)
{
	kvm->msrs = calloc(1, sizeof(*kvm->msrs) + KVM_MSR_LIST_MAX * sizeof(uint32_t));
	if (!kvm->msrs)
		return vmm__err(VMM_ENOMEM, "MSR list");
	kvm->msrs->nmsrs = KVM_MSR_LIST_MAX;
	if (vmm__ioctl(kvm->fd, KVM_GET_MSR_INDEX_LIST, kvm->msrs) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_GET_MSR_INDEX_LIST");
	return 0;
}

static int read_supported_cpuid(struct vmm__kvm *kvm)
{
	kvm->cpuid = calloc(1, sizeof(*kvm->cpuid) +
				       KVM_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	if (!kvm->cpuid)
		return vmm__err(VMM_ENOMEM, "CPUID table");
	kvm->cpuid->nent = KVM_CPUID_MAX;
	if (vmm__ioctl(kvm->fd, KVM_GET_SUPPORTED_CPUID, kvm->cpuid) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_GET_SUPPORTED_CPUID");
	return 0;
}

static int check_extension(int fd, long cap)
{
	int r = vmm__ioctl(fd, KVM_CHECK_EXTENSION, (void *)cap);

	return r < 0 ? 0 : r;
}

int vmm__kvm_open(struct vmm__kvm **out)
{
	struct vmm__kvm *kvm = calloc(1, sizeof(*kvm));
	int r;

	if (!kvm)
		return vmm__err(VMM_ENOMEM, "KVM handle");
	kvm->fd = ops->open_dev();
	if (kvm->fd < 0) {
		r = vmm__err_sys(VMM_ENOKVM, "open /dev/kvm");
		goto fail;
	}
	if (vmm__ioctl(kvm->fd, KVM_GET_API_VERSION, NULL) != KVM_API_VERSION) {
		r = vmm__err(VMM_ENOKVM, "KVM API version is not %d", KVM_API_VERSION);
		goto fail;
	}
	/* Every capability below without a fallback is one libvmm cannot work without. */
	if (!check_extension(kvm->fd, KVM_CAP_IRQCHIP) || !check_extension(kvm->fd, KVM_CAP_PIT2) ||
	    !check_extension(kvm->fd, KVM_CAP_IMMEDIATE_EXIT) ||
	    !check_extension(kvm->fd, KVM_CAP_XSAVE) || !check_extension(kvm->fd, KVM_CAP_VCPU_EVENTS) ||
	    !check_extension(kvm->fd, KVM_CAP_ADJUST_CLOCK)) {
		r = vmm__err(VMM_EUNSUPPORTED,
			     "KVM lacks one of IRQCHIP, PIT2, IMMEDIATE_EXIT, XSAVE, VCPU_EVENTS, ADJUST_CLOCK");
		goto fail;
	}
	kvm->vcpu_mmap_size = vmm__ioctl(kvm->fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (kvm->vcpu_mmap_size <= 0) {
		r = vmm__err_sys(VMM_EKVM, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	kvm->xsave_size = check_extension(kvm->fd, KVM_CAP_XSAVE2);
	kvm->has_xsave2 = kvm->xsave_size > 0;
	if (kvm->xsave_size < (int)sizeof(struct kvm_xsave))
		kvm->xsave_size = sizeof(struct kvm_xsave);
	kvm->has_xcrs = check_extension(kvm->fd, KVM_CAP_XCRS);
	kvm->has_manual_dirty_protect = check_extension(kvm->fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	kvm->dirty_ring_max = check_extension(kvm->fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	kvm->dirty_ring_acq_rel = kvm->dirty_ring_max > 0;
	if (!kvm->dirty_ring_max)
		kvm->dirty_ring_max = check_extension(kvm->fd, KVM_CAP_DIRTY_LOG_RING);
	r = read_msr_list(kvm);
	if (!r)
		r = read_supported_cpuid(kvm);
	if (r)
		goto fail;
	*out = kvm;
	return 0;
fail:
	vmm__kvm_close(kvm);
	return r;
}

int vmm__kvm_vcpu_limits(uint32_t *recommended, uint32_t *max)
{
	int fd = ops->open_dev(), nr, mx;

	if (fd < 0)
		return vmm__err_sys(VMM_ENOKVM, "open /dev/kvm");
	nr = check_extension(fd, KVM_CAP_NR_VCPUS);
	mx = check_extension(fd, KVM_CAP_MAX_VCPUS);
	ops->close(fd);
	/* The KVM API documentation's defaults when a capability is not reported. */
	*recommended = nr > 0 ? (uint32_t)nr : 4;
	*max = mx > 0 ? (uint32_t)mx : *recommended;
	return 0;
}

void vmm__kvm_close(struct vmm__kvm *kvm)
{
	if (!kvm)
		return;
	if (kvm->fd >= 0)
		ops->close(kvm->fd);
	free(kvm->msrs);
	free(kvm->cpuid);
	free(kvm);
}
