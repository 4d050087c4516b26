/* AP start-up trampoline. The smp guest copies it to TRAMPOLINE_ADDR and sends INIT/SIPI;
 * the AP walks real -> protected -> long mode on a tiny GDT of its own, loads the shared
 * page tables (pml4) and jumps to ap_entry64 in the image. Position-fixed: see T(). */
#include "layout.h"

#define T(x) (TRAMPOLINE_ADDR + (x) - trampoline_start)

	.section .rodata
	.globl trampoline_start, trampoline_end
	.code16
trampoline_start:
	cli
	cld
	xor %ax, %ax
	mov %ax, %ds
	lgdtl T(tr_gdt_desc)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $T(tr32)

	.code32
tr32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %cr4, %eax
	or $0x20, %eax                  /* PAE */
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx           /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov $0x80000011, %eax           /* PG | ET | PE; INIT left CD and NW set: clear them */
	mov %eax, %cr0
	ljmp $0x18, $T(tr64)

	.code64
tr64:
	mov $ap_entry64, %eax
	jmp *%rax

	.balign 8
tr_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* 0x08 code32 */
	.quad 0x00cf92000000ffff        /* 0x10 data */
	.quad 0x00af9a000000ffff        /* 0x18 code64 */
tr_gdt_desc:
	.word 31
	.long T(tr_gdt)
trampoline_end:
