/* The ACPI tables (ACPI 6.4): RSDP -> XSDT -> FADT -> DSDT, and the MADT.
 *   - The FADT says "hardware-reduced ACPI" (no PM1 blocks, SCI, PM timer or FACS to
 *     emulate): Linux then skips the 8259 PIC and the PIT (acpi_generic_reduced_hw_init)
 *     and keeps time with kvmclock and the TSC-deadline LAPIC timer; the loader masks the
 *     in-kernel PIC to match (loader_linux.c).
 *   - The MADT lists what the MP table does (mptable.c): one LAPIC per vCPU (APIC ID i),
 *     the I/O APIC (ID ncpus, GSI base 0) and NMI on every LINT1; no 8259 (PCAT_COMPAT
 *     clear). Linux ignores the MP table once ACPI is there ("No APIC-table, disabling
 *     MPS"), so without a MADT it would boot one CPU. ISA IRQs 1 and 3-15 get an
 *     interrupt source override to the same GSI (edge, as ISA says): with no 8259 Linux
 *     maps no ISA IRQ by itself (mp_config_acpi_legacy_irqs() covers nr_legacy_irqs(),
 *     0 then).
 *   - The DSDT has one device per virtio-mmio window under \_SB: _HID "LNRO0005", _UID n,
 *     _CRS = Memory32Fixed(base, size) + Interrupt(level, active high) { irq }. Linux
 *     turns it into the platform device virtio_mmio binds to, the GSI into an I/O APIC
 *     pin programmed level-triggered. The DSDT also has COM1 (_HID PNP0501, I/O 0x3f8-0x3ff,
 *     IRQ 4), as QEMU's microvm does: with hardware-reduced ACPI Linux maps an ISA IRQ to
 *     its I/O APIC pin only for a device ACPI describes, and without it the UART's IRQ 4
 *     had no handler. The kernel's own console, polled, still printed, but the tty init
 *     writes to drops its output (found by test_linux_virtio, which then printed through
 *     /dev/kmsg). */
#include <string.h>

#include "libvmm/acpi.h"
#include "libvmm/error_internal.h"
#include "libvmm/le_bytes.h"

#define HDR_LEN 36
#define RSDP_LEN 36
#define XSDT_LEN (HDR_LEN + 16) /* the FADT and the MADT */
#define FADT_LEN 276
#define ISA_OVERRIDES 14 /* ISA IRQs 1 and 3-15 */
#define MADT_LEN(ncpus) (HDR_LEN + 8 + (ncpus) * 8 + 12 + ISA_OVERRIDES * 10 + 6)
#define DEV_AML_MAX 80 /* one Device() below, with room */
#define MAX_DEVS 32 /* the DSDT's scope stays under 4 KiB, a 2-byte PkgLength */

#define FADT_HW_REDUCED (1u << 20)

/* The common header; the checksum is filled once the table is complete. */
static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	vmm__put_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "LIBVMM", 6);
	memcpy(t + 16, "LIBVMM  ", 8);
	vmm__put_le32(t + 24, 1);
	memcpy(t + 28, "LVMM", 4);
	vmm__put_le32(t + 32, 1);
}

static void finish(uint8_t *t)
{
	uint32_t len;

	memcpy(&len, t + 4, 4);
	t[9] = vmm__fw_checksum(t, len);
}

/* AML PkgLength (ACPI 6.4, 20.2.4) for a package whose contents take len bytes: writes
 * it at p and returns its own size. 1 byte up to 63 in all, else 2 (up to 4095). */
static size_t pkglen(uint8_t *p, size_t len)
{
	if (len + 1 < 64) {
		p[0] = (uint8_t)(len + 1);
		return 1;
	}
	len += 2;
	p[0] = (uint8_t)(0x40 | (len & 0xf));
	p[1] = (uint8_t)(len >> 4);
	return 2;
}

