/* VM shape <-> Hello message, and the checks on an incoming one. */
#include <string.h>

#include "libvmm/error_internal.h"
#include "vmm/version.h"
#include "libvmm/memory.h"
#include "migrate/stream.h"
#include "libvmm/vm_move.h"
#include "migrate/vm_shape.h"

void vmm__hello_from_vm(struct vmm_vm *vm, uint64_t required_features, struct vmm__hello_buf *hb)
{
	struct vmm__move_shape sh;

	vmm__move_shape(vm, &sh);
	vmm__stream__hello__init(&hb->hello);
	vmm__stream__vm_shape__init(&hb->shape);
	hb->shape.has_mem_size = 1, hb->shape.mem_size = sh.mem_size;
	hb->shape.has_vcpus = 1, hb->shape.vcpus = sh.vcpus;
	hb->shape.has_cpuid_digest = 1, hb->shape.cpuid_digest = sh.cpuid_digest;
	hb->shape.has_page_size = 1, hb->shape.page_size = VMM_PAGE_SIZE;
	hb->shape.cmdline = (char *)sh.cmdline;
	hb->shape.has_dirty_ring_entries = 1;
	hb->shape.dirty_ring_entries = sh.dirty_ring_entries;
	hb->hello.has_version_major = 1, hb->hello.version_major = VMM_STREAM_MAJOR;
	hb->hello.has_version_minor = 1, hb->hello.version_minor = VMM_STREAM_MINOR;
	hb->hello.has_required_features = 1, hb->hello.required_features = required_features;
	hb->hello.has_optional_features = 1, hb->hello.optional_features = 0;
	hb->hello.library_version = (char *)vmm_version_string();
	hb->hello.shape = &hb->shape;
}

int vmm__hello_check(const Vmm__Stream__Hello *h)
{
	const Vmm__Stream__VmShape *s = h->shape;
	uint64_t unknown = h->required_features & ~VMM_FEAT_KNOWN;

	if (!h->has_version_major || h->version_major > VMM_STREAM_MAJOR ||
	    h->version_major < VMM_STREAM_MAJOR_MIN)
		return vmm__err(VMM_EVERSION, "format version %u.%u, this library reads %u.x-%u.x",
				h->version_major, h->version_minor, VMM_STREAM_MAJOR_MIN,
				VMM_STREAM_MAJOR);
	if (unknown)
		return vmm__err(VMM_EFEATURE, "required feature bits 0x%llx are unknown to libvmm %s",
				(unsigned long long)unknown, vmm_version_string());
	if (!s || !s->has_mem_size || !s->has_vcpus)
		return vmm__err(VMM_ESHAPE, "VM shape missing");
	if (s->mem_size < VMM_MEM_MIN || s->mem_size > VMM_MEM_MAX || s->mem_size % VMM_PAGE_SIZE)
		return vmm__err(VMM_ESHAPE, "memory size %llu out of range",
				(unsigned long long)s->mem_size);
	if (s->vcpus < 1 || s->vcpus > VMM_VCPUS_MAX)
		return vmm__err(VMM_ESHAPE, "%u vCPUs", s->vcpus);
	if (s->has_page_size && s->page_size != VMM_PAGE_SIZE)
		return vmm__err(VMM_ESHAPE, "page size %u", s->page_size);
	if (s->cmdline && strlen(s->cmdline) >= 4096)
		return vmm__err(VMM_ESHAPE, "command line too long");
	return 0;
}

void vmm__hello_to_config(const Vmm__Stream__Hello *h, struct vmm_vm_config *cfg)
{
	cfg->mem_size = h->shape->mem_size;
	cfg->vcpus = h->shape->vcpus;
	cfg->cmdline = h->shape->cmdline;
	cfg->dirty_ring_entries = h->shape->dirty_ring_entries;
}
