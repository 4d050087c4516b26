/* Interrupt entry stubs. Exceptions (and the ud2 services) go through trap.c; hardware IRQs
 * are handled right here in a handful of instructions, because every ring-0 instruction is
 * emulated on this host. Nothing here touches x87/SSE state: the fpu guest relies on that. */
#include "layout.h"

	.text
	.code64

/* Exceptions that push an error code: 8, 10-14, 17, 21, 29, 30. */
.macro EXC vec
	.balign 16
exc_\vec:
	.if (\vec != 8) && (\vec < 10 || \vec > 14) && (\vec != 17) && (\vec != 21) && (\vec != 29) && (\vec != 30)
	push $0
	.endif
	push $\vec
	jmp exc_common
.endm

.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC \v
.endr

exc_common:
	/* Caller-saved registers only: trap_handler is C and preserves the rest. */
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	mov %rsp, %rdi
	call trap_handler
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rax
	add $16, %rsp                   /* vector, error code */
	iretq

/* PIC IRQ n: count, flag for SVC_WAIT, EOI (slave too for n >= 8). */
.macro PIC_IRQ n
	.balign 16
irq_pic_\n:
	push %rax
	incq irq_count + 8 * (VEC_PIC_BASE + \n)
	movb $1, irq_pending
	mov $0x20, %al
	.if \n >= 8
	out %al, $0xa0
	.endif
	out %al, $0x20
	pop %rax
	iretq
.endm

.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	PIC_IRQ \n
.endr

	.globl irq_lapic_timer
irq_lapic_timer:
	push %rax
	incq irq_count + 8 * VEC_LAPIC_TIMER
	movb $1, irq_pending
	mov $0xfee000b0, %eax           /* LAPIC EOI */
	movl $0, (%rax)
	pop %rax
	iretq

	/* Spurious LAPIC interrupts must not be EOI'd. */
	.globl irq_spurious
irq_spurious:
	incq irq_count + 8 * VEC_SPURIOUS
	iretq

	.section .rodata
	.balign 8
	.globl exc_table, irq_pic_table
exc_table:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\v
.endr
irq_pic_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	.quad irq_pic_\n
.endr
