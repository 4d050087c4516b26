/* Guest RAM layout and allocation. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/memory.h"

static void layout(struct vmm__memory *m, uint64_t size)
{
	uint64_t low = size < VMM_MEM_HOLE_START ? size : VMM_MEM_HOLE_START;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->size = size;
	m->regions[0] = (struct vmm__mem_region){ 0, low, 0, 0 };
	m->nregions = 1;
	if (size > low) {
		m->regions[1] =
			(struct vmm__mem_region){ VMM_MEM_HOLE_END, size - low, low, 1 };
		m->nregions = 2;
	}
}

int vmm__memory_init_file(struct vmm__memory *m, uint64_t size, int fd, uint64_t offset)
{
	layout(m, size);
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
		       (off_t)offset);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		return vmm__err_sys(VMM_ENOMEM, "mmap snapshot RAM");
	}
	return 0;
}

int vmm__memory_init(struct vmm__memory *m, uint64_t size)
{
	layout(m, size);
	m->memfd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return vmm__err_sys(VMM_ESYS, "memfd_create");
	if (ftruncate(m->memfd, (off_t)size) < 0)
		return vmm__err_sys(VMM_ENOMEM, "ftruncate guest RAM");
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		return vmm__err_sys(VMM_ENOMEM, "mmap guest RAM");
	}
	/* Huge pages where the kernel's shmem policy allows them: fewer faults on first touch,
	 * which is the slowest thing on these hosts. */
	madvise(m->host, size, MADV_HUGEPAGE);
	return 0;
}

int vmm__memory_map(struct vmm__memory *m, int vm_fd)
{
	for (uint32_t i = 0; i < m->nregions; i++) {
		const struct vmm__mem_region *r = &m->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = m->slot_flags,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(m->host + r->offset),
		};

		if (vmm__ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return vmm__err_sys(VMM_EKVM, "KVM_SET_USER_MEMORY_REGION");
	}
	return 0;
}

void vmm__memory_free(struct vmm__memory *m)
{
	if (m->host)
		munmap(m->host, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	m->host = NULL;
	m->memfd = -1;
}

void *vmm__memory_gpa(const struct vmm__memory *m, uint64_t gpa, uint64_t len)
{
	for (uint32_t i = 0; i < m->nregions; i++) {
		const struct vmm__mem_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return m->host + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

uint64_t vmm__memory_low_end(const struct vmm__memory *m)
{
	return m->regions[0].size;
}
