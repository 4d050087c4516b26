/* smp: the BSP starts cpus-1 APs the way kernels do (trampoline at 0x8000, INIT, SIPI x2
 * through the xAPIC ICR), then every CPU does iters lock-incs on one shared counter plus its
 * own per-CPU counter, and the BSP checks shared == sum(per-CPU) == cpus * iters. */
#include "kernel.h"

#define AP_TIMEOUT_S 5

extern const char trampoline_start[], trampoline_end[];
extern volatile uint32_t ap_boot_index;

static volatile uint64_t shared __attribute__((aligned(64)));
static struct {
	volatile uint64_t n;
	char pad[56];
} percpu[MAX_CPUS] __attribute__((aligned(64)));
static volatile uint32_t done[MAX_CPUS];
static volatile uint32_t go;
static uint64_t iters;

/* Ring 0, BSP: kernels software-enable their LAPIC before sending INIT/SIPI; a bare VMM's
 * LAPIC starts disabled (a BIOS would have enabled it). */
void guest_ring0_init(void)
{
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void count(uint32_t cpu)
{
	for (uint64_t i = 0; i < iters; i++) {
		__atomic_fetch_add(&shared, 1, __ATOMIC_SEQ_CST);
		percpu[cpu].n++;
	}
}

void ap_main(uint32_t cpu)
{
	while (!go)
		cpu_relax();
	count(cpu);
	done[cpu] = 1;
}

int main(const char *cmdline)
{
	unsigned long cpus = param(cmdline, "cpus", 2);

	iters = param(cmdline, "iters", 10000000);
	if (cpus < 1 || cpus > MAX_CPUS) {
		printf("smp bad cpus %lu\n", cpus);
		return 2;
	}
	uint32_t bsp_id = cpu_apic_id[0];       /* not CPUID: see guest.h */

	memcpy((void *)TRAMPOLINE_ADDR, trampoline_start, (size_t)(trampoline_end - trampoline_start));
	/* One AP at a time: ap_boot_index tells the trampoline's passenger who it is. APIC IDs
	 * are assumed to be 0..n-1 (QEMU and our VMM), skipping the BSP's. */
	uint32_t id = 0;
	for (uint32_t cpu = 1; cpu < cpus; cpu++, id++) {
		if (id == bsp_id)
			id++;
		ap_boot_index = cpu;
		sys_ipi(id, 0x4500);                                    /* INIT, assert */
		udelay(10000);
		sys_ipi(id, 0x0600 | TRAMPOLINE_ADDR >> 12);            /* SIPI */
		udelay(200);
		sys_ipi(id, 0x0600 | TRAMPOLINE_ADDR >> 12);            /* ignored if already running */
		uint64_t timeout = us_to_tsc(AP_TIMEOUT_S * 1000000ULL);
		struct stopwatch sw;
		sw_start(&sw);
		while (!cpu_online[cpu]) {
			if (sw_elapsed(&sw) > timeout) {
				printf("smp AP %u missing\n", cpu);
				return 1;
			}
			cpu_relax();
		}
	}

	go = 1;
	count(0);
	for (uint32_t cpu = 1; cpu < cpus; cpu++)
		while (!done[cpu])
			cpu_relax();

	uint64_t sum = 0;
	for (uint32_t cpu = 0; cpu < cpus; cpu++)
		sum += percpu[cpu].n;
	if (shared != sum || sum != cpus * iters) {
		printf("smp MISMATCH shared %lu sum %lu expected %lu\n", (unsigned long)shared,
		       (unsigned long)sum, (unsigned long)(cpus * iters));
		return 1;
	}
	printf("smp cpus %lu\n", cpus);
	printf("smp ok\n");
	return 0;
}
