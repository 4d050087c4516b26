/* bzImage boot sector + setup header (Linux x86 boot protocol 2.12). mkbzimage.py fills in
 * setup_sects, syssize and init_size. The real-mode code after the header only runs under
 * loaders that execute setup (QEMU -kernel): like Linux's setup it builds a boot_params copy
 * with the BIOS e820 map, enters flat protected mode and jumps to code32_start with ESI
 * pointing at it. 64-bit loaders skip all this and enter at code32_start + 0x200. */
#include "layout.h"

#define BP_OFF 0x1000   /* boot_params copy: inside the loader's setup heap (it ends at 0x8000+) */

	.code16
	.text
	.globl _start
_start:
	.org 0x1f1
setup_sects:		.byte 0                 /* patched */
root_flags:		.word 0
syssize:		.long 0                 /* patched: payload size / 16 */
ram_size:		.word 0
vid_mode:		.word 0xffff
root_dev:		.word 0
boot_flag:		.word 0xAA55
	/* 0x200: the real-mode entry (CS = setup segment + 0x20) jumps over the header. */
	.byte 0xeb, start_of_setup - 1f
1:
header:			.ascii "HdrS"
version:		.word 0x020c
realmode_swtch:		.long 0
start_sys_seg:		.word 0x1000
kernel_version:		.word 0
type_of_loader:		.byte 0
loadflags:		.byte 0x01              /* LOADED_HIGH */
setup_move_size:	.word 0x8000
code32_start:		.long IMAGE_BASE
ramdisk_image:		.long 0
ramdisk_size:		.long 0
bootsect_kludge:	.long 0
heap_end_ptr:		.word 0
ext_loader_ver:		.byte 0
ext_loader_type:	.byte 0
cmd_line_ptr:		.long 0
initrd_addr_max:	.long 0x7fffffff
kernel_alignment:	.long 0x200000
relocatable_kernel:	.byte 0
min_alignment:		.byte 21
xloadflags:		.word 0x0001            /* XLF_KERNEL_64: entry at code32_start + 0x200 */
cmdline_size:		.long 4095
hardware_subarch:	.long 0
hardware_subarch_data:	.quad 0
payload_offset:		.long 0
payload_length:		.long 0
setup_data:		.quad 0
pref_address:		.quad IMAGE_BASE
init_size:		.long 0                 /* patched: memory from 1 MiB incl. bss/stacks */
handover_offset:	.long 0
hdr_end:

start_of_setup:
	cli
	cld
	/* DS = the segment the loader put us in. Our code sits where boot_params' e820 table
	 * would go, so boot_params is built in the loader's heap, BP_OFF bytes further on. */
	mov %ds, %ax
	mov %ax, %es
	mov $BP_OFF, %di
	mov $2048, %cx
	xor %ax, %ax
	rep stosw
	mov $0x1f1, %si
	mov $(BP_OFF + 0x1f1), %di
	mov $(hdr_end - 0x1f1), %cx
	rep movsb

	/* BIOS e820 map into boot_params.e820_table / e820_entries. */
	xor %ebx, %ebx
	xor %bp, %bp
	mov $(BP_OFF + 0x2d0), %di
1:	mov $0xe820, %eax
	mov $20, %ecx
	mov $0x534d4150, %edx           /* "SMAP" */
	int $0x15
	jc 2f
	cmp $0x534d4150, %eax
	jne 2f
	add $20, %di
	inc %bp
	cmp $128, %bp
	jae 2f
	test %ebx, %ebx
	jnz 1b
2:	mov %bp, %ax
	mov %al, BP_OFF + 0x1e8

	xor %esi, %esi
	mov %ds, %si
	shl $4, %esi
	lea gdt(%esi), %eax
	mov %eax, gdt_desc + 2
	add $BP_OFF, %esi               /* ESI = boot_params, linear */
	lgdtl gdt_desc
	inb $0x92, %al                  /* fast A20, in case nobody did it */
	or $2, %al
	and $0xfe, %al
	outb %al, $0x92
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	ljmpl $0x10, $IMAGE_BASE        /* EAX is not the multiboot magic, so entry32 takes ESI */

	.balign 8
gdt:	/* the protocol's __BOOT_CS = 0x10, __BOOT_DS = 0x18 */
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff
	.quad 0x00cf92000000ffff
gdt_desc:
	.word 31
	.long 0                         /* patched at run time: linear address of gdt */
