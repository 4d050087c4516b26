/* The entry register state for the boot vCPU, and the guest RAM map. */
#include <stdlib.h>
#include <string.h>

#include "libvmm/boot.h"
#include "libvmm/error_internal.h"
#include "libvmm/vm_internal.h"

#define CR0_PE 0x1ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code64;
	s->db = !code64;
}

static int set_entry_state(struct vmm_vm *vm, const struct kvm_sregs *sregs,
			   const struct kvm_regs *regs)
{
	int fd = vm->vcpus[0].fd;

	if (vmm__ioctl(fd, KVM_SET_SREGS, (void *)sregs) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_SREGS");
	if (vmm__ioctl(fd, KVM_SET_REGS, (void *)regs) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_REGS");
	return 0;
}

int vmm__boot_enter_protected(struct vmm_vm *vm, uint32_t entry, uint32_t eax, uint32_t ebx)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 2, .rip = entry, .rax = eax, .rbx = ebx };

	/* Start from KVM's reset state so TR, LDT and the rest stay valid. */
	if (vmm__ioctl(vm->vcpus[0].fd, KVM_GET_SREGS, &sregs) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_GET_SREGS");
	flat_segment(&sregs.cs, 0x08, 0xb, 0);
	flat_segment(&sregs.ds, 0x10, 0x3, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 = CR0_PE | CR0_ET;
	sregs.cr4 = 0;
	sregs.efer = 0;
	return set_entry_state(vm, &sregs, &regs);
}

/* Identity map of the low 4 GiB with 2 MiB pages: PML4 -> PDPT -> 4 PDs. */
static int build_page_tables(struct vmm_vm *vm)
{
	uint64_t *pml4 = vmm__memory_gpa(&vm->mem, VMM_BOOT_PML4, 6 * 4096);
	uint64_t *pdpt, *pd;

	if (!pml4)
		return vmm__err(VMM_ETOOBIG, "no RAM for boot page tables");
	memset(pml4, 0, 6 * 4096);
	pdpt = pml4 + 512;
	pd = pdpt + 512;
	pml4[0] = (VMM_BOOT_PML4 + 0x1000) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (VMM_BOOT_PML4 + 0x2000 + i * 0x1000) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
	return 0;
}

static int build_gdt(struct vmm_vm *vm)
{
	/* null, null, 64-bit code (0x10), data (0x18): the selectors Linux's boot protocol
	 * names __BOOT_CS and __BOOT_DS. */
	static const uint64_t gdt[4] = { 0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull };
	void *p = vmm__memory_gpa(&vm->mem, VMM_BOOT_GDT, sizeof(gdt));

	if (!p)
		return vmm__err(VMM_ETOOBIG, "no RAM for the boot GDT");
	memcpy(p, gdt, sizeof(gdt));
	return 0;
}

int vmm__boot_enter_long(struct vmm_vm *vm, uint64_t entry, uint64_t rsi)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 2, .rip = entry, .rsi = rsi,
				 .rsp = VMM_BOOT_STACK, .rbp = VMM_BOOT_STACK };
	int r = build_page_tables(vm);

	if (!r)
		r = build_gdt(vm);
	if (r)
		return r;
	if (vmm__ioctl(vm->vcpus[0].fd, KVM_GET_SREGS, &sregs) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_GET_SREGS");
	flat_segment(&sregs.cs, 0x10, 0xb, 1);
	flat_segment(&sregs.ds, 0x18, 0x3, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = VMM_BOOT_GDT;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.cr3 = VMM_BOOT_PML4;
	sregs.cr4 = CR4_PAE;
	sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	return set_entry_state(vm, &sregs, &regs);
}

uint32_t vmm__boot_e820(const struct vmm_vm *vm, struct vmm__e820 *e, uint32_t max)
{
	const struct vmm__memory *m = &vm->mem;
	uint32_t n = 0;

#define ADD(a, s, t)                                                   \
	do {                                                           \
		if (n < max)                                           \
			e[n++] = (struct vmm__e820){ (a), (s), (t) }; \
	} while (0)
	ADD(0, VMM_LOW_RAM_END, 1);
	ADD(VMM_LOW_RAM_END, 0x100000 - VMM_LOW_RAM_END, 2);
	if (m->regions[0].size > 0x100000)
		ADD(0x100000, m->regions[0].size - 0x100000, 1);
	if (m->nregions > 1)
		ADD(m->regions[1].gpa, m->regions[1].size, 1);
#undef ADD
	return n;
}
