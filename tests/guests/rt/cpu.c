/* Per-CPU ring-0 state: the shared GDT with one TSS descriptor per CPU, the TSS (rsp0 for
 * ring 3 -> 0 transitions, IST1 for #DF) and x87/SSE enabling. */
#include "kernel.h"

struct tss {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3, iomap_base;
} __attribute__((packed));

#define GDT_FIXED 6

uint64_t gdt[GDT_FIXED + 2 * MAX_CPUS] __attribute__((aligned(16))) = {
	0,
	0x00af9a000000ffffULL,  /* KCODE64 */
	0x00cf92000000ffffULL,  /* KDATA */
	0x00cff2000000ffffULL,  /* UDATA */
	0x00affa000000ffffULL,  /* UCODE64 */
	0x00cf9a000000ffffULL,  /* KCODE32 */
};

/* lgdt reads 6 bytes in 32-bit mode and 10 in 64-bit mode; the same descriptor serves both. */
struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) gdt_desc = { sizeof(gdt) - 1, (uint64_t)gdt };

static struct tss tss[MAX_CPUS] __attribute__((aligned(16)));

void cpu_init(uint32_t cpu)
{
	struct tss *t = &tss[cpu];
	uint64_t base = (uint64_t)t;

	t->rsp[0] = (uint64_t)kstacks + (uint64_t)(cpu + 1) * KSTACK_SIZE;
	t->ist[0] = (uint64_t)istacks + (uint64_t)(cpu + 1) * ISTACK_SIZE;
	t->iomap_base = sizeof(*t);     /* no I/O bitmap: ring 3 gets no ports */
	gdt[GDT_FIXED + 2 * cpu] = (sizeof(*t) - 1) | (base & 0xffffff) << 16 | 0x89ULL << 40 |
				   ((base >> 24) & 0xff) << 56;
	gdt[GDT_FIXED + 2 * cpu + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(TSS_SEL(cpu)));

	/* x87 + SSE for everyone (ring-3 C may use SSE); AVX is the fpu guest's business. */
	write_cr0((read_cr0() & ~(1UL << 2 | 1UL << 3)) | 1UL << 1 | 1UL << 5);  /* -EM -TS +MP +NE */
	/* OSFXSR, OSXMMEXCPT; and no SMEP/SMAP from a loader: every page is a user page here. */
	write_cr4((read_cr4() & ~(1UL << 20 | 1UL << 21)) | 1UL << 9 | 1UL << 10);
	__asm__ volatile("fninit");
}
