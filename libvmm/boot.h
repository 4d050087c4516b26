/* What the VMM puts in guest memory and registers before the first instruction: the
 * low-memory layout, CPUID and LAPIC of each vCPU, and the two entry states (32-bit
 * protected mode for multiboot, 64-bit long mode for Linux and ELF64). */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <stdint.h>

struct vmm_vm;

/* Low memory used by the loaders; the guest owns all of it once it runs. */
#define VMM_BOOT_GDT 0x500ull
#define VMM_BOOT_MBI 0x6000ull         /* multiboot information */
#define VMM_BOOT_PARAMS 0x7000ull      /* Linux zero page */
#define VMM_BOOT_STACK 0x8ff0ull
#define VMM_BOOT_PML4 0x9000ull        /* then PDPT and four PDs: 4 GiB identity */
#define VMM_BOOT_CMDLINE 0x20000ull
#define VMM_KERNEL_MIN_ADDR 0x100000ull /* kernels load at or above 1 MiB */
#define VMM_LOW_RAM_END 0x9fc00ull      /* conventional memory below the EBDA */
/* The MP table (Linux guests): in the F segment, which Linux scans for its floating pointer
 * and which the e820 map reserves (with everything from VMM_LOW_RAM_END to 1 MiB). */
#define VMM_BOOT_MPTABLE 0xf0000ull

/* Boot vCPU enters flat 32-bit protected mode at entry with EAX/EBX as multiboot says. */
int vmm__boot_enter_protected(struct vmm_vm *vm, uint32_t entry, uint32_t eax, uint32_t ebx);
/* Boot vCPU enters 64-bit long mode at entry with identity-mapped low 4 GiB, Linux's boot
 * GDT (CS 0x10, DS 0x18) and RSI = boot_params. */
int vmm__boot_enter_long(struct vmm_vm *vm, uint64_t entry, uint64_t rsi);

/* e820-style RAM map of the VM: fills up to max entries, returns the count. */
struct vmm__e820 {
	uint64_t addr, size;
	uint32_t type; /* 1 RAM, 2 reserved */
};
uint32_t vmm__boot_e820(const struct vmm_vm *vm, struct vmm__e820 *e, uint32_t max);

#endif
