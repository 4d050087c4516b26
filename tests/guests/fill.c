/* fill: the benchmark guest. Fills a working set in ring 3 with chosen contents, prints
 * "fill done", then idles in ring 3, writing an incrementing counter to an MMIO page every
 * `tick` us of TSC time so a VMM can tell the guest is executing (and how soon after a
 * restore or migration it ran again).
 *
 * Parameters: mem = working set in MiB (default: all free RAM above the image),
 * pattern = random | text | halfzero | none (default random), seed (1), tick us (50).
 * Contents depend only on (seed, page index in the working set), so two VMMs given the same
 * parameters hold the same bytes.
 *
 * MMIO page at 0xd0000000 (inside the 32-bit hole of libvmm and of QEMU's pc machine with
 * <= 3 GiB RAM; mapped here uncached, for this guest only):
 *   write +0x0 (8 bytes)  heartbeat counter, 1, 2, 3, ...
 *   read  +0x8 (8 bytes)  command, every 64 heartbeats: 1 = verify a sample (every 64th page),
 *                         2 = verify everything; 0 (and anything else) = nothing. Under QEMU
 *                         the page is unassigned: writes vanish, reads return 0.
 * An NMI (QEMU's QMP inject-nmi) also asks for a full verification.
 * A verification prints "verify ok <pages>" or "verify FAILED page <p>" and the guest idles
 * on either way (the host decides). */
#include "kernel.h"

#define PAGE     4096ULL
#define WORDS    (PAGE / 8)
#define MMIO_BASE 0xd0000000ULL
#define MMIO_HEARTBEAT (MMIO_BASE + 0x0)
#define MMIO_COMMAND   (MMIO_BASE + 0x8)

enum { P_RANDOM, P_TEXT, P_HALFZERO, P_NONE };
static const char *const pattern_names[] = { "random", "text", "halfzero", "none" };

struct chunk {
	uint64_t base, pages;
};

static struct mem_range freemem[MAX_RAM_RANGES];
static unsigned nfree;
static struct chunk chunks[MAX_RAM_RANGES];
static unsigned nchunks;
static uint64_t total_pages;
static uint64_t seed;
static int pattern;

volatile uint64_t nmi_count;

/* ---- ring 0: the MMIO page and the NMI gate, just before ring 3 */

extern uint64_t pdpt[512];

/* NMI: count it and return; the ring-3 loop notices. */
__asm__(".text\n"
	".globl fill_nmi\n"
	"fill_nmi:\n"
	"	lock incq nmi_count\n"
	"	iretq\n");
void fill_nmi(void);

void guest_ring0_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr;
	uint64_t e = pdpt[MMIO_BASE >> 30];

	/* paging_init mapped the LAPIC/IOAPIC page, so the PD for the 4th GiB exists. */
	if (e & 1) {
		uint64_t *pd = (uint64_t *)(e & ~0xfffULL);

		/* 2 MiB leaf, present, writable, user, PWT|PCD (uncached). */
		pd[(MMIO_BASE >> 21) & 511] = MMIO_BASE | 0x87 | 0x18;
		__asm__ volatile("invlpg (%0)" : : "r"(MMIO_BASE) : "memory");
	}
	__asm__ volatile("sidt %0" : "=m"(idtr));
	uint8_t *g = (uint8_t *)idtr.base + 16 * 2;
	uint64_t h = (uint64_t)fill_nmi;

	*(uint16_t *)(g + 0) = (uint16_t)h;
	*(uint16_t *)(g + 2) = KCODE64;
	g[4] = 0;
	g[5] = 0x8e;
	*(uint16_t *)(g + 6) = (uint16_t)(h >> 16);
	*(uint32_t *)(g + 8) = (uint32_t)(h >> 32);
	*(uint32_t *)(g + 12) = 0;
}

/* ---- working set (as memcheck: reported RAM above the image, 2 MiB aligned) */

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

/* pages 0: all of it. Returns the number of pages taken, 0 if they do not fit. */
static uint64_t allocate(uint64_t pages)
{
	uint64_t want = pages, got = 0;

	for (unsigned i = 0; i < nfree; i++) {
		uint64_t n = freemem[i].len / PAGE;
		if (want && n > want - got)
			n = want - got;
		if (n)
			chunks[nchunks++] = (struct chunk){ freemem[i].base, n };
		got += n;
		if (want && got == want)
			break;
	}
	return want && got < want ? 0 : got;
}

static uint64_t *page_addr(uint64_t p)
{
	for (unsigned c = 0; c < nchunks; c++) {
		if (p < chunks[c].pages)
			return (uint64_t *)(chunks[c].base + p * PAGE);
		p -= chunks[c].pages;
	}
	return 0;
}

/* ---- contents */

static uint64_t mix(uint64_t x) /* splitmix64 finaliser */
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void gen_random(uint64_t *w, uint64_t p)
{
	uint64_t s = mix(seed << 40 ^ p);

	for (uint64_t i = 0; i < WORDS; i++) {
		s += 0x9E3779B97F4A7C15ULL;
		w[i] = mix(s);
	}
}

