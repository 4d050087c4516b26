/* TSC frequency for ring-3 timing. CPUID 0x15 or the hypervisor leaf 0x40000010 when they
 * give it exactly; otherwise measured against PIT channel 2 over ~10 ms, using the PIT's own
 * count on both ends because ring-0 instructions here take ~1 us each and cannot be counted. */
#include "kernel.h"

#define PIT_HZ 1193182ULL

volatile uint64_t tsc_hz;

static uint64_t from_cpuid(void)
{
	uint32_t r[4];

	cpuid(0, 0, r);
	if (r[0] >= 0x15) {
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2])
			return (uint64_t)r[2] * r[1] / r[0];
	}
	cpuid(0x40000000, 0, r);
	if (r[0] >= 0x40000010 && r[0] < 0x40000100) {
		cpuid(0x40000010, 0, r);
		if (r[0])
			return (uint64_t)r[0] * 1000;
	}
	return 0;
}

static uint16_t pit2_read(void)
{
	outb(0x43, 0x80);       /* latch channel 2 */
	uint8_t lo = inb(0x42);
	return lo | (uint16_t)inb(0x42) << 8;
}

static uint64_t from_pit(void)
{
	outb(0x61, (inb(0x61) & ~0x02) | 0x01);        /* gate on, speaker off */
	outb(0x43, 0xb0);                               /* ch2, lo/hi, mode 0 */
	outb(0x42, 0xff);
	outb(0x42, 0xff);

	uint64_t t0 = rdtsc(), t1 = t0;
	uint16_t c0 = pit2_read(), c1 = c0;
	unsigned same = 0;
	while ((uint16_t)(c0 - c1) < PIT_HZ / 100) {
		t1 = rdtsc();
		uint16_t c = pit2_read();
		if (c == c1 && ++same > 20000)
			return 0;       /* no PIT */
		if (c != c1)
			same = 0;
		c1 = c;
	}
	return (t1 - t0) * PIT_HZ / (uint16_t)(c0 - c1);
}

void tsc_calibrate(void)
{
	uint64_t hz = from_cpuid();

	if (!hz)
		hz = from_pit();
	if (!hz) {
		uint32_t r[4];
		cpuid(0, 0, r);
		if (r[0] >= 0x16) {
			cpuid(0x16, 0, r);
			hz = (uint64_t)(r[0] & 0xffff) * 1000000;
		}
	}
	if (!hz) {
		kprintf("TSC calibration failed, assuming 1 GHz\n");
		hz = 1000000000;
	}
	tsc_hz = hz;
}
