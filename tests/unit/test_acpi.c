/* The ACPI tables that tell a stock Linux kernel where its virtio-mmio devices are
 * (libvmm/acpi.c): every pointer leads to the next table, every checksum holds, the FADT
 * says hardware-reduced, and the DSDT's AML decodes to COM1 and one LNRO0005 device per
 * window with that window and its level-triggered interrupt. The loader writes them (and masks
 * the PIC) only for a VM with virtio devices. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"
#include "libvmm/acpi.h"
#include "libvmm/kvm.h"
#include "libvmm/le_bytes.h"
#include "libvmm/vm_internal.h"

/* The table at gpa inside the buffer that starts at base: its signature and checksum. */
static const uint8_t *table(const uint8_t *buf, uint64_t base, uint64_t gpa, const char *sig)
{
	const uint8_t *t = buf + (gpa - base);

	assert_memory_equal(t, sig, 4);
	assert_int_equal(tu_byte_sum(t, vmm__le32(t + 4)), 0);
	return t;
}

/* Walks the DSDT's AML: Scope(\_SB_) then n Device()s; checks each one's _HID, _UID and
 * _CRS. */
static void check_dsdt(const uint8_t *dsdt, const struct vmm__acpi_mmio *devs, uint32_t n)
{
	const uint8_t *p = dsdt + 36, *end = dsdt + vmm__le32(dsdt + 4);
	size_t len;

	assert_int_equal(*p++, 0x10);
	len = (*p & 0xc0) ? (size_t)((*p & 0xf) | (p[1] << 4)) : *p;
	assert_ptr_equal(p + len, end);
	p += (*p & 0xc0) ? 2 : 1;
	assert_memory_equal(p, "\\_SB_", 5);
	p += 5;
	/* COM1 first: the 16550 at 0x3f8, edge IRQ 4 (without it Linux maps no handler). */
	assert_memory_equal(p, "\x5b\x82", 2);
	assert_memory_equal(p + 3, "COM1\x08_HID\x0c\x41\xd0\x05\x01", 14); /* EisaId PNP0501 */
	assert_memory_equal(p + 17, "\x08_UID\x01", 6);
	assert_memory_equal(p + 23, "\x08_CRS\x11\x10\x0a\x0d", 9);
	assert_memory_equal(p + 32, "\x47\x01\xf8\x03\xf8\x03", 6); /* IO 0x3f8-0x3f8 */
	assert_int_equal(p[39], 8);                                    /* 8 ports */
	assert_memory_equal(p + 40, "\x22\x10\x00\x79\x00", 5);       /* IRQ 4; end */
	assert_int_equal(p[2], 45 - 2);                                /* PkgLength: to here */
	p += 45;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *dev, *crs;
		char name[16];

		assert_int_equal(p[0], 0x5b);
		assert_int_equal(p[1], 0x82);
		p += 2;
		len = (*p & 0xc0) ? (size_t)((*p & 0xf) | (p[1] << 4)) : *p;
		dev = p + len;
		p += (*p & 0xc0) ? 2 : 1;
		snprintf(name, sizeof(name), "V%03X", i);
		assert_memory_equal(p, name, 4);
		assert_memory_equal(p + 4, "\x08_HID\x0dLNRO0005\x00", 15);
		assert_memory_equal(p + 19, "\x08_UID\x0a", 6);
		assert_int_equal(p[25], i);
		assert_memory_equal(p + 26, "\x08_CRS\x11", 6);
		crs = p + 32 + 1 + 2; /* PkgLength (1 byte), BytePrefix and size */
		assert_int_equal(p[33], 0x0a);
		assert_int_equal(p[34], 23);
		/* Memory32Fixed, read-write */
		assert_memory_equal(crs, "\x86\x09\x00\x01", 4);
		assert_int_equal(vmm__le32(crs + 4), devs[i].base);
		assert_int_equal(vmm__le32(crs + 8), devs[i].size);
		/* Extended interrupt: consumer, level, active high, exclusive; one, irq */
		assert_memory_equal(crs + 12, "\x89\x06\x00\x01\x01", 5);
		assert_int_equal(vmm__le32(crs + 17), devs[i].irq);
		assert_memory_equal(crs + 21, "\x79\x00", 2);
		assert_ptr_equal(crs + 23, dev);
		p = dev;
	}
	assert_ptr_equal(p, end);
}

/* One LAPIC per vCPU (UID and APIC ID i, enabled), the I/O APIC with ID ncpus at GSI 0,
 * NMI on every LINT1, no 8259. */
