/* Ring-0 instructions that may fault on some VMMs (QEMU here faults xsetbv at CPL 0). Each
 * faulting instruction has an .extable entry; trap.c resumes at the fixup, which returns 0. */

	.text
	.code64
	/* int xsetbv_safe(uint32_t xcr, uint64_t value) */
	.globl xsetbv_safe
xsetbv_safe:
	mov %edi, %ecx
	mov %rsi, %rax
	mov %rsi, %rdx
	shr $32, %rdx
1:	xsetbv
	mov $1, %eax
	ret
2:	xor %eax, %eax
	ret

	.section .extable, "a"
	.quad 1b, 2b

	.text
	/* int wrmsr_safe(uint32_t msr, uint64_t value) */
	.globl wrmsr_safe
wrmsr_safe:
	mov %edi, %ecx
	mov %rsi, %rax
	mov %rsi, %rdx
	shr $32, %rdx
1:	wrmsr
	mov $1, %eax
	ret
2:	xor %eax, %eax
	ret

	.section .extable, "a"
	.quad 1b, 2b
