/* RAM batches and record framing through a real transport (a memfd as file): round trips
 * in every compression mode, and hostile input (every truncation, random corruption)
 * refused without a crash or a write outside RAM. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"
#include "libvmm/memory.h"
#include "migrate/ram.h"
#include "migrate/stream.h"

#define NPAGES 1024
#define PG 4096

static uint8_t *ram_new(void)
{
	uint8_t *r = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);

	assert_true(r != MAP_FAILED);
	return r;
}

/* Pages: some random (incompressible), some text-like, some zero. */
static void fill(uint8_t *ram, unsigned seed)
{
	srand(seed);
	for (size_t p = 0; p < NPAGES; p++) {
		uint8_t *pg = ram + p * PG;

		switch (p % 3) {
		case 0:
			for (size_t i = 0; i < PG; i++)
				pg[i] = (uint8_t)rand();
			break;
		case 1:
			for (size_t i = 0; i < PG; i++)
				pg[i] = (uint8_t)("the quick brown fox "[i % 20]);
			break;
		default:
			memset(pg, 0, PG);
		}
	}
}

static struct vmm__xport *xport(int fd)
{
	struct vmm__xport_opts o = { .is_file = 1 };
	struct vmm__xport *xp;

	assert_int_equal(vmm__xport_new(fd, &o, &xp), 0);
	return xp;
}

/* Writes batches of every page (odd pages first, then even: two increasing runs). */
static size_t write_stream(int fd, const uint8_t *ram, enum vmm__compress mode, int stable)
{
	struct vmm__xport *xp = xport(fd);
	struct vmm__ram_tx *tx;
	size_t len;

	assert_int_equal(vmm__ram_tx_new(ram, NPAGES, mode, 1, &tx), 0);
	vmm__ram_tx_set_stable(tx, stable);
	for (uint64_t p = 1; p < NPAGES; p += 2)
		assert_int_equal(vmm__ram_tx_add(tx, xp, p), 0);
	for (uint64_t p = 0; p < NPAGES; p += 2)
		assert_int_equal(vmm__ram_tx_add(tx, xp, p), 0);
	assert_int_equal(vmm__ram_tx_flush(tx, xp), 0);
	assert_int_equal(vmm__stream_write_rec(xp, VMM_REC_END, NULL, 0), 0);
	assert_int_equal(vmm__ram_tx_stats(tx)->pages, NPAGES);
	assert_true(vmm__ram_tx_stats(tx)->zero_pages >= NPAGES / 3);
	len = vmm__xport_offset(xp);
	vmm__ram_tx_free(tx);
	vmm__xport_free(xp);
	return len;
}

/* Reads records until END; returns 0 or the first error. */
static int read_stream(int fd, uint8_t *ram)
{
	struct vmm__xport *xp = xport(fd);
	struct vmm__ram_rx *rx;
	struct vmm__rec_hdr h;
	int r;

	assert_int_equal(vmm__ram_rx_new(ram, NPAGES, 0, &rx), 0);
	for (;;) {
		r = vmm__stream_read_hdr(xp, &h);
		if (r || h.type == VMM_REC_END)
			break;
		if (h.type != VMM_REC_RAM) {
			r = VMM_EPROTO;
			break;
		}
		r = vmm__ram_rx_apply(rx, xp, h.len);
		if (r)
			break;
	}
	vmm__ram_rx_free(rx);
	vmm__xport_free(xp);
	return r;
}

static void roundtrip(void **state)
{
	uint8_t *src = ram_new(), *dst = ram_new();
	int modes[] = { VMM_COMPRESS_OFF, VMM_COMPRESS_ZSTD, VMM_COMPRESS_AUTO };

	(void)state;
	fill(src, 1);
	for (int m = 0; m < 3; m++) {
		for (int stable = 0; stable < 2; stable++) {
			int fd = memfd_create("stream", 0);
			size_t len = write_stream(fd, src, modes[m], stable);

			memset(dst, 0xAA, NPAGES * PG); /* zero pages must be written as zeros */
			assert_int_equal(read_stream(fd, dst), 0);
			assert_memory_equal(src, dst, NPAGES * PG);
			if (modes[m] == VMM_COMPRESS_OFF)
				assert_true(len < NPAGES * PG); /* zero pages cost a bit */
			else
				assert_true(len < NPAGES * PG / 2); /* text compresses */
			close(fd);
		}
	}
	munmap(src, NPAGES * PG);
	munmap(dst, NPAGES * PG);
}

static void hostile(void **state)
{
	uint8_t *src = ram_new(), *dst = ram_new();
	int fd = memfd_create("stream", 0);
	size_t len;
	uint8_t *bytes;

	(void)state;
	fill(src, 2);
	len = write_stream(fd, src, VMM_COMPRESS_AUTO, 1);
	bytes = malloc(len);
	assert_int_equal(pread(fd, bytes, len, 0), (ssize_t)len);
	/* Truncations: an error, never a crash. */
	for (size_t cut = 0; cut < len; cut += 1 + cut / 3) {
		int f = memfd_create("cut", 0);

		assert_int_equal(write(f, bytes, cut), (ssize_t)cut);
		assert_true(read_stream(f, dst) < 0);
		close(f);
	}
	/* Random corruption: every flip in the structure is caught; a flip in page data is
	 * caught by the checksum (stable batches are hashed). */
	srand(3);
	for (int i = 0; i < 2000; i++) {
		int f = memfd_create("flip", 0);
		size_t at = (size_t)rand() % len;
		int r;

		bytes[at] ^= (uint8_t)(1 + rand() % 255);
		assert_int_equal(write(f, bytes, len), (ssize_t)len);
		r = read_stream(f, dst);
		bytes[at] = 0;
		assert_int_equal(pread(fd, &bytes[at], 1, (off_t)at), 1);
		if (r == 0)
			fail_msg("flip at %zu of %zu went unnoticed", at, len);
		assert_true(r == VMM_EPROTO || r == VMM_ECORRUPT || r == VMM_ETRUNCATED);
		close(f);
	}
	free(bytes);
	close(fd);
	munmap(src, NPAGES * PG);
	munmap(dst, NPAGES * PG);
}

