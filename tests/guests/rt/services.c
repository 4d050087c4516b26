/* Ring-0 side of the ud2 services (numbers in layout.h) and the exit port. Ring 3 cannot do
 * port I/O on this host, and syscall/int 0x80 misbehave under QEMU here, hence ud2. */
#include "kernel.h"

volatile uint8_t irq_pending;
volatile uint64_t irq_count[256];

__attribute__((noreturn)) void do_exit(uint32_t status)
{
	static const char msg[] = "EXIT FAILED\n";

	outl(EXIT_PORT, status);        /* our VMM and QEMU's isa-debug-exit stop here */
	serial_write(msg, sizeof(msg) - 1);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void wait_for_irq(void)
{
	if (!irq_pending)
		__asm__ volatile("sti; hlt; cli" ::: "memory");   /* sti's shadow covers hlt: no lost wake-up */
	irq_pending = 0;
}

static void send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_low);
	for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & (1u << 12)); i++)
		__asm__ volatile("pause");
}

uint64_t service(struct trap_frame *f)
{
	switch (f->rax) {
	case SVC_WRITE:
		serial_write((const char *)f->rdi, f->rsi);
		return f->rsi;
	case SVC_EXIT:
		do_exit((uint32_t)f->rdi);
	case SVC_WAIT:
		wait_for_irq();
		return 0;
	case SVC_IPI:
		send_ipi((uint32_t)f->rdi, (uint32_t)f->rsi);
		return 0;
	case SVC_HALT:
		for (;;)
			__asm__ volatile("cli; hlt");
	default:
		return (uint64_t)-1;
	}
}
