/* Ring-0 start-up, BSP and APs: the fixed order of setting up the machine before dropping
 * to ring 3. Keep it short: on this host every instruction here is emulated. */
#include "kernel.h"

volatile uint32_t cpu_online[MAX_CPUS];
volatile uint32_t ap_boot_index;        /* which CPU the next AP through the trampoline is */
/* Read from the LAPIC in ring 0: on this host CPUID at CPL 3 may run on the real CPU and
 * report the host's APIC ID, not the vCPU's. */
volatile uint32_t cpu_apic_id[MAX_CPUS];

void user_start(void);
void ap_user_start(uint32_t cpu);

__attribute__((weak)) void guest_ring0_init(void) {}

static uint64_t ustack_top(uint32_t cpu) { return (uint64_t)ustacks + (uint64_t)(cpu + 1) * USTACK_SIZE; }

__attribute__((noreturn)) void kmain(uint32_t kind, uint64_t info)
{
	serial_init();
	idt_init();             /* from here on a fault is reported on the serial port */
	cpu_init(0);
	bootinfo_parse(kind, info);
	paging_init(kind);
	pic_init();
	tsc_calibrate();
	guest_ring0_init();
	cpu_apic_id[0] = lapic_read(LAPIC_ID) >> 24;
	cpu_online[0] = 1;
	enter_user((uint64_t)user_start, ustack_top(0), 0);
}

__attribute__((noreturn)) void ap_kmain(uint32_t cpu)
{
	idt_load();
	cpu_init(cpu);
	cpu_apic_id[cpu] = lapic_read(LAPIC_ID) >> 24;
	cpu_online[cpu] = 1;
	enter_user((uint64_t)ap_user_start, ustack_top(cpu), cpu);
}