/* Device (Vxxx) { Name (_HID, "LNRO0005") Name (_UID, n) Name (_CRS, Buffer {...}) } */
static size_t device_aml(uint8_t *out, uint32_t n, const struct vmm__acpi_mmio *d)
{
	uint8_t body[DEV_AML_MAX], crs[32], *p = body;
	size_t c = 0, len;

	/* Memory32Fixed (ReadWrite, base, size): large item 0x86, 9 bytes. */
	crs[c++] = 0x86, crs[c++] = 9, crs[c++] = 0, crs[c++] = 1;
	vmm__put_le32(crs + c, (uint32_t)d->base), c += 4;
	vmm__put_le32(crs + c, (uint32_t)d->size), c += 4;
	/* Extended Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {irq}: flags
	 * bit 0 consumer, bit 1 clear for level, bit 2 clear for active high. */
	crs[c++] = 0x89, crs[c++] = 6, crs[c++] = 0, crs[c++] = 0x01, crs[c++] = 1;
	vmm__put_le32(crs + c, d->irq), c += 4;
	crs[c++] = 0x79, crs[c++] = 0; /* end tag; checksum 0: not checked */

	memcpy(p, "\x08_HID\x0dLNRO0005", 14), p += 14;
	*p++ = 0;
	memcpy(p, "\x08_UID\x0a", 6), p += 6;
	*p++ = (uint8_t)n;
	memcpy(p, "\x08_CRS\x11", 6), p += 6;
	{
		uint8_t buf[40];
		size_t b = 0;

		buf[b++] = 0x0a; /* BytePrefix: the buffer's size */
		buf[b++] = (uint8_t)c;
		memcpy(buf + b, crs, c), b += c;
		p += pkglen(p, b);
		memcpy(p, buf, b), p += b;
	}
	len = (size_t)(p - body);
	/* DeviceOp (ExtOpPrefix 0x5b, 0x82), PkgLength, NameSeg, body. */
	out[0] = 0x5b, out[1] = 0x82;
	c = 2 + pkglen(out + 2, 4 + len);
	out[c++] = 'V';
	out[c++] = "0123456789ABCDEF"[(n >> 8) & 0xf];
	out[c++] = "0123456789ABCDEF"[(n >> 4) & 0xf];
	out[c++] = "0123456789ABCDEF"[n & 0xf];
	memcpy(out + c, body, len);
	return c + len;
}

/* Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, One)
 *                 Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3f8, 0x3f8, 0, 8)
 *                                                   IRQNoFlags () { 4 } }) } */
static const uint8_t com1_aml[] = {
	0x5b, 0x82, 43, 'C', 'O', 'M', '1',
	0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01, /* DWordConst: EISA "PNP0501" */
	0x08, '_', 'U', 'I', 'D', 0x01,                         /* One */
	0x08, '_', 'C', 'R', 'S', 0x11, 16, 0x0a, 13,           /* Buffer (13) */
	0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,         /* IO: decode16, min, max, align, len */
	0x22, 0x10, 0x00,                                       /* IRQNoFlags: mask bit 4 */
	0x79, 0x00,                                             /* end tag */
};

size_t vmm__acpi_size(uint32_t ncpus, uint32_t n)
{
	return RSDP_LEN + 4 /* align */ + XSDT_LEN + FADT_LEN + MADT_LEN(ncpus) + HDR_LEN + 8 +
	       sizeof(com1_aml) + n * DEV_AML_MAX;
}

static void madt(uint8_t *t, uint32_t ncpus)
{
	uint8_t *p = t + HDR_LEN;

	header(t, "APIC", MADT_LEN(ncpus), 4);
	vmm__put_le32(p, 0xfee00000u); /* local APIC address */
	vmm__put_le32(p + 4, 0);       /* flags: no PCAT_COMPAT, there is no 8259 */
	p += 8;
	for (uint32_t i = 0; i < ncpus; i++, p += 8) {
		p[0] = 0, p[1] = 8; /* processor local APIC */
		p[2] = (uint8_t)i;  /* processor UID */
		p[3] = (uint8_t)i;  /* APIC ID, as cpu_init.c gives vCPU i */
		vmm__put_le32(p + 4, 1);    /* enabled */
	}
	p[0] = 1, p[1] = 12; /* I/O APIC: after the CPUs' IDs, as in the MP table */
	p[2] = (uint8_t)ncpus;
	vmm__put_le32(p + 4, 0xfec00000u);
	vmm__put_le32(p + 8, 0); /* GSI base */
	p += 12;
	for (uint8_t irq = 1; irq < 16; irq++) {
		if (irq == 2)
			continue; /* the cascade: no ISA device has it */
		p[0] = 2, p[1] = 10; /* interrupt source override: ISA bus */
		p[2] = 0, p[3] = irq;
		vmm__put_le32(p + 4, irq); /* the same GSI; flags 0: as the bus says (edge, high) */
		p += 10;
	}
	p[0] = 4, p[1] = 6; /* local APIC NMI: every processor's LINT1 */
	p[2] = 0xff;
	p[5] = 1;
	finish(t);
}

