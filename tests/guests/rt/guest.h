/* What a guest program sees: the ring-3 API (printf, params, TSC time, services through ud2)
 * and the data ring 0 collected at boot. Guests implement main() and, optionally, ap_main()
 * and guest_ring0_init(). Everything here is usable from ring 3. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "layout.h"

struct mem_range {
	uint64_t base, len;
};

/* Filled by ring 0 from the multiboot info or the Linux zero page, before ring 3 starts. */
struct bootinfo {
	uint32_t kind;                  /* BOOT_MULTIBOOT or BOOT_LINUX */
	uint32_t nram;
	uint64_t cmdline;               /* physical address, 0 if none */
	uint64_t initrd_base, initrd_size;
	struct mem_range ram[MAX_RAM_RANGES];
};

extern struct bootinfo bootinfo;
extern volatile uint64_t tsc_hz;                /* calibrated at boot */
extern volatile uint64_t irq_count[256];        /* per vector, bumped by ring-0 IRQ stubs */
extern volatile uint32_t cpu_online[MAX_CPUS];  /* set by each CPU in ring 0 before ring 3 */
extern volatile uint32_t cpu_apic_id[MAX_CPUS]; /* valid once cpu_online[cpu] is set */
extern char _image_start[], _end[];             /* the image, including stacks and page tables */

/* Provided by the guest. */
int main(const char *cmdline);                  /* ring 3 on the boot CPU; return = exit status */
void ap_main(uint32_t cpu);                     /* weak: ring 3 on each started AP */
void guest_ring0_init(void);                    /* weak: ring 0 on the BSP, just before ring 3 */

static inline long svc(long nr, long a, long b, long c)
{
	long ret;
	/* ud2 is the service call: #UD handler checks for 0F 0B, serves, skips it. */
	__asm__ volatile("ud2" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "memory");
	return ret;
}

static inline void sys_write(const void *buf, size_t len) { svc(SVC_WRITE, (long)buf, (long)len, 0); }
static inline void sys_wait(void) { svc(SVC_WAIT, 0, 0, 0); }
static inline void sys_ipi(uint32_t apic_id, uint32_t icr_low) { svc(SVC_IPI, apic_id, icr_low, 0); }
__attribute__((noreturn)) static inline void sys_exit(uint32_t status)
{
	svc(SVC_EXIT, status, 0, 0);
	__builtin_unreachable();
}
__attribute__((noreturn)) static inline void sys_halt(void)
{
	svc(SVC_HALT, 0, 0, 0);
	__builtin_unreachable();
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* Careful in ring 3: on this host CPUID at CPL 3 can return the host CPU's values (APIC ID,
 * features), not the guest's. Ask ring 0 or use what it recorded. */
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* TSC time that only counts while this CPU is running: a gap of more than 10 ms between two
 * looks (the VM was paused, snapshotted, migrated, or the vCPU preempted) and a TSC that
 * went backwards both count as nothing, so a pause never ends a wait or a phase early. */
struct stopwatch {
	uint64_t last, elapsed;
};
void sw_start(struct stopwatch *sw);
uint64_t sw_elapsed(struct stopwatch *sw);     /* TSC ticks */
uint64_t us_to_tsc(uint64_t us);
void udelay(uint64_t us);                       /* busy-wait, stopwatch time */

/* Formats into a buffer and writes it with one SVC_WRITE; %d %i %u %x %p %s %c, l/ll/z, 0 and width. */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vfmt(char *buf, size_t size, const char *fmt, va_list ap);
void write_out(const char *s, size_t len);
uint32_t out_hash(void);                        /* FNV-1a over everything written so far */

/* key=value from the command line (last one wins), decimal or 0x hex; dflt if absent/bad. */
unsigned long param(const char *cmdline, const char *key, unsigned long dflt);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
