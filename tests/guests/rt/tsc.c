/* TSC frequency for ring-3 timing. Exact sources first: CPUID 0x15, the hypervisor leaf
 * 0x40000010, KVM's pvclock. Otherwise measured against PIT channel 2 over ~10 ms, reading
 * the PIT's own count on both ends (ring-0 instructions here take ~1 us and cannot be
 * counted) and discarding samples during which the vCPU was preempted. */
#include "kernel.h"

#define PIT_HZ           1193182ULL
#define MSR_KVM_CLOCK    0x4b564d01     /* MSR_KVM_SYSTEM_TIME_NEW */

volatile uint64_t tsc_hz;

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
};
static struct pvclock pvclock __attribute__((aligned(64)));

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

/* KVM fills the pvclock page on the next entry after the MSR write; the multiplier gives the
 * TSC rate exactly. The clock is switched off again so it adds no state to carry around. */
static uint64_t from_kvmclock(void)
{
	uint32_t r[4];

	cpuid(0x40000000, 0, r);
	if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < 0x40000001)
		return 0;               /* not "KVMKVMKVM" */
	cpuid(0x40000001, 0, r);
	if (!(r[0] & (1u << 3)))        /* KVM_FEATURE_CLOCKSOURCE2 */
		return 0;
	if (!wrmsr_safe(MSR_KVM_CLOCK, (uint64_t)&pvclock | 1))
		return 0;
	uint32_t mul = 0;
	int8_t shift = 0;
	for (int i = 0; i < 1000 && !mul; i++) {
		uint32_t v = pvclock.version;
		__asm__ volatile("" ::: "memory");
		if (v && !(v & 1)) {
			mul = pvclock.tsc_to_system_mul;
			shift = pvclock.tsc_shift;
		}
	}
	wrmsr_safe(MSR_KVM_CLOCK, 0);
	if (!mul)
		return 0;
	uint64_t hz = (1000000000ULL << 32) / mul;
	return shift < 0 ? hz << -shift : hz >> shift;
}

struct sample {
	uint64_t tsc, width;
	uint16_t count;
};

static struct sample pit2_sample(void)
{
	uint64_t a = rdtsc();
	outb(0x43, 0x80);       /* latch channel 2 */
	uint8_t lo = inb(0x42), hi = inb(0x42);
	uint64_t b = rdtsc();
	return (struct sample){ a + (b - a) / 2, b - a, (uint16_t)(lo | hi << 8) };
}

static uint64_t from_pit_once(void)
{
	outb(0x61, (inb(0x61) & ~0x02) | 0x01);        /* gate on, speaker off */
	outb(0x43, 0xb0);                               /* ch2, lo/hi, mode 0 */
	outb(0x42, 0xff);
	outb(0x42, 0xff);

	/* Start: the tightest of a few samples. */
	struct sample s0 = pit2_sample();
	for (int i = 0; i < 4; i++) {
		struct sample s = pit2_sample();
		if (s.width < s0.width)
			s0 = s;
	}
	struct sample s = s0;
	unsigned same = 0;
	while ((uint16_t)(s0.count - s.count) < PIT_HZ / 100) {
		uint16_t prev = s.count;
		s = pit2_sample();
		if (s.count == prev && ++same > 20000)
			return 0;       /* no PIT */
	}
	/* End: a sample about as tight as the start, i.e. not split by a preemption. */
	for (int i = 0; i < 50 && s.width > s0.width * 2 + s0.width / 2; i++)
		s = pit2_sample();
	if (s.width > s0.width * 2 + s0.width / 2 || (inb(0x61) & 0x20))
		return 0;               /* too noisy, or the count wrapped (> 55 ms) */
	return (s.tsc - s0.tsc) * PIT_HZ / (uint16_t)(s0.count - s.count);
}

static uint64_t from_pit(void)
{
	for (int i = 0; i < 5; i++) {
		uint64_t hz = from_pit_once();
		if (hz)
			return hz;
	}
	return 0;
}

void tsc_calibrate(void)
{
	uint64_t hz = from_cpuid();

	if (!hz)
		hz = from_kvmclock();
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
