/* Image head at 1 MiB, with offsets fixed for all three boot formats: +0x000 the 32-bit entry
 * (multiboot, and the bzImage's code32_start), +0x010 the multiboot header (within the file's
 * first 8 KiB), +0x200 the 64-bit entry (ELF64 e_entry and the Linux 64-bit boot protocol). */
#include "layout.h"

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003     /* page-align modules, give us mem_* / mmap; ELF, so no a.out kludge */

	.section .head, "ax"
	.code32
	.globl _head
_head:
	jmp entry32

	.balign 16
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.org 0x200
	.code64
	.globl entry64_head
entry64_head:
	jmp entry64