int vmm__acpi_write(uint8_t *dst, size_t room, uint64_t gpa, uint32_t ncpus,
		    const struct vmm__acpi_mmio *devs, uint32_t n)
{
	size_t xsdt_off = 40, fadt_off = xsdt_off + XSDT_LEN, madt_off = fadt_off + FADT_LEN;
	size_t dsdt_off = madt_off + MADT_LEN(ncpus);
	uint8_t *rsdp = dst, *xsdt = dst + xsdt_off, *fadt = dst + fadt_off, *dsdt = dst + dsdt_off;
	uint8_t devaml[MAX_DEVS * DEV_AML_MAX], *p;
	size_t aml = 0, scope_len, dsdt_len;

	if (n > MAX_DEVS)
		return vmm__err(VMM_EINVAL, "ACPI tables for %u devices (at most %d)", n, MAX_DEVS);
	if (ncpus < 1 || ncpus > 254)
		return vmm__err(VMM_EINVAL, "ACPI tables for %u vCPUs (1-254)", ncpus);
	if (vmm__acpi_size(ncpus, n) > room)
		return vmm__err(VMM_ETOOBIG, "ACPI tables of %zu bytes do not fit in %zu",
				vmm__acpi_size(ncpus, n), room);
	for (uint32_t i = 0; i < n; i++) {
		if (devs[i].base + devs[i].size > 0x100000000ull)
			return vmm__err(VMM_EINVAL, "ACPI device window above 4 GiB");
		aml += device_aml(devaml + aml, i, &devs[i]);
	}
	memset(dst, 0, vmm__acpi_size(ncpus, n));
	madt(dst + madt_off, ncpus);

	/* DSDT: Scope (\_SB) { COM1, devices }. */
	p = dsdt + HDR_LEN;
	*p++ = 0x10; /* ScopeOp */
	scope_len = 5 + sizeof(com1_aml) + aml; /* the name \\_SB_ and the devices */
	p += pkglen(p, scope_len);
	memcpy(p, "\\_SB_", 5), p += 5;
	memcpy(p, com1_aml, sizeof(com1_aml)), p += sizeof(com1_aml);
	memcpy(p, devaml, aml), p += aml;
	dsdt_len = (size_t)(p - dsdt);
	header(dsdt, "DSDT", (uint32_t)dsdt_len, 2);
	finish(dsdt);

	header(fadt, "FACP", FADT_LEN, 6);
	vmm__put_le32(fadt + 40, (uint32_t)(gpa + dsdt_off)); /* DSDT */
	vmm__put_le32(fadt + 112, FADT_HW_REDUCED);           /* Flags */
	fadt[131] = 4;                                /* minor version: 6.4 */
	vmm__put_le64(fadt + 140, gpa + dsdt_off);            /* X_DSDT */
	memcpy(fadt + 268, "LIBVMM  ", 8);            /* hypervisor vendor identity */
	finish(fadt);

	header(xsdt, "XSDT", XSDT_LEN, 1);
	vmm__put_le64(xsdt + HDR_LEN, gpa + fadt_off);
	vmm__put_le64(xsdt + HDR_LEN + 8, gpa + madt_off);
	finish(xsdt);

	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "LIBVMM", 6);
	rsdp[15] = 2; /* ACPI 2.0+: the XSDT */
	vmm__put_le32(rsdp + 20, RSDP_LEN);
	vmm__put_le64(rsdp + 24, gpa + xsdt_off);
	rsdp[8] = vmm__fw_checksum(rsdp, 20);
	rsdp[32] = vmm__fw_checksum(rsdp, RSDP_LEN);
	return 0;
}
