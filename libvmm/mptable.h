/* The MP table (Intel MultiProcessor Specification 1.4) that tells a stock Linux kernel
 * how many CPUs it has and how ISA interrupts reach the I/O APIC. mptable.c has the
 * layout. */
#ifndef VMM_MPTABLE_H
#define VMM_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define VMM_MPF_LEN 16                /* the floating pointer */
#define VMM_MP_ISA_IRQS 16            /* I/O interrupt entries: ISA IRQ n on I/O APIC pin n */
/* Then pins 16-23 (the virtio devices' lines, virtio_mmio.h): IRQ n on pin n, level-
 * triggered, active high, as those devices hold their line while an interrupt is due. */
#define VMM_MP_IRQS 24
#define VMM_MP_LAPIC_ADDR 0xfee00000u /* where KVM's LAPICs and I/O APIC live */
#define VMM_MP_IOAPIC_ADDR 0xfec00000u

/* Bytes the floating pointer and configuration table take for ncpus vCPUs. */
size_t vmm__mptable_size(uint32_t ncpus);

/* Writes the floating pointer at dst (guest address gpa, 16-byte aligned, below 1 MiB) and
 * the configuration table right after it: processor entries for APIC IDs 0..ncpus-1 (0 the
 * boot CPU) with the given CPUID signature (leaf 1 EAX) and features (leaf 1 EDX). room:
 * bytes available at dst. VMM_EINVAL for a count the table cannot carry, VMM_ETOOBIG if
 * it does not fit; nothing is written then. */
int vmm__mptable_write(uint8_t *dst, size_t room, uint64_t gpa, uint32_t ncpus,
		       uint32_t cpu_signature, uint32_t cpu_features);

#endif