/* Kept buffers (vmm__ram_rx_keep_idle, the receiver fuzzer's): a receiver made from the
 * buffers and zstd context of one that failed in the middle of a stream (a flipped byte,
 * in a zstd frame as often as not) decodes the next stream exactly as a new one does. */
static void kept_buffers(void **state)
{
	uint8_t *src = ram_new(), *dst = ram_new();
	int fd = memfd_create("stream", 0);
	size_t len;
	uint8_t *bytes;

	(void)state;
	fill(src, 4);
	len = write_stream(fd, src, VMM_COMPRESS_ZSTD, 1);
	bytes = malloc(len);
	assert_int_equal(pread(fd, bytes, len, 0), (ssize_t)len);
	vmm__ram_rx_keep_idle(1);
	srand(5);
	for (int i = 0; i < 40; i++) {
		int f = memfd_create("flip", 0);
		size_t at = 64 + (size_t)rand() % (len - 64);

		bytes[at] ^= 0x5a;
		assert_int_equal(write(f, bytes, len), (ssize_t)len);
		assert_true(read_stream(f, dst) < 0);
		bytes[at] ^= 0x5a;
		close(f);
		memset(dst, 0xAA, NPAGES * PG);
		assert_int_equal(read_stream(fd, dst), 0);
		assert_memory_equal(src, dst, NPAGES * PG);
	}
	vmm__ram_rx_keep_idle(0);
	memset(dst, 0xAA, NPAGES * PG);
	assert_int_equal(read_stream(fd, dst), 0);
	assert_memory_equal(src, dst, NPAGES * PG);
	free(bytes);
	close(fd);
	munmap(src, NPAGES * PG);
	munmap(dst, NPAGES * PG);
}

static void bad_pages(void **state)
{
	uint8_t *ram = ram_new();
	struct vmm__ram_tx *tx;

	(void)state;
	assert_int_equal(vmm__ram_tx_new(ram, NPAGES, VMM_COMPRESS_OFF, 1, &tx), 0);
	assert_int_equal(vmm__ram_tx_add(tx, NULL, NPAGES), VMM_EINVAL);
	vmm__ram_tx_free(tx);
	munmap(ram, NPAGES * PG);
}

static void preamble(void **state)
{
	int fd = memfd_create("pre", 0);
	struct vmm__xport *xp = xport(fd);
	uint32_t maj, min;
	uint16_t v = 99;

	(void)state;
	assert_int_equal(vmm__stream_write_preamble(xp), 0);
	vmm__xport_seek(xp, 0);
	assert_int_equal(vmm__stream_read_preamble(xp, &maj, &min), 0);
	assert_int_equal(maj, VMM_STREAM_MAJOR);
	assert_int_equal(pwrite(fd, &v, 2, 8), 2); /* a future major version */
	vmm__xport_seek(xp, 0);
	assert_int_equal(vmm__stream_read_preamble(xp, &maj, &min), VMM_EVERSION);
	assert_int_equal(pwrite(fd, "X", 1, 0), 1);
	vmm__xport_seek(xp, 0);
	assert_int_equal(vmm__stream_read_preamble(xp, &maj, &min), VMM_EMAGIC);
	vmm__xport_free(xp);
	close(fd);
}

/* The length a record header claims, before any of its bytes arrive: RAM and STATE may be
 * large (up to VMM_REC_MAX_LEN), every other record is a small message and may not claim
 * more than VMM_REC_SMALL_MAX, so a hostile peer cannot make the receiver allocate 64 MiB
 * for a ROUND or an ERROR. */
static int claim(int fd, struct vmm__xport *xp, unsigned type, uint32_t len)
{
	struct vmm__rec_hdr h = { VMM_REC_HDR_MAGIC, (uint8_t)type, 0, len }, got;

	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	vmm__xport_seek(xp, 0);
	return vmm__stream_read_hdr(xp, &got);
}

static void claimed_lengths(void **state)
{
	static const unsigned small[] = { VMM_REC_HELLO, VMM_REC_HELLO_REPLY, VMM_REC_ROUND,
					  VMM_REC_COMPLETE, VMM_REC_ERROR, VMM_REC_READY,
					  VMM_REC_STARTED };
	int fd = memfd_create("hdr", 0);
	struct vmm__xport *xp = xport(fd);

	(void)state;
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		assert_int_equal(claim(fd, xp, small[i], VMM_REC_SMALL_MAX), 0);
		assert_int_equal(claim(fd, xp, small[i], VMM_REC_SMALL_MAX + 1), VMM_EPROTO);
		assert_int_equal(claim(fd, xp, small[i], 64u << 20), VMM_EPROTO);
	}
	assert_int_equal(claim(fd, xp, VMM_REC_RAM, VMM_REC_MAX_LEN), 0);
	assert_int_equal(claim(fd, xp, VMM_REC_STATE, VMM_REC_MAX_LEN), 0);
	assert_int_equal(claim(fd, xp, VMM_REC_RAM, VMM_REC_MAX_LEN + 1), VMM_EPROTO);
	vmm__xport_free(xp);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roundtrip),
		cmocka_unit_test(hostile),
		cmocka_unit_test(kept_buffers),
		cmocka_unit_test(bad_pages),
		cmocka_unit_test(preamble),
		cmocka_unit_test(claimed_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
