/* Reads the loader's hand-over (multiboot info, or the Linux zero page) into struct bootinfo:
 * RAM ranges, command line and initrd. Both are assumed to lie in the first GiB, which the
 * multiboot path has mapped and the 64-bit protocol guarantees. */
#include "kernel.h"

struct bootinfo bootinfo;

static void add_ram(uint64_t base, uint64_t len)
{
	if (len && bootinfo.nram < MAX_RAM_RANGES) {
		bootinfo.ram[bootinfo.nram].base = base;
		bootinfo.ram[bootinfo.nram].len = len;
		bootinfo.nram++;
	}
}

static void parse_multiboot(const uint8_t *mbi)
{
	uint32_t flags = *(const uint32_t *)mbi;

	if (flags & (1u << 2))
		bootinfo.cmdline = *(const uint32_t *)(mbi + 16);
	if (flags & (1u << 6)) {
		const uint8_t *p = (const uint8_t *)(uint64_t)*(const uint32_t *)(mbi + 48);
		const uint8_t *end = p + *(const uint32_t *)(mbi + 44);
		while (p < end) {
			uint32_t size = *(const uint32_t *)p;
			if (*(const uint32_t *)(p + 20) == 1)
				add_ram(*(const uint64_t *)(p + 4), *(const uint64_t *)(p + 12));
			p += size + 4;
		}
	}
	if (!bootinfo.nram && (flags & 1u)) {
		add_ram(0, (uint64_t)*(const uint32_t *)(mbi + 4) << 10);
		add_ram(1ULL << 20, (uint64_t)*(const uint32_t *)(mbi + 8) << 10);
	}
}

static void parse_linux(const uint8_t *bp)
{
	uint8_t n = bp[0x1e8];

	bootinfo.cmdline = *(const uint32_t *)(bp + 0x228) | (uint64_t)*(const uint32_t *)(bp + 0x0c8) << 32;
	bootinfo.initrd_base = *(const uint32_t *)(bp + 0x218) | (uint64_t)*(const uint32_t *)(bp + 0x0c0) << 32;
	bootinfo.initrd_size = *(const uint32_t *)(bp + 0x21c) | (uint64_t)*(const uint32_t *)(bp + 0x0c4) << 32;
	for (unsigned i = 0; i < n && i < 128; i++) {
		const uint8_t *e = bp + 0x2d0 + 20 * i;
		if (*(const uint32_t *)(e + 16) == 1)
			add_ram(*(const uint64_t *)e, *(const uint64_t *)(e + 8));
	}
	if (!bootinfo.nram) {   /* no e820: alt_mem_k is KiB above 1 MiB */
		add_ram(0, 640 << 10);
		add_ram(1ULL << 20, (uint64_t)*(const uint32_t *)(bp + 0x1e0) << 10);
	}
}

void bootinfo_parse(uint32_t kind, uint64_t info)
{
	bootinfo.kind = kind;
	if (kind == BOOT_MULTIBOOT)
		parse_multiboot((const uint8_t *)info);
	else
		parse_linux((const uint8_t *)info);
}
