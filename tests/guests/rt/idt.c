/* The IDT: 32 exception gates into isr.S's stubs (#DF on IST1), the remapped PIC vectors,
 * the LAPIC timer and spurious vectors. Every other vector stays not-present, so a stray
 * interrupt shows up as a reported #GP rather than a silent jump. */
#include "kernel.h"

struct gate {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, rsvd;
};

static struct gate idt[256] __attribute__((aligned(16)));
static struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idt_desc = { sizeof(idt) - 1, (uint64_t)idt };

extern const uint64_t exc_table[32], irq_pic_table[16];
extern char irq_lapic_timer[], irq_spurious[];

static void set_gate(unsigned vec, uint64_t handler, unsigned ist)
{
	struct gate *g = &idt[vec];

	g->off0 = (uint16_t)handler;
	g->sel = KCODE64;
	g->ist = ist;
	g->type = 0x8e;         /* present, DPL 0, interrupt gate: IF off in handlers */
	g->off1 = (uint16_t)(handler >> 16);
	g->off2 = (uint32_t)(handler >> 32);
}

void idt_load(void)
{
	__asm__ volatile("lidt %0" : : "m"(idt_desc));
}

void idt_init(void)
{
	for (unsigned v = 0; v < 32; v++)
		set_gate(v, exc_table[v], v == 8);
	for (unsigned i = 0; i < 16; i++)
		set_gate(VEC_PIC_BASE + i, irq_pic_table[i], 0);
	set_gate(VEC_LAPIC_TIMER, (uint64_t)irq_lapic_timer, 0);
	set_gate(VEC_SPURIOUS, (uint64_t)irq_spurious, 0);
	idt_load();
}
