/* bzImage boot sector + setup header (Linux x86 boot protocol 2.12). mkbzimage.py fills in
 * setup_sects, syssize and init_size. The real-mode code after the header is only used by
 * loaders that run setup (QEMU -kernel): it enters flat protected mode and jumps to
 * code32_start with ESI = boot_params; 64-bit loaders jump to code32_start + 0x200 instead. */
#include "layout.h"

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

start_of_setup:
	cli
	cld
	/* The loader set DS to the segment holding the boot sector, i.e. boot_params. */
	xor %esi, %esi
	mov %ds, %si
	shl $4, %esi
	lea gdt(%esi), %eax
	mov %eax, gdt_desc + 2
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
