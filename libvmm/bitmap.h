/* Page bitmaps as dirty tracking and snapshots use them: bit i of word i / 64 (LSB first,
 * the layout KVM_GET_DIRTY_LOG uses on little-endian hosts) stands for page i. Header-only;
 * no function here allocates, and none checks its arguments: callers size the arrays. */
#ifndef VMM_BITMAP_H
#define VMM_BITMAP_H

#include <stdint.h>
#include <string.h>

/* uint64_t words needed for nbits bits. */
static inline uint64_t vmm__bitmap_words(uint64_t nbits)
{
	return (nbits + 63) / 64;
}

static inline int vmm__bitmap_test(const uint64_t *bm, uint64_t bit)
{
	return (bm[bit / 64] >> (bit % 64)) & 1;
}

static inline void vmm__bitmap_set(uint64_t *bm, uint64_t bit)
{
	bm[bit / 64] |= 1ull << (bit % 64);
}

/* Bits [first, first + n) of word w: a mask. n is 1..64 and first % 64 + n <= 64. */
static inline uint64_t vmm__bitmap_mask(uint64_t first, uint64_t n)
{
	uint64_t m = n == 64 ? ~0ull : (1ull << n) - 1;

	return m << (first % 64);
}

/* Sets bits [first, first + n). */
static inline void vmm__bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t k = 64 - first % 64;

		if (k > n)
			k = n;
		bm[first / 64] |= vmm__bitmap_mask(first, k);
		first += k;
		n -= k;
	}
}

/* Number of bits set in [0, nbits). */
static inline uint64_t vmm__bitmap_weight(const uint64_t *bm, uint64_t nbits)
{
	uint64_t n = 0, w = nbits / 64;

	for (uint64_t i = 0; i < w; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(bm[w] & vmm__bitmap_mask(0, nbits % 64));
	return n;
}

/* dst[i] |= src[i] for nwords words. */
static inline void vmm__bitmap_or(uint64_t *dst, const uint64_t *src, uint64_t nwords)
{
	for (uint64_t i = 0; i < nwords; i++)
		dst[i] |= src[i];
}

/* ORs bits [0, nbits) of src into dst at bits [at, at + nbits). Bits of src at or above
 * nbits are ignored, so a KVM slot bitmap padded to 64 bits never leaks into the next
 * region. */
static inline void vmm__bitmap_or_at(uint64_t *dst, uint64_t at, const uint64_t *src,
				     uint64_t nbits)
{
	uint64_t full = nbits / 64, rest = nbits % 64, sh = at % 64;
	uint64_t *d = dst + at / 64;

	if (!sh) {
		vmm__bitmap_or(d, src, full);
		if (rest)
			d[full] |= src[full] & vmm__bitmap_mask(0, rest);
		return;
	}
	for (uint64_t i = 0; i < full; i++) {
		d[i] |= src[i] << sh;
		d[i + 1] |= src[i] >> (64 - sh);
	}
	if (rest) {
		uint64_t v = src[full] & vmm__bitmap_mask(0, rest);

		d[full] |= v << sh;
		if (sh + rest > 64)
			d[full + 1] |= v >> (64 - sh);
	}
}

/* Copies bits [from, from + nbits) of src to bits [0, nbits) of dst and clears the rest of
 * dst's last word: the inverse of vmm__bitmap_or_at, used to hand KVM a slot-relative
 * bitmap. */
static inline void vmm__bitmap_extract(uint64_t *dst, const uint64_t *src, uint64_t from,
				       uint64_t nbits)
{
	uint64_t sh = from % 64;
	const uint64_t *s = src + from / 64;

	if (!sh) {
		memcpy(dst, s, (size_t)(nbits / 64) * sizeof(*dst));
	} else {
		for (uint64_t i = 0; i < nbits / 64; i++)
			dst[i] = s[i] >> sh | s[i + 1] << (64 - sh);
	}
	if (nbits % 64) {
		uint64_t i = nbits / 64, v = s[i] >> sh;

		/* Read the next source word only when the tail really reaches into it. */
		if (sh && sh + nbits % 64 > 64)
			v |= s[i + 1] << (64 - sh);
		dst[i] = v & vmm__bitmap_mask(0, nbits % 64);
	}
}

/* 1 if any bit of the nwords words is set. */
static inline int vmm__bitmap_any(const uint64_t *bm, uint64_t nwords)
{
	for (uint64_t i = 0; i < nwords; i++)
		if (bm[i])
			return 1;
	return 0;
}

#endif
