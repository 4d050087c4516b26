/* Fuzz target: snapshot files whose every checksum is right, so mutations reach what the
 * hashes guard (the section layout, the metadata, the RAM image and batch records), through
 * both readers: verification (snapshot-info) and the eager restore into guest RAM, which
 * lies between guard pages (the image is read into it by io_uring, in the kernel, where
 * ASan sees nothing: a read past it fails with EFAULT, made a crash here).
 *
 * The input is a compact snapshot: its first 4096 bytes are the preamble, the rest is the
 * end of the file; the file is preamble.file_len long (at most 8 MiB; if the tail does not
 * fit, just preamble + tail) with a hole between, as RAM the guest never touched is. Before
 * the reader sees the file, the target repairs in order: each batch record's checksum
 * (image: each page's hash), the page hash table's hash, the metadata hash, the preamble
 * hash and the trailer (magic, length, both hashes). Seeds: seeds/snap_seeds.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "libvmm/memory.h"
#include "migrate/ram.h"
#include "migrate/snapshot_file.h"
#include "migrate/stream.h"
#include "vmm/vmm.h"

#define FILE_MAX (8u << 20)
#define PAGE 4096u

static int inside(uint64_t off, uint64_t len, uint64_t file_len)
{
	return off <= file_len && len <= file_len - off;
}

/* Walks the RAM batch records from ram_off and rewrites each batch's checksum the way
 * vmm__ram_rx_apply computes it: index and bitmap, then the pages when HASHED. */
static void repair_batches(uint8_t *f, uint64_t off, uint64_t end)
{
	static uint8_t raw[VMM_BATCH_PAGES * PAGE];

	while (off + sizeof(struct vmm__rec_hdr) <= end) {
		struct vmm__rec_hdr h;
		struct vmm__batch_hdr bh;
		uint64_t meta_len, nonzero = 0;
		uint8_t *rec;

		memcpy(&h, f + off, sizeof(h));
		rec = f + off + sizeof(h);
		if (h.type != VMM_REC_RAM || h.len < sizeof(bh) || h.len > end - off - sizeof(h))
			return;
		memcpy(&bh, rec, sizeof(bh));
		meta_len = (uint64_t)bh.idx_len + (bh.count + 7) / 8;
		if (bh.count > VMM_BATCH_PAGES || sizeof(bh) + meta_len > h.len)
			return;
		for (uint32_t i = 0; i < bh.count; i++)
			nonzero += !(rec[sizeof(bh) + bh.idx_len + i / 8] & (1u << (i % 8)));
		XXH3_state_t hs_buf, *hs = &hs_buf;

		XXH3_64bits_reset(hs);
		XXH3_64bits_update(hs, rec + sizeof(bh), meta_len);
		if (bh.flags & VMM_BATCH_HASHED) {
			const uint8_t *data = rec + sizeof(bh) + meta_len;
			uint64_t dlen = h.len - sizeof(bh) - meta_len;

			if (bh.flags & VMM_BATCH_ZSTD) {
				size_t got = ZSTD_decompress(raw, nonzero * PAGE, data, dlen);

				if (!ZSTD_isError(got))
					XXH3_64bits_update(hs, raw, got);
			} else {
				XXH3_64bits_update(hs, data, dlen);
			}
		}
		bh.checksum = XXH3_64bits_digest(hs);
		memcpy(rec, &bh, sizeof(bh));
		off += sizeof(h) + h.len;
	}
}

static void repair(uint8_t *f, uint64_t file_len)
{
	struct vmm__snap_preamble p;
	struct vmm__snap_trailer t;

	memcpy(&p, f, sizeof(p));
	p.file_len = file_len;
	if ((p.required_features & VMM_FEAT_RAM_BATCHES) && inside(p.ram_off, p.ram_len, file_len))
		repair_batches(f, p.ram_off, p.ram_off + p.ram_len);
	if ((p.required_features & VMM_FEAT_RAM_IMAGE) && inside(p.ram_off, p.ram_len, file_len) &&
	    inside(p.hashes_off, p.hashes_len, file_len)) {
		for (uint64_t pg = 0; pg < p.ram_len / PAGE && (pg + 1) * 8 <= p.hashes_len; pg++) {
			uint64_t hv = XXH3_64bits(f + p.ram_off + pg * PAGE, PAGE);

			memcpy(f + p.hashes_off + pg * 8, &hv, 8);
		}
	}
	if (inside(p.hashes_off, p.hashes_len, file_len))
		p.hashes_hash = XXH3_64bits(f + p.hashes_off, p.hashes_len);
	if (inside(p.meta_off, p.meta_len, file_len))
		p.meta_hash = XXH3_64bits(f + p.meta_off, p.meta_len);
	vmm__snap_seal(&p, &t); /* magic, versions and the preamble hash too */
	memcpy(f, &p, sizeof(p));
	memcpy(f + file_len - sizeof(t), &t, sizeof(t));
}

/* Guest RAM of `bytes` between guard pages, zeroed; the mapping is kept while the size
 * stays the same. */
static uint8_t *guest_ram(uint64_t bytes)
{
	static uint8_t *ram;
	static uint64_t len;

	if (ram && len != bytes) {
		munmap(ram - PAGE, len + 2 * PAGE);
		ram = NULL;
	}
	if (!ram) {
		ram = fuzz_guarded_map(bytes);
		len = ram ? bytes : 0;
	} else {
		memset(ram, 0, bytes);
	}
	return ram;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *f;
	struct vmm__snap_preamble p;
	uint64_t file_len, tail = size - VMM_SNAP_RAM_OFFSET;
	struct vmm__snap s;
	const char *path;
	int r;

	if (size < VMM_SNAP_RAM_OFFSET + sizeof(struct vmm__snap_trailer) || tail > FILE_MAX / 2)
		return 0;
	if (!f && !(f = malloc(FILE_MAX)))
		abort();
	memcpy(&p, data, sizeof(p));
	file_len = p.file_len;
	if (file_len > FILE_MAX || file_len < size)
		file_len = size;
	memcpy(f, data, VMM_SNAP_RAM_OFFSET);
	memset(f + VMM_SNAP_RAM_OFFSET, 0, file_len - size);
	memcpy(f + file_len - tail, data + VMM_SNAP_RAM_OFFSET, tail);
	repair(f, file_len);
	path = fuzz_write_sparse(f, file_len);
	if (!path)
		abort();
	if (vmm__snap_open(path, &s))
		return 0;
	r = vmm__snap_read_ram(&s, NULL, 0);
	if (!r) {
		uint64_t mem = s.meta->hello->shape->mem_size;
		uint8_t *ram = mem <= FILE_MAX ? guest_ram(mem) : NULL;

		if (ram) {
			/* No memfd: the eager path copies with memcpy, so a read outside RAM
			 * meets a guard page instead of growing a file. */
			struct vmm__memory m = { .memfd = -1, .host = ram, .size = mem, .file_fd = -1 };

			r = vmm__snap_read_ram(&s, &m, 1);
			if (r == VMM_EIO && strstr(vmm_last_error(), "Bad address"))
				abort(); /* the kernel was told to read outside guest RAM */
		}
	}
	vmm__snap_close(&s);
	return 0;
}
