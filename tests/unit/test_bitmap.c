/* Page bitmap helpers (libvmm/bitmap.h) against a bit-by-bit reference, at every shift and
 * length around word edges: the dirty tracker maps KVM's slot bitmaps through them. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "libvmm/bitmap.h"

#define W 8 /* words in the test arrays: 512 bits */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void fill(uint64_t *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		a[i] = rnd();
}

static int bit(const uint64_t *a, uint64_t i)
{
	return (a[i / 64] >> (i % 64)) & 1;
}

static void basics(void **state)
{
	uint64_t a[W] = { 0 };

	(void)state;
	assert_int_equal(vmm__bitmap_words(0), 0);
	assert_int_equal(vmm__bitmap_words(1), 1);
	assert_int_equal(vmm__bitmap_words(64), 1);
	assert_int_equal(vmm__bitmap_words(65), 2);
	assert_true(vmm__bitmap_mask(0, 64) == ~0ull);
	assert_true(vmm__bitmap_mask(3, 2) == 0x18);
	assert_true(vmm__bitmap_mask(63, 1) == 1ull << 63);
	vmm__bitmap_set(a, 0);
	vmm__bitmap_set(a, 64);
	vmm__bitmap_set(a, 511);
	assert_true(vmm__bitmap_test(a, 0) && vmm__bitmap_test(a, 64) && vmm__bitmap_test(a, 511));
	assert_false(vmm__bitmap_test(a, 1));
	assert_int_equal(vmm__bitmap_weight(a, 512), 3);
	assert_int_equal(vmm__bitmap_weight(a, 511), 2); /* bits at or above nbits don't count */
	assert_int_equal(vmm__bitmap_weight(a, 64), 1);
	assert_true(vmm__bitmap_any(a, W));
	memset(a, 0, sizeof(a));
	assert_false(vmm__bitmap_any(a, W));
}

static void set_range(void **state)
{
	(void)state;
	for (uint64_t first = 0; first < 140; first++)
		for (uint64_t n = 0; first + n <= 300; n += 1 + n / 8) {
			uint64_t a[W];

			memset(a, 0, sizeof(a));
			vmm__bitmap_set_range(a, first, n);
			for (uint64_t i = 0; i < W * 64; i++)
				assert_int_equal(bit(a, i), i >= first && i < first + n);
		}
}

static void or_at(void **state)
{
	(void)state;
	for (uint64_t at = 0; at < 130; at++)
		for (uint64_t nbits = 0; at + nbits <= 350; nbits += 1 + nbits / 16) {
			uint64_t src[W], dst[W], ref[W];

			fill(src, W);
			fill(dst, W);
			memcpy(ref, dst, sizeof(ref));
			for (uint64_t i = 0; i < nbits; i++)
				if (bit(src, i))
					ref[(at + i) / 64] |= 1ull << ((at + i) % 64);
			vmm__bitmap_or_at(dst, at, src, nbits);
			assert_memory_equal(dst, ref, sizeof(ref));
		}
}

static void extract(void **state)
{
	(void)state;
	for (uint64_t from = 0; from < 130; from++)
		for (uint64_t nbits = 1; from + nbits <= 350; nbits += 1 + nbits / 16) {
			uint64_t src[W], dst[W], ref[W];
			uint64_t words = vmm__bitmap_words(nbits);

			fill(src, W);
			fill(dst, W);
			memcpy(ref, dst, sizeof(ref));
			memset(ref, 0, words * sizeof(uint64_t)); /* the tail of the last word is 0 */
			for (uint64_t i = 0; i < nbits; i++)
				if (bit(src, from + i))
					ref[i / 64] |= 1ull << (i % 64);
			vmm__bitmap_extract(dst, src, from, nbits);
			assert_memory_equal(dst, ref, sizeof(ref)); /* and nothing past it changed */
		}
}

/* extract then or_at at the same place gives back exactly the range. */
static void round_trip(void **state)
{
	(void)state;
	for (int k = 0; k < 2000; k++) {
		uint64_t src[W], tmp[W], back[W] = { 0 };
		uint64_t from = rnd() % 300, nbits = 1 + rnd() % (W * 64 - from - 64);

		fill(src, W);
		vmm__bitmap_extract(tmp, src, from, nbits);
		vmm__bitmap_or_at(back, from, tmp, nbits);
		for (uint64_t i = 0; i < W * 64; i++)
			assert_int_equal(bit(back, i), i >= from && i < from + nbits && bit(src, i));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(basics),
		cmocka_unit_test(set_range),
		cmocka_unit_test(or_at),
		cmocka_unit_test(extract),
		cmocka_unit_test(round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
