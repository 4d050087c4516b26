/* Final identity map: the first GiB whole (entry32.S already built it on the multiboot path),
 * plus every 2 MiB page touching RAM the boot info reported, plus the IOAPIC/LAPIC page.
 * U/S is set everywhere so ring 3 can touch all of it; no SMEP/SMAP. */
#include "kernel.h"

#define PTE_TABLE 0x7ULL        /* present, writable, user */
#define PTE_LEAF  0x87ULL       /* ... and 2 MiB page */
#define SZ_2M     (1ULL << 21)
#define SZ_1G     (1ULL << 30)

uint64_t pml4[512] __attribute__((aligned(4096)));
uint64_t pdpt[512] __attribute__((aligned(4096)));
uint64_t pd0[512] __attribute__((aligned(4096)));

static unsigned pd_used;

static uint64_t *pd_for(unsigned gib)
{
	if (pdpt[gib] & 1)
		return (uint64_t *)(pdpt[gib] & ~0xfffULL);
	uint64_t *pd = (uint64_t *)(pd_pool + 4096 * pd_used++);
	void *dst = pd;
	uint64_t n = 512;
	/* One rep stosq: the emulator loops it internally, far cheaper than a C loop here. */
	__asm__ volatile("rep stosq" : "+D"(dst), "+c"(n) : "a"(0ULL) : "memory");
	pdpt[gib] = (uint64_t)pd | PTE_TABLE;
	return pd;
}

static void map_range(uint64_t start, uint64_t end)
{
	start &= ~(SZ_2M - 1);
	end = (end + SZ_2M - 1) & ~(SZ_2M - 1);
	if (start < SZ_1G)
		start = SZ_1G;
	while (start < end) {
		unsigned gib = start >> 30;
		if (gib >= 512 || (!(pdpt[gib] & 1) && pd_used >= MAX_PD))
			return;         /* beyond what we can map: memcheck will not use it either */
		uint64_t *pd = pd_for(gib);
		uint64_t stop = ((uint64_t)gib + 1) << 30;
		if (stop > end)
			stop = end;
		for (; start < stop; start += SZ_2M)
			pd[(start >> 21) & 511] = start | PTE_LEAF;
	}
}

void paging_init(uint32_t kind)
{
	if (kind != BOOT_MULTIBOOT) {
		/* 64-bit entry: we are still on the VMM's tables; build ours from scratch. */
		for (uint64_t i = 0; i < 512; i++)
			pd0[i] = i << 21 | PTE_LEAF;
		pml4[0] = (uint64_t)pdpt | PTE_TABLE;
		pdpt[0] = (uint64_t)pd0 | PTE_TABLE;
	}
	for (uint32_t i = 0; i < bootinfo.nram; i++)
		map_range(bootinfo.ram[i].base, bootinfo.ram[i].base + bootinfo.ram[i].len);
	map_range(0xfec00000, 0xff000000);
	write_cr3((uint64_t)pml4);
}
