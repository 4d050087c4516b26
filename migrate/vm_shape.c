/* VM shape <-> Hello message, and the checks on an incoming one. */
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "error_internal.h"
#include "vmm/version.h"
#include "memory.h"
#include "stream.h"
#include "vm_internal.h"
#include "vm_shape.h"

uint64_t vmm__cpuid_digest(struct vmm_vm *vm)
{
	const struct kvm_cpuid2 *c = vm->kvm->cpuid;
	XXH3_state_t st;

	/* KVM_GET_SUPPORTED_CPUID reports the topology of the host CPU that ran the ioctl
	 * (leaf 1 EBX[31:24], leaves 0xb/0x1f EDX, AMD's 0x8000001e EAX/EBX): leave those out,
	 * or the same host would look different from one call to the next. */
	XXH3_64bits_reset(&st);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 e = c->entries[i];

		if (e.function == 1)
			e.ebx &= 0x00ffffff;
		if (e.function == 0xb || e.function == 0x1f)
			e.edx = 0;
		if (e.function == 0x8000001e)
			e.eax = e.ebx = 0;
		XXH3_64bits_update(&st, &e, sizeof(e));
	}
	return XXH3_64bits_digest(&st);
}

void vmm__hello_from_vm(struct vmm_vm *vm, uint64_t required_features, struct vmm__hello_buf *hb)
{
	vmm__stream__hello__init(&hb->hello);
	vmm__stream__vm_shape__init(&hb->shape);
	hb->shape.has_mem_size = 1, hb->shape.mem_size = vm->mem.size;
	hb->shape.has_vcpus = 1, hb->shape.vcpus = vm->nvcpus;
	hb->shape.has_cpuid_digest = 1, hb->shape.cpuid_digest = vmm__cpuid_digest(vm);
	hb->shape.has_page_size = 1, hb->shape.page_size = VMM_PAGE_SIZE;
	hb->shape.cmdline = vm->cmdline;
	hb->shape.has_dirty_ring_entries = 1;
	hb->shape.dirty_ring_entries = vm->cfg.dirty_ring_entries;
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
