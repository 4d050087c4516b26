/* 64-bit entries: the ELF64 / bzImage entry (long mode on the VMM's page tables, RSI =
 * boot_params), the common long-mode start shared with entry32.S, the AP landing pad from
 * trampoline.S, and the iretq into ring 3. */
#include "layout.h"

	.text
	.code64
	.globl entry64
entry64:
	cli
	cld
	mov %rsi, %rbx
	/* .bss first: the loader may not have cleared it and it holds pml4/pdpt/idt. */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $3, %ecx
	xor %eax, %eax
	rep stosq
	mov $BOOT_LINUX, %edi
	mov %rbx, %rsi
	/* fall through */

	/* %edi = boot kind, %rsi = multiboot info or boot_params. */
	.globl boot64_common
boot64_common:
	mov $(kstacks + KSTACK_SIZE), %rsp
	lgdt gdt_desc
	call reload_segments
	call kmain
	ud2

	/* AP: arrives in long mode on the trampoline's GDT; ap_boot_index says which CPU it is. */
	.globl ap_entry64
ap_entry64:
	lgdt gdt_desc
	mov ap_boot_index, %edi
	lea 1(%rdi), %eax
	shl $KSTACK_SHIFT, %rax
	add $kstacks, %rax
	mov %rax, %rsp
	call reload_segments
	call ap_kmain
	ud2

reload_segments:
	pop %rax
	push $KCODE64
	push %rax
	mov $KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	lretq

	/* enter_user(rip, stack_top, arg): iretq to ring 3 with IF set; never returns. */
	.globl enter_user
enter_user:
	sub $8, %rsi                    /* look like a call just pushed a return address */
	push $(UDATA | 3)
	push %rsi
	push $0x202
	push $(UCODE64 | 3)
	push %rdi
	mov %rdx, %rdi
	iretq
