/* 32-bit entry: multiboot v1 (EAX = 0x2BADB002, EBX = info) or the Linux 32-bit boot protocol
 * (ESI = boot_params). Flat protected mode, paging off. Zeroes .bss, maps the first GiB with
 * 2 MiB pages (paging.c extends the same tables later) and switches to long mode. */
#include "layout.h"

	.text
	.code32
	.globl entry32
entry32:
	cli
	cld
	/* %ebp = boot kind, %ebx = info pointer; both survive the whole routine. */
	mov $BOOT_MULTIBOOT, %ebp
	cmp $0x2BADB002, %eax
	je 1f
	mov $BOOT_LINUX, %ebp
	mov %esi, %ebx
1:
	/* The loader's GDT may be gone, so load ours before touching any segment register. */
	lgdt gdt_desc
	ljmp $KCODE32, $2f
2:
	mov $KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs

	/* Zero .bss ourselves: bzImage loaders do not know it, and it holds the page tables. */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $2, %ecx
	xor %eax, %eax
	rep stosl

	/* Identity map the first GiB: enough for the image, the boot info and low memory. */
	movl $(pdpt + 7), pml4
	movl $(pd0 + 7), pdpt
	mov $pd0, %edi
	mov $0x87, %eax                 /* present, writable, user, 2 MiB */
	mov $512, %ecx
3:	mov %eax, (%edi)
	add $0x200000, %eax
	add $8, %edi
	dec %ecx
	jnz 3b

	mov %cr4, %eax
	or $0x20, %eax                  /* PAE */
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx           /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	and $0x9fffffff, %eax           /* caches on: clear CD, NW */
	or $0x80000001, %eax            /* PG | PE */
	mov %eax, %cr0
	ljmp $KCODE64, $4f

	.code64
4:	/* Upper halves of the GPRs are undefined after the switch: 32-bit moves zero-extend. */
	mov %ebp, %edi
	mov %ebx, %esi
	jmp boot64_common