static void check_madt(const uint8_t *t, uint32_t ncpus)
{
	const uint8_t *p = t + 44, *end = t + vmm__le32(t + 4);
	uint32_t cpus = 0, ioapics = 0, nmis = 0, isa = 0;

	assert_int_equal(vmm__le32(t + 36), 0xfee00000u);
	assert_int_equal(vmm__le32(t + 40), 0);
	while (p < end) {
		assert_true(p[1] >= 2 && p + p[1] <= end);
		switch (p[0]) {
		case 0:
			assert_int_equal(p[2], cpus);
			assert_int_equal(p[3], cpus);
			assert_int_equal(vmm__le32(p + 4), 1);
			cpus++;
			break;
		case 1:
			assert_int_equal(p[2], ncpus);
			assert_int_equal(vmm__le32(p + 4), 0xfec00000u);
			assert_int_equal(vmm__le32(p + 8), 0);
			ioapics++;
			break;
		case 2: /* ISA IRQ n to GSI n, bus defaults; never the cascade or the timer */
			assert_int_equal(p[1], 10);
			assert_int_equal(p[2], 0);
			assert_true(p[3] != 0 && p[3] != 2 && p[3] < 16);
			assert_int_equal(vmm__le32(p + 4), p[3]);
			assert_int_equal(p[8] | p[9], 0);
			assert_false(isa & (1u << p[3]));
			isa |= 1u << p[3];
			break;
		case 4:
			assert_int_equal(p[2], 0xff);
			assert_int_equal(p[5], 1);
			nmis++;
			break;
		default:
			fail_msg("MADT entry type %u", p[0]);
		}
		p += p[1];
	}
	assert_ptr_equal(p, end);
	assert_int_equal(cpus, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(nmis, 1);
	assert_int_equal(isa, 0xfffau); /* 1, 3-15: the UART's 4 among them */
}

static void check_tables(const uint8_t *buf, uint64_t gpa, uint32_t ncpus,
			 const struct vmm__acpi_mmio *devs, uint32_t n)
{
	const uint8_t *xsdt, *fadt, *dsdt;

	assert_memory_equal(buf, "RSD PTR ", 8);
	assert_int_equal(tu_byte_sum(buf, 20), 0);
	assert_int_equal(tu_byte_sum(buf, 36), 0);
	assert_int_equal(buf[15], 2);
	xsdt = table(buf, gpa, vmm__le64(buf + 24), "XSDT");
	assert_int_equal(vmm__le32(xsdt + 4), 52); /* FADT, MADT */
	check_madt(table(buf, gpa, vmm__le64(xsdt + 44), "APIC"), ncpus);
	fadt = table(buf, gpa, vmm__le64(xsdt + 36), "FACP");
	assert_int_equal(vmm__le32(fadt + 4), 276);
	assert_int_equal(fadt[8], 6);
	assert_true(vmm__le32(fadt + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
	assert_int_equal(vmm__le64(fadt + 140), vmm__le32(fadt + 40));
	dsdt = table(buf, gpa, vmm__le64(fadt + 140), "DSDT");
	check_dsdt(dsdt, devs, n);
}

static void tables(void **state)
{
	static uint8_t buf[VMM_ACPI_ROOM];
	struct vmm__acpi_mmio devs[32];

	(void)state;
	for (uint32_t i = 0; i < 32; i++)
		devs[i] = (struct vmm__acpi_mmio){ 0xd0000000ull + i * 0x1000, 0x1000, 16 + i };
	for (uint32_t n = 0; n <= 32; n++) {
		uint32_t cpus = n % 3 ? n + 1 : 254;

		memset(buf, 0xa5, sizeof(buf));
		assert_int_equal(vmm__acpi_write(buf, sizeof(buf), 0xe0000, cpus, devs, n), 0);
		check_tables(buf, 0xe0000, cpus, devs, n);
	}
	assert_int_equal(vmm__acpi_write(buf, sizeof(buf), 0xe0000, 1, devs, 33), VMM_EINVAL);
	assert_int_equal(vmm__acpi_write(buf, sizeof(buf), 0xe0000, 0, devs, 1), VMM_EINVAL);
	assert_int_equal(vmm__acpi_write(buf, sizeof(buf), 0xe0000, 255, devs, 1), VMM_EINVAL);
	assert_int_equal(vmm__acpi_write(buf, 100, 0xe0000, 1, devs, 1), VMM_ETOOBIG);
	devs[0].base = 0xfffff800ull;
	assert_int_equal(vmm__acpi_write(buf, sizeof(buf), 0xe0000, 1, devs, 1), VMM_EINVAL);
}

static uint8_t pic_imr(struct vmm_vm *vm, uint32_t chip)
{
	struct kvm_irqchip c = { .chip_id = chip };

	assert_true(vmm__ioctl(vm->fd, KVM_GET_IRQCHIP, &c) >= 0);
	return c.chip.pic.imr;
}

/* The loader: tables and a masked PIC with virtio devices, neither without. */
static void loader(void **state)
{
	static const uint8_t code[] = { 0xf4 };
	static uint8_t img[16384], low[0x10000];
	struct vmm__acpi_mmio devs[2] = { { 0xd0000000ull, 0x1000, 16 },
					  { 0xd0001000ull, 0x1000, 17 } };
	size_t len = fake_bzimage(img, code, sizeof(code));

	(void)state;
	for (int with = 0; with < 2; with++) {
		struct vmm_vm *vm = fake_vm_new(64, 2, 0, NULL, NULL);

		assert_non_null(vm);
		if (with) {
			assert_int_equal(vmm_vm_add_rng(vm, NULL), 0);
			assert_int_equal(vmm_vm_add_rng(vm, NULL), 0);
		}
		assert_int_equal(pic_imr(vm, 0), 0);
		assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
		assert_int_equal(vmm_vm_mem_read(vm, VMM_BOOT_ACPI, low, sizeof(low)), 0);
		if (with) {
			check_tables(low, VMM_BOOT_ACPI, 2, devs, 2);
			assert_int_equal(pic_imr(vm, 0), 0xff);
			assert_int_equal(pic_imr(vm, 1), 0xff);
		} else {
			for (size_t i = 0; i < sizeof(low); i += 16)
				assert_memory_not_equal(low + i, "RSD PTR ", 8);
			assert_int_equal(pic_imr(vm, 0), 0);
		}
		vmm_vm_destroy(vm);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tables),
		cmocka_unit_test_setup(loader, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
