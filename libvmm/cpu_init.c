/* Each vCPU's CPUID (with its APIC ID) and LAPIC wiring at creation, as firmware would
 * leave them. */
#include <stdlib.h>
#include <string.h>

#include "libvmm/cpu_init.h"
#include "libvmm/cpu_model.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"

#define APIC_SPIV 0x0f0
#define APIC_SPIV_ENABLE 0x100
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x700
#define APIC_MODE_NMI 0x400

static void fix_cpuid(struct kvm_cpuid2 *c, uint32_t id)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* Initial APIC ID, and say we are a hypervisor guest. */
			e->ebx = (e->ebx & 0x00ffffff) | (id << 24);
			e->ecx |= 1u << 31;
			break;
		case 0xb:
		case 0x1f:
			e->edx = id; /* x2APIC ID */
			break;
		}
	}
}

/* Every vCPU's LAPIC goes through KVM_SET_LAPIC once. On this host's KVM an AP whose LAPIC
 * was never set received no INIT/SIPI at all (tracing showed kvm_apic_ipi to APIC ID 1 and
 * no kvm_apic_accept_irq): setting it makes KVM rebuild its APIC-ID map, as QEMU's
 * per-vCPU LAPIC put does. Only the boot vCPU gets firmware-like LINT and SVR values. */
static int set_lapic(int fd, uint32_t id)
{
	struct kvm_lapic_state la;
	uint32_t *lvt0 = (uint32_t *)&la.regs[APIC_LVT0], *lvt1 = (uint32_t *)&la.regs[APIC_LVT1];

	if (vmm__ioctl(fd, KVM_GET_LAPIC, &la) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_GET_LAPIC");
	if (id != 0)
		goto set;
	*lvt0 = (*lvt0 & ~0x1700u) | APIC_MODE_EXTINT;
	*lvt1 = (*lvt1 & ~0x1700u) | APIC_MODE_NMI;
	*lvt0 &= ~0x10000u; /* unmasked */
	*lvt1 &= ~0x10000u;
	/* Software-enabled, spurious vector 0xff: the state PC firmware (SeaBIOS) hands a
	 * multiboot or Linux kernel, which guests written against QEMU rely on. */
	*(uint32_t *)&la.regs[APIC_SPIV] = APIC_SPIV_ENABLE | 0xff;
set:
	if (vmm__ioctl(fd, KVM_SET_LAPIC, &la) < 0)
		return vmm__err_sys(VMM_EKVM, "KVM_SET_LAPIC");
	return 0;
}

int vmm__cpu_init(const struct kvm_cpuid2 *sup, const struct vmm__cpu_model *model, int fd,
		  uint32_t id)
{
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int r = 0;

	if (!c)
		return vmm__err(VMM_ENOMEM, "CPUID");
	memcpy(c, sup, sz);
	vmm__cpu_model_apply(model, c);
	fix_cpuid(c, id);
	/* CPUID first: KVM derives the XSAVE size, MSR validity and APIC features from it. */
	if (vmm__ioctl(fd, KVM_SET_CPUID2, c) < 0)
		r = vmm__err_sys(VMM_EKVM, "KVM_SET_CPUID2");
	free(c);
	if (!r)
		r = set_lapic(fd, id);
	return r;
}
