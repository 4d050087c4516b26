/* fpu: fills x87, MXCSR, XMM0-15 and (with AVX) the YMM upper halves with distinct values,
 * then runs long integer-only loops and checks after each that nothing changed, so a VMM
 * that pauses, snapshots or migrates mid-loop must carry the whole FPU/SSE/AVX state. */
#include "kernel.h"

enum { AVX_UNSUPPORTED, AVX_ON, AVX_FAULTED };

struct fpu_image {
	uint8_t xmm[16][16];
	uint8_t ymmh[16][16];
	uint8_t st[8][16];              /* 80-bit values in the first 10 bytes */
	uint32_t mxcsr;
	uint16_t fcw;
} __attribute__((aligned(64)));

struct fpu_dump {
	uint8_t fx[512];                /* fxsave area */
	uint8_t ymmh[16][16];
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct fpu_image, st) == 512, "fpu_regs.S IMG_ST");
_Static_assert(__builtin_offsetof(struct fpu_image, mxcsr) == 640, "fpu_regs.S IMG_MXCSR");
_Static_assert(__builtin_offsetof(struct fpu_image, fcw) == 644, "fpu_regs.S IMG_FCW");
_Static_assert(__builtin_offsetof(struct fpu_dump, ymmh) == 512, "fpu_regs.S DUMP_YMMH");

void fpu_load(const struct fpu_image *img, int avx);
void fpu_dump(struct fpu_dump *out, int avx);

static volatile int avx_state;
static struct fpu_image img;
static struct fpu_dump dump;
static uint32_t scratch[4096];
static volatile uint64_t sink;

/* Ring 0: AVX needs CR4.OSXSAVE and XCR0 = x87|SSE|AVX. QEMU here faults xsetbv at CPL 0,
 * so that is caught and the guest carries on with SSE only. */
void guest_ring0_init(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	if (!(r[2] & (1u << 26)) || !(r[2] & (1u << 28)))      /* XSAVE, AVX */
		return;
	cpuid(0xd, 0, r);
	if ((r[0] & 7) != 7)
		return;
	write_cr4(read_cr4() | 1UL << 18);
	if (xsetbv_safe(0, 7)) {
		avx_state = AVX_ON;
	} else {
		write_cr4(read_cr4() & ~(1UL << 18));
		avx_state = AVX_FAULTED;
	}
}

static void build_image(void)
{
	for (unsigned r = 0; r < 16; r++)
		for (unsigned b = 0; b < 16; b++) {
			img.xmm[r][b] = (uint8_t)(r * 16 + b + 1);
			img.ymmh[r][b] = (uint8_t)(0x80 + r * 16 + b + 3);
		}
	for (unsigned i = 0; i < 8; i++) {
		/* A normal extended-precision number: explicit integer bit, distinct exponent. */
		uint64_t mant = 0x8000000000000000ULL | (0x0123456789abcdefULL * (i + 1));
		uint16_t sexp = (uint16_t)((i & 1) << 15 | (0x3fff + i * 3));
		memcpy(img.st[i], &mant, 8);
		memcpy(img.st[i] + 8, &sexp, 2);
	}
	img.mxcsr = 0x7f80;             /* round toward zero: not the reset value */
	img.fcw = 0x0c7f;               /* round toward zero, single precision */
}

/* Returns the name of the first register that differs, or NULL. */
static const char *verify(int avx, char *name)
{
	static const char hex[] = "0123456789";
	uint16_t fcw;
	uint32_t mxcsr;

	memcpy(&fcw, dump.fx, 2);
	memcpy(&mxcsr, dump.fx + 24, 4);
	if (fcw != img.fcw)
		return "fcw";
	if (dump.fx[4] != 0xff)         /* abridged tag word: all eight slots valid */
		return "ftw";
	if (mxcsr != img.mxcsr)
		return "mxcsr";
	for (unsigned i = 0; i < 8; i++)
		if (memcmp(dump.fx + 32 + 16 * i, img.st[i], 10)) {
			name[0] = 's', name[1] = 't', name[2] = hex[i], name[3] = 0;
			return name;
		}
	for (unsigned i = 0; i < 16; i++) {
		const char *kind = NULL;
		if (memcmp(dump.fx + 160 + 16 * i, img.xmm[i], 16))
			kind = "xmm";
		else if (avx && memcmp(dump.ymmh[i], img.ymmh[i], 16))
			kind = "ymmh";
		if (kind) {
			char *p = name;
			while (*kind)
				*p++ = *kind++;
			if (i >= 10)
				*p++ = '1';
			*p++ = hex[i % 10];
			*p = 0;
			return name;
		}
	}
	return NULL;
}

/* Integer and memory work only; this file is built with -mgeneral-regs-only. */
static uint64_t int_work(uint64_t x, uint64_t iters)
{
	for (uint64_t i = 0; i < iters; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		scratch[x & 4095] += (uint32_t)x;
	}
	return x;
}

int main(const char *cmdline)
{
	unsigned long loops = param(cmdline, "loops", 200);
	unsigned long iters = param(cmdline, "iters", 300000);
	unsigned long every = loops >= 10 ? loops / 10 : 1;
	int avx = avx_state == AVX_ON;
	uint64_t x = 88172645463325252ULL;
	char name[8];

	if (avx_state == AVX_ON)
		printf("fpu avx on\n");
	else if (avx_state == AVX_FAULTED)
		printf("fpu avx off (xsetbv faulted)\n");
	else
		printf("fpu avx unsupported\n");

	build_image();
	fpu_load(&img, avx);
	for (unsigned long i = 1; i <= loops; i++) {
		x = int_work(x, iters);
		fpu_dump(&dump, avx);
		const char *bad = verify(avx, name);
		if (bad) {
			printf("fpu CORRUPT %s\n", bad);
			return 1;
		}
		if (i % every == 0)
			printf("fpu loop %lu ok\n", i);
	}
	sink = x;
	printf("fpu ok\n");
	return 0;
}
