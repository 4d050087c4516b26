/* fpu guest: load known values into x87/MXCSR/XMM0-15 (+ YMM upper halves) and dump them
 * again. In asm so that no compiler-generated code can run between load and dump; the C
 * side is built with -mgeneral-regs-only. Offsets match struct fpu_image / fpu_dump. */

#define IMG_XMM   0
#define IMG_YMMH  256
#define IMG_ST    512
#define IMG_MXCSR 640
#define IMG_FCW   644
#define DUMP_YMMH 512

	.text
	.code64
	/* void fpu_load(const struct fpu_image *img, int avx) */
	.globl fpu_load
fpu_load:
	fninit
	fldcw IMG_FCW(%rdi)
	ldmxcsr IMG_MXCSR(%rdi)
	/* Push st[7] first so that ST(i) == st[i]. */
.irp i, 7,6,5,4,3,2,1,0
	fldt IMG_ST + 16 * \i(%rdi)
.endr
.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	movdqu IMG_XMM + 16 * \i(%rdi), %xmm\i
.endr
	test %esi, %esi
	jz 1f
	/* Legacy-SSE loads above left the upper halves alone; now set them. */
.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	vinsertf128 $1, IMG_YMMH + 16 * \i(%rdi), %ymm\i, %ymm\i
.endr
1:	ret

	/* void fpu_dump(struct fpu_dump *out, int avx): fxsave does not disturb the registers. */
	.globl fpu_dump
fpu_dump:
	fxsave (%rdi)
	test %esi, %esi
	jz 1f
.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	vextractf128 $1, %ymm\i, DUMP_YMMH + 16 * \i(%rdi)
.endr
1:	ret
