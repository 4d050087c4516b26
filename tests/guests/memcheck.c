/* memcheck: rewrites a working set above the image every generation with a pattern derived
 * from (page, generation) and verifies it, so a VMM whose dirty tracking or migration loses a
 * page write is caught. Built with SSE allowed so the page loops vectorize. */
#include "guest.h"

#define PAGE    4096ULL
#define WORDS   (PAGE / 8)
#define STEP    0x9E3779B97F4A7C15ULL

struct chunk {
	uint64_t base, pages;
};

static struct mem_range freemem[MAX_RAM_RANGES];
static unsigned nfree;
static struct chunk chunks[MAX_RAM_RANGES];
static unsigned nchunks;
static uint64_t *csum;          /* per-page sum, kept apart from the page itself */
static uint64_t word_key[WORDS] __attribute__((aligned(64)));   /* i * STEP: SSE2 has no 64-bit multiply */

static uint64_t mix(uint64_t x)         /* splitmix64 finaliser */
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t page_seed(uint64_t page, uint64_t gen) { return mix(page << 20 ^ gen); }

static uint64_t fill_page(uint64_t *w, uint64_t seed)
{
	uint64_t sum = 0;
	for (uint64_t i = 0; i < WORDS; i++) {
		uint64_t v = seed ^ word_key[i];
		w[i] = v;
		sum += v;
	}
	return sum;
}

static int page_ok(const uint64_t *w, uint64_t seed, uint64_t expect_sum)
{
	uint64_t bad = 0, sum = 0;
	for (uint64_t i = 0; i < WORDS; i++) {
		uint64_t v = w[i];
		bad |= v ^ seed ^ word_key[i];
		sum += v;
	}
	return !bad && sum == expect_sum;
}

/* Free RAM = reported RAM above the image (2 MiB aligned), sorted by address. */
static void find_free(void)
{
	uint64_t lo = ((uint64_t)_end + (1ULL << 21) - 1) & ~((1ULL << 21) - 1);

	for (uint32_t i = 0; i < bootinfo.nram; i++) {
		uint64_t b = bootinfo.ram[i].base, e = b + bootinfo.ram[i].len;
		if (b < lo)
			b = lo;
		b = (b + PAGE - 1) & ~(PAGE - 1);
		e &= ~(PAGE - 1);
		if (e > b)
			freemem[nfree++] = (struct mem_range){ b, e - b };
	}
	for (unsigned i = 1; i < nfree; i++)
		for (unsigned j = i; j > 0 && freemem[j].base < freemem[j - 1].base; j--) {
			struct mem_range t = freemem[j];
			freemem[j] = freemem[j - 1];
			freemem[j - 1] = t;
		}
}

static int allocate(uint64_t pages)
{
	uint64_t csum_bytes = (pages * 8 + PAGE - 1) & ~(PAGE - 1);
	unsigned i;

	for (i = 0; i < nfree && freemem[i].len < csum_bytes; i++)
		;
	if (i == nfree)
		return 0;
	csum = (uint64_t *)freemem[i].base;
	freemem[i].base += csum_bytes;
	freemem[i].len -= csum_bytes;

	for (i = 0; i < nfree && pages; i++) {
		uint64_t n = freemem[i].len / PAGE;
		if (n > pages)
			n = pages;
		if (n)
			chunks[nchunks++] = (struct chunk){ freemem[i].base, n };
		pages -= n;
	}
	return pages == 0;
}

int main(const char *cmdline)
{
	unsigned long mem = param(cmdline, "mem", 16);
	unsigned long gens = param(cmdline, "gens", 4);
	unsigned long rate = param(cmdline, "rate", 0);
	uint64_t pages = (uint64_t)mem << 8;

	printf("memcheck mem %lu gens %lu\n", mem, gens);
	for (uint64_t i = 0; i < WORDS; i++)
		word_key[i] = i * STEP;
	find_free();
	if (!pages || !allocate(pages)) {
		printf("memcheck too big\n");
		return 2;
	}
	/* Pacing: the n-th page of a generation is not written before n * ticks have passed. */
	uint64_t ticks = rate ? tsc_hz * PAGE / ((uint64_t)rate * 1000000) : 0;

	for (uint64_t g = 1; g <= gens; g++) {
		uint64_t p = 0;
		struct stopwatch sw;
		sw_start(&sw);
		for (unsigned c = 0; c < nchunks; c++)
			for (uint64_t j = 0; j < chunks[c].pages; j++, p++) {
				csum[p] = fill_page((uint64_t *)(chunks[c].base + j * PAGE), page_seed(p, g));
				if (ticks)
					while (sw_elapsed(&sw) < (p + 1) * ticks)
						cpu_relax();
			}
		p = 0;
		for (unsigned c = 0; c < nchunks; c++)
			for (uint64_t j = 0; j < chunks[c].pages; j++, p++)
				if (!page_ok((const uint64_t *)(chunks[c].base + j * PAGE), page_seed(p, g), csum[p])) {
					printf("memcheck CORRUPT page %lu\n", p);
					return 1;
				}
		printf("memcheck gen %lu ok\n", g);
	}
	printf("memcheck done ok\n");
	return 0;
}
