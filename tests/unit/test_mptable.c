/* The MP table a Linux guest gets (libvmm/mptable.c), read back from guest RAM on the fake
 * kernel the way Linux's mpparse.c finds and checks it: the floating pointer found by a
 * scan of the regions Linux scans, both checksums, one enabled processor per vCPU with
 * APIC IDs 0..N-1 and only the first the boot CPU, the ISA bus, the I/O APIC, ISA IRQs
 * 0-15 on the pins KVM routes them to, LINT0/LINT1, and the whole table reserved in the
 * e820 map Linux is handed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "fake_vm.h"

#include "libvmm/mptable.h"
#include "libvmm/le_bytes.h"

static uint8_t img[16384];
static const uint8_t code[] = { 0xf4, 0xeb, 0xfd };
static uint8_t low[0x100000]; /* the guest's first MiB */

/* Linux's smp_scan_config: 16-byte steps over [base, base+len), signature, length 1,
 * revision 1 or 4, checksum. Returns the address or 0. */
static uint32_t scan(uint32_t base, uint32_t len)
{
	for (uint32_t a = base; a + 16 <= base + len; a += 16) {
		const uint8_t *p = low + a;

		if (!memcmp(p, "_MP_", 4) && p[8] == 1 && (p[9] == 1 || p[9] == 4) &&
		    tu_byte_sum(p, 16) == 0)
			return a;
	}
	return 0;
}

static uint32_t find_mpf(void)
{
	uint32_t a = scan(0, 0x400);

	if (!a)
		a = scan(639 * 0x400, 0x400);
	if (!a)
		a = scan(0xf0000, 0x10000);
	return a;
}

/* True if [a, a+len) lies inside one reserved (type 2) entry of the zero page's e820. */
static int e820_reserved(uint64_t a, uint64_t len)
{
	const uint8_t *bp = low + 0x7000;

	for (unsigned i = 0; i < bp[0x1e8]; i++) {
		const uint8_t *e = bp + 0x2d0 + i * 20;
		uint64_t ea, es;

		memcpy(&ea, e, 8);
		memcpy(&es, e + 8, 8);
		if (vmm__le32(e + 16) == 2 && a >= ea && a + len <= ea + es)
			return 1;
	}
	return 0;
}

