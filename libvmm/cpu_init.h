/* Per-vCPU setup at creation, before the guest or a saved state is loaded. */
#ifndef VMM_CPU_INIT_H
#define VMM_CPU_INIT_H

#include <stdint.h>

struct kvm_cpuid2;
struct vmm__cpu_model;

/* Gives vCPU fd (number id) the supported CPUID masked to the CPU model (cpu_model.h),
 * with its APIC ID and, on the boot vCPU, LAPIC LINT0 as ExtINT and LINT1 as NMI so the
 * PIC reaches it, as firmware would leave it. */
int vmm__cpu_init(const struct kvm_cpuid2 *supported, const struct vmm__cpu_model *model,
		  int fd, uint32_t id);

#endif
