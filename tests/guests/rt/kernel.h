/* Ring-0 internals of the runtime: port I/O, control registers, LAPIC access and the calls
 * between the boot files. Every ring-0 instruction is emulated on this host (~1 us each),
 * so helpers here stay tiny. Never call these from ring 3. */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include "guest.h"

#define LAPIC_BASE      0xfee00000UL
#define LAPIC_ID        0x020
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TMICT     0x380
#define LAPIC_TDCR      0x3e0

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

static inline void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(LAPIC_BASE + reg) = v; }
static inline uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t *)(LAPIC_BASE + reg); }

/* Trap frame built by isr.S: caller-saved registers, then vector/error, then the CPU's frame. */
struct trap_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, err;
	uint64_t rip, cs, rflags, rsp, ss;
};

void serial_init(void);
void serial_write(const char *s, size_t n);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void do_exit(uint32_t status);

void idt_init(void);
void idt_load(void);
void cpu_init(uint32_t cpu);
void bootinfo_parse(uint32_t kind, uint64_t info);
void paging_init(uint32_t kind);
void pic_init(void);
void tsc_calibrate(void);
uint64_t service(struct trap_frame *f);
void trap_handler(struct trap_frame *f);

/* entry64.S */
__attribute__((noreturn)) void enter_user(uint64_t rip, uint64_t stack_top, uint64_t arg);
/* noinit.S */
extern char kstacks[], istacks[], ustacks[], pd_pool[];
/* safe.S: return 1 if the instruction worked, 0 if it faulted (fixed up through the extable). */
int xsetbv_safe(uint32_t xcr, uint64_t value);
int wrmsr_safe(uint32_t msr, uint64_t value);

extern volatile uint8_t irq_pending;
extern volatile uint32_t ap_boot_index;

#endif