static const char *const words[] = {
	"the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "on",
	"be", "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they",
	"which", "one", "you", "were", "her", "all", "she", "there", "would", "their", "we",
	"him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said",
	"what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new",
	"some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my",
	"now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after",
	"also", "did", "many", "before", "must", "through", "back", "years", "where", "much",
	"your", "way", "well", "down", "should", "because", "each", "just", "those", "people",
	"memory", "machine", "virtual", "snapshot", "migration", "kernel", "guest", "page",
	"network", "disk", "restore", "running", "system", "process", "thread", "buffer",
	"between", "under", "never", "always", "little", "world", "house", "water", "small",
	"large", "number", "general", "without", "another", "against", "government", "during",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static void gen_text(uint64_t *w, uint64_t p)
{
	char *b = (char *)w;
	uint64_t s = mix(seed << 40 ^ p ^ 0x7e7e7e7eULL), col = 0;
	unsigned i = 0, cap = 1;

	while (i < PAGE) {
		s += 0x9E3779B97F4A7C15ULL;
		uint64_t r = mix(s);
		const char *wd = words[(r & 0xffff) % NWORDS];
		for (unsigned k = 0; wd[k] && i < PAGE; k++, col++)
			b[i++] = (char)(k == 0 && cap ? wd[k] - 32 : wd[k]);
		cap = 0;
		if (i < PAGE && ((r >> 16) & 15) == 0) {
			b[i++] = (r >> 20) & 1 ? '.' : ',';
			cap = b[i - 1] == '.';
		}
		if (i < PAGE) {
			if (col > 72) {
				b[i++] = '\n';
				col = 0;
			} else {
				b[i++] = ' ';
				col++;
			}
		}
	}
}

static void gen_page(uint64_t *w, uint64_t p)
{
	switch (pattern) {
	case P_RANDOM:
		gen_random(w, p);
		break;
	case P_TEXT:
		gen_text(w, p);
		break;
	case P_HALFZERO:
		if (p & 1) {
			for (uint64_t i = 0; i < WORDS; i++)
				w[i] = 0;
		} else {
			gen_random(w, p);
		}
		break;
	}
}

static uint64_t expect[WORDS];

static void verify(uint64_t how)
{
	uint64_t step = how == 2 ? 1 : 64, checked = 0;

	if (pattern != P_NONE) {
		for (uint64_t p = 0; p < total_pages; p += step) {
			const volatile uint64_t *w = page_addr(p);
			gen_page(expect, p);
			for (uint64_t i = 0; i < WORDS; i++)
				if (w[i] != expect[i]) {
					printf("verify FAILED page %lu word %lu\n", p, i);
					return;
				}
			checked++;
		}
	}
	printf("verify ok %lu %s\n", checked, how == 2 ? "full" : "sampled");
}

static int parse_pattern(const char *cmdline)
{
	int found = P_RANDOM;

	/* The last "pattern=" token wins, as with param(). */
	for (const char *c = cmdline; *c; c++) {
		if ((c == cmdline || c[-1] == ' ') && !memcmp(c, "pattern=", 8)) {
			const char *v = c + 8;
			for (int k = 0; k < 4; k++) {
				size_t n = strlen(pattern_names[k]);
				if (!memcmp(v, pattern_names[k], n) && (v[n] == ' ' || v[n] == '\0'))
					found = k;
			}
		}
	}
	return found;
}

int main(const char *cmdline)
{
	unsigned long mem = param(cmdline, "mem", 0);
	unsigned long tick = param(cmdline, "tick", 50);

	seed = param(cmdline, "seed", 1);
	pattern = parse_pattern(cmdline);
	find_free();
	total_pages = allocate((uint64_t)mem << 8);
	if (!total_pages) {
		printf("fill too big\n");
		return 2;
	}
	printf("fill mem %lu pattern %s\n", (unsigned long)(total_pages >> 8), pattern_names[pattern]);
	if (pattern != P_NONE)
		for (unsigned c = 0; c < nchunks; c++) {
			uint64_t first = 0;
			for (unsigned k = 0; k < c; k++)
				first += chunks[k].pages;
			for (uint64_t j = 0; j < chunks[c].pages; j++)
				gen_page((uint64_t *)(chunks[c].base + j * PAGE), first + j);
		}
	printf("fill done\n");

	volatile uint64_t *hb = (volatile uint64_t *)MMIO_HEARTBEAT;
	volatile uint64_t *cmd = (volatile uint64_t *)MMIO_COMMAND;
	uint64_t interval = us_to_tsc(tick ? tick : 1), nmi_seen = nmi_count;

	for (uint64_t n = 1;; n++) {
		uint64_t next = rdtsc() + interval;

		/* A TSC that jumped back (a restore, another host) must not stall the loop. */
		for (;;) {
			uint64_t left = next - rdtsc();
			if ((int64_t)left <= 0 || left > interval)
				break;
			cpu_relax();
		}
		*hb = n;
		if ((n & 63) == 0) {
			uint64_t c = *cmd;
			if (c == 1 || c == 2)
				verify(c);
		}
		if (nmi_count != nmi_seen) {
			nmi_seen = nmi_count;
			verify(2);
		}
	}
}