/* Loads a Linux image (bzImage or ELF64) into a VM of n vCPUs and checks its MP table. */
static void check_table(uint32_t n, int bzimage)
{
	struct vmm_vm *vm;
	size_t len = bzimage ? fake_bzimage(img, code, sizeof(code))
			     : fake_elf64(img, 0x200000, 0x200000, code, sizeof(code));
	uint32_t mpf, mpc, count, cpus = 0, buses = 0, ioapics = 0, ints = 0, lints = 0;
	uint32_t pin_of[VMM_MP_IRQS], boot = 0, seen_ids = 0;
	uint8_t ioapic_id = 0;
	const uint8_t *p, *end;

	fake_kvm_set_vcpu_caps(64, 64);
	vm = fake_vm_new(32, n, 0, NULL, NULL);
	assert_non_null(vm);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0, low, sizeof(low)), 0);
	vmm_vm_destroy(vm);

	mpf = find_mpf();
	assert_int_not_equal(mpf, 0);
	assert_int_equal(low[mpf + 11], 0); /* a configuration table, no default config */
	mpc = vmm__le32(low + mpf + 4);
	assert_true(mpc >= 0x80000 && mpc + 44 <= sizeof(low));
	assert_memory_equal(low + mpc, "PCMP", 4);
	len = vmm__le16(low + mpc + 4);
	assert_true(mpc + len <= sizeof(low));
	assert_int_equal(low[mpc + 6], 4);
	assert_int_equal(tu_byte_sum(low + mpc, len), 0);
	assert_int_equal(vmm__le32(low + mpc + 36), 0xfee00000u);
	assert_int_equal(vmm__le16(low + mpc + 40), 0); /* no extended table */
	assert_true(e820_reserved(mpf, 16));
	assert_true(e820_reserved(mpc, len));
	assert_int_equal(len + 16, vmm__mptable_size(n));

	count = vmm__le16(low + mpc + 34);
	p = low + mpc + 44;
	end = low + mpc + len;
	memset(pin_of, 0xff, sizeof(pin_of));
	for (uint32_t i = 0; i < count; i++) {
		assert_true(p < end);
		switch (p[0]) {
		case 0: /* processor */
			assert_true(p + 20 <= end);
			assert_int_equal(p[1], cpus); /* APIC IDs in order, 0..n-1 */
			assert_true(p[3] & 1);        /* enabled */
			if (p[3] & 2)
				boot++, assert_int_equal(p[1], 0);
			assert_int_equal(vmm__le32(p + 4), 0x00a20f12); /* the fake host's signature */
			if (p[1] < 32)
				seen_ids |= 1u << p[1];
			cpus++;
			p += 20;
			break;
		case 1: /* bus */
			assert_memory_equal(p + 2, "ISA   ", 6);
			assert_int_equal(p[1], 0);
			buses++;
			p += 8;
			break;
		case 2: /* I/O APIC */
			assert_true(p[3] & 1);
			assert_int_equal(vmm__le32(p + 4), 0xfec00000u);
			assert_true(p[1] >= n); /* not an APIC ID a CPU has */
			ioapic_id = p[1];
			ioapics++;
			p += 8;
			break;
		case 3: /* I/O interrupt: INT, from the ISA bus, to the I/O APIC */
			assert_int_equal(p[1], 0);
			assert_int_equal(p[4], 0);
			assert_true(p[5] < VMM_MP_IRQS);
			/* ISA IRQs as the bus says (edge); pins 16-23 level, active high */
			assert_int_equal(vmm__le16(p + 2), p[5] < VMM_MP_ISA_IRQS ? 0 : 0x0d);
			assert_int_equal(p[6], ioapic_id);
			assert_int_equal(pin_of[p[5]], 0xffffffffu); /* each IRQ once */
			pin_of[p[5]] = p[7];
			ints++;
			p += 8;
			break;
		case 4: /* local interrupt */
			if (p[1] == 3) /* ExtINT to the boot CPU's LINT0 */
				assert_true(p[6] == 0 && p[7] == 0);
			else /* NMI to every LINT1 */
				assert_true(p[1] == 1 && p[6] == 0xff && p[7] == 1);
			lints++;
			p += 8;
			break;
		default:
			fail_msg("entry %u has type %u", i, p[0]);
		}
	}
	assert_ptr_equal(p, end);
	assert_int_equal(cpus, n);
	assert_int_equal(boot, 1);
	if (n < 32)
		assert_int_equal(seen_ids, (1u << n) - 1);
	assert_int_equal(buses, 1);
	assert_int_equal(ioapics, 1);
	assert_int_equal(ints, VMM_MP_IRQS);
	assert_int_equal(lints, 2);
	/* KVM's default routing: GSI n on I/O APIC pin n (the in-kernel PIT is GSI 0). */
	for (uint32_t irq = 0; irq < VMM_MP_IRQS; irq++)
		assert_int_equal(pin_of[irq], irq);
}

static void one_to_max_vcpus(void **state)
{
	static const uint32_t counts[] = { 1, 2, 3, 8, 31, 64 };

	(void)state;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		check_table(counts[i], 1);
		check_table(counts[i], 0);
	}
}

/* The writer refuses what the format cannot carry and writes nothing then. */
static void bad_counts(void **state)
{
	uint8_t buf[8192];

	(void)state;
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(vmm__mptable_write(buf, sizeof(buf), 0xf0000, 0, 0, 0), VMM_EINVAL);
	assert_int_equal(vmm__mptable_write(buf, sizeof(buf), 0xf0000, 255, 0, 0), VMM_EINVAL);
	assert_int_equal(vmm__mptable_write(buf, 100, 0xf0000, 2, 0, 0), VMM_ETOOBIG);
	assert_int_equal(vmm__mptable_write(buf, sizeof(buf), 0xfff00, 2, 0, 0), VMM_ETOOBIG);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xa5);
	assert_int_equal(vmm__mptable_write(buf, sizeof(buf), 0xf0000, 254, 0, 0), 0);
	assert_int_equal(tu_byte_sum(buf, 16), 0);
	assert_int_equal(tu_byte_sum(buf + 16, vmm__mptable_size(254) - 16), 0);
}

/* Multiboot guests (the test guests bring up their own CPUs) get no MP table. */
static void multiboot_has_none(void **state)
{
	struct vmm_vm *vm = fake_vm_new(16, 2, 0, NULL, NULL);
	size_t len = fake_multiboot(img, 0x100000, 0x100020, code, sizeof(code));

	(void)state;
	assert_non_null(vm);
	assert_int_equal(vmm_vm_load_kernel_image(vm, img, len, NULL, 0), 0);
	assert_int_equal(vmm_vm_mem_read(vm, 0, low, sizeof(low)), 0);
	vmm_vm_destroy(vm);
	assert_int_equal(find_mpf(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(one_to_max_vcpus, fake_vm_setup),
		cmocka_unit_test(bad_counts),
		cmocka_unit_test_setup(multiboot_has_none, fake_vm_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
