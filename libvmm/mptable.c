/* The Intel MultiProcessor Specification 1.4 table a stock Linux kernel reads to find its
 * CPUs and its I/O APIC when there is no ACPI: without it Linux boots one CPU in "virtual
 * wire" mode (PIT through the PIC into LINT0) and never touches the I/O APIC. Layout (MP
 * spec chapter 4), all in the F segment, which is reserved in the e820 map and which
 * Linux scans for the floating pointer:
 *   floating pointer "_MP_" (16 bytes) -> configuration table "PCMP" (44-byte header), then
 *   one processor entry per vCPU, the ISA bus, the I/O APIC, one I/O interrupt entry per
 *   ISA IRQ 0-15 (edge, as ISA says), one for each of pins 16-23 (level-triggered, active
 *   high: the virtio devices' lines) and the two local interrupt entries (LINT0 ExtINT,
 *   LINT1 NMI). Without an entry Linux maps no IRQ to a pin above 15.
 * The routing matches KVM's default GSI routing for its in-kernel irqchip: ISA IRQ n is
 * I/O APIC pin n (and PIC input n), so the in-kernel PIT (GSI 0) arrives on pin 0. */
#include <string.h>

#include "libvmm/boot.h"
#include "libvmm/error_internal.h"
#include "libvmm/le_bytes.h"
#include "libvmm/mptable.h"

#define MPC_HEADER_LEN 44
#define MPC_CPU_LEN 20
#define MPC_ENTRY_LEN 8 /* bus, I/O APIC, I/O and local interrupt entries */

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC };
enum { MP_INT, MP_NMI, MP_SMI, MP_EXTINT };

#define CPU_ENABLED 0x01
#define CPU_BOOT 0x02
#define LAPIC_VERSION 0x14  /* integrated xAPIC, as KVM's LAPIC reports */
#define IOAPIC_VERSION 0x11 /* KVM's in-kernel I/O APIC (82093AA) */
#define IOAPIC_ENABLED 0x01
#define ISA_BUS_ID 0
#define ALL_LAPICS 0xff
#define INT_LEVEL_HIGH 0x0d /* polarity 01 active high, trigger 11 level (MP spec 4.3.4) */

size_t vmm__mptable_size(uint32_t ncpus)
{
	return VMM_MPF_LEN + MPC_HEADER_LEN + ncpus * MPC_CPU_LEN +
	       (2 + VMM_MP_IRQS + 2) * MPC_ENTRY_LEN;
}

/* An 8-byte interrupt entry: type, interrupt type, flags (0: as the bus says, which for
 * ISA is edge-triggered, active high), source bus and IRQ, destination and its input. */
static uint8_t *put_int(uint8_t *p, uint8_t type, uint8_t irqtype, uint16_t flags, uint8_t irq,
			uint8_t dst, uint8_t pin)
{
	p[0] = type;
	p[1] = irqtype;
	vmm__put_le16(p + 2, flags);
	p[4] = ISA_BUS_ID;
	p[5] = irq;
	p[6] = dst;
	p[7] = pin;
	return p + MPC_ENTRY_LEN;
}

int vmm__mptable_write(uint8_t *dst, size_t room, uint64_t gpa, uint32_t ncpus,
		       uint32_t cpu_signature, uint32_t cpu_features)
{
	size_t len = vmm__mptable_size(ncpus);
	uint8_t *mpf = dst, *mpc = dst + VMM_MPF_LEN, *p;
	/* The I/O APIC takes the first ID after the CPUs' APIC IDs (0..ncpus-1). */
	uint8_t ioapic_id = (uint8_t)ncpus;

	if (ncpus < 1 || ncpus >= ALL_LAPICS)
		return vmm__err(VMM_EINVAL, "MP table for %u vCPUs (1-254)", ncpus);
	if (len > room || gpa + len > 0x100000)
		return vmm__err(VMM_ETOOBIG, "MP table of %zu bytes does not fit in %zu", len, room);
	memset(dst, 0, len);

	memcpy(mpf, "_MP_", 4);
	vmm__put_le32(mpf + 4, (uint32_t)(gpa + VMM_MPF_LEN));
	mpf[8] = 1; /* length in 16-byte units */
	mpf[9] = 4; /* spec revision 1.4 */
	/* mpf[11]: 0, a configuration table follows (no default configuration); mpf[12]: no
	 * IMCR, so the PIC reaches the CPU through the LAPIC's LINT0 (virtual wire). */

	memcpy(mpc, "PCMP", 4);
	vmm__put_le16(mpc + 4, (uint16_t)(len - VMM_MPF_LEN));
	mpc[6] = 4;
	memcpy(mpc + 8, "LIBVMM  ", 8);       /* OEM ID */
	memcpy(mpc + 16, "KVM GUEST   ", 12); /* product ID */
	vmm__put_le16(mpc + 34, (uint16_t)(ncpus + 2 + VMM_MP_IRQS + 2));
	vmm__put_le32(mpc + 36, VMM_MP_LAPIC_ADDR);

	p = mpc + MPC_HEADER_LEN;
	for (uint32_t i = 0; i < ncpus; i++, p += MPC_CPU_LEN) {
		p[0] = MP_PROCESSOR;
		p[1] = (uint8_t)i; /* APIC ID: cpu_init.c gives vCPU i APIC ID i */
		p[2] = LAPIC_VERSION;
		p[3] = CPU_ENABLED | (i == 0 ? CPU_BOOT : 0);
		vmm__put_le32(p + 4, cpu_signature);
		vmm__put_le32(p + 8, cpu_features);
	}
	p[0] = MP_BUS;
	p[1] = ISA_BUS_ID;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_ENTRY_LEN;
	p[0] = MP_IOAPIC;
	p[1] = ioapic_id;
	p[2] = IOAPIC_VERSION;
	p[3] = IOAPIC_ENABLED;
	vmm__put_le32(p + 4, VMM_MP_IOAPIC_ADDR);
	p += MPC_ENTRY_LEN;
	for (uint8_t irq = 0; irq < VMM_MP_IRQS; irq++)
		p = put_int(p, MP_INTSRC, MP_INT, irq < VMM_MP_ISA_IRQS ? 0 : INT_LEVEL_HIGH, irq,
			    ioapic_id, irq);
	/* The PIC's output reaches the boot CPU's LINT0 (ExtINT); NMI goes to every LINT1. */
	p = put_int(p, MP_LINTSRC, MP_EXTINT, 0, 0, 0, 0);
	put_int(p, MP_LINTSRC, MP_NMI, 0, 0, ALL_LAPICS, 1);

	mpc[7] = vmm__fw_checksum(mpc, len - VMM_MPF_LEN);
	mpf[10] = vmm__fw_checksum(mpf, VMM_MPF_LEN);
	return 0;
}
