/* timer: the legacy PIT (through the 8259, IRQ0) and the LAPIC timer, both periodic at about
 * 1 kHz. Each phase burns ~100 ms of TSC time in ring 3 and checks that both tick counts
 * moved (waiting up to stall_ms for a late one), then sleeps through SVC_WAIT to prove hlt
 * wakes up. Counts are never printed. */
#include "kernel.h"

#define PIT_DIVISOR 1193                /* ~1 kHz */
#define LAPIC_COUNT 62500               /* 1 ms with KVM's 1 GHz APIC bus and divide-by-16 */

/* Ring 0, on the BSP. */
void guest_ring0_init(void)
{
	outb(0x43, 0x34);                       /* ch0, lo/hi, mode 2 (rate generator) */
	outb(0x40, PIT_DIVISOR & 0xff);
	outb(0x40, PIT_DIVISOR >> 8);
	outb(0x21, 0xfe);                       /* unmask IRQ0 only */

	/* Software-enable first: while the APIC is disabled, LVT writes come out masked. */
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	/* Virtual-wire mode: without LINT0 = ExtINT the 8259's output never reaches the CPU
	 * (a BIOS sets this up, a bare VMM does not). */
	lapic_write(LAPIC_LVT_LINT0, 0x700);
	lapic_write(LAPIC_LVT_LINT1, 0x400);    /* NMI */
	lapic_write(LAPIC_TDCR, 0x3);           /* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, 1u << 17 | VEC_LAPIC_TIMER);
	lapic_write(LAPIC_TMICT, LAPIC_COUNT);
}

static volatile uint64_t sink;

/* Burns at least min_ticks of stopwatch time, then goes on until both sources have ticked
 * or max_ticks is reached: a loaded host can starve KVM's PIT worker for a while, and a
 * test that wants to catch a timer lost by a snapshot needs no false alarms. */
static int phase(uint64_t min_ticks, uint64_t max_ticks, uint64_t pit0, uint64_t lapic0)
{
	struct stopwatch sw;
	uint64_t t, x = sink;

	sw_start(&sw);
	do {
		for (int k = 0; k < 1000; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		t = sw_elapsed(&sw);
	} while (t < min_ticks || (t < max_ticks && (irq_count[VEC_PIC_BASE] == pit0 ||
						     irq_count[VEC_LAPIC_TIMER] == lapic0)));
	sink = x;
	if (irq_count[VEC_PIC_BASE] == pit0) {
		printf("timer STALLED pit\n");
		return 0;
	}
	if (irq_count[VEC_LAPIC_TIMER] == lapic0) {
		printf("timer STALLED lapic\n");
		return 0;
	}
	return 1;
}

int main(const char *cmdline)
{
	unsigned long phases = param(cmdline, "secs", 5);
	uint64_t min_ticks = us_to_tsc(param(cmdline, "phase_ms", 100) * 1000);
	uint64_t max_ticks = us_to_tsc(param(cmdline, "stall_ms", 2000) * 1000);

	sink = 2463534242ULL;
	for (unsigned long i = 1; i <= phases; i++) {
		if (!phase(min_ticks, max_ticks, irq_count[VEC_PIC_BASE], irq_count[VEC_LAPIC_TIMER]))
			return 1;
		/* Only now that both sources are known to tick can a hlt not hang forever. The first
		 * call may return at once (an IRQ already came); the second really halts. */
		sys_wait();
		sys_wait();
		printf("timer phase %lu ok\n", i);
	}
	printf("timer ok\n");
	return 0;
}
