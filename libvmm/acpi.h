/* ACPI tables for a Linux guest with virtio-mmio devices. Debian's kernel (and most
 * distributions') is built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so the only way it
 * finds a virtio-mmio device on x86 is an ACPI device with _HID "LNRO0005" (virtio_mmio's
 * ACPI match) whose _CRS gives the window and the interrupt, as Firecracker does. acpi.c
 * has the layout. */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

/* Where the tables go: the E segment, which the e820 map reserves and Linux scans for the
 * RSDP (16-byte aligned, 0xe0000-0xfffff); the MP table follows at 0xf0000. */
#define VMM_BOOT_ACPI 0xe0000ull
#define VMM_ACPI_ROOM 0x10000ull

struct vmm__acpi_mmio {
	uint64_t base, size;
	uint32_t irq; /* I/O APIC pin: level-triggered, active high */
};

/* Bytes the tables take for ncpus vCPUs and n devices. */
size_t vmm__acpi_size(uint32_t ncpus, uint32_t n);
/* Writes the RSDP at dst (guest address gpa) and the XSDT, FADT, MADT (ncpus vCPUs) and
 * DSDT after it. room: bytes available. VMM_ETOOBIG if they do not fit; VMM_EINVAL for
 * more than 32 devices or a vCPU count outside 1-254. */
int vmm__acpi_write(uint8_t *dst, size_t room, uint64_t gpa, uint32_t ncpus,
		    const struct vmm__acpi_mmio *devs, uint32_t n);

#endif
