/* The snapshot file layout, shared by writer, reader and info.
 *
 *   [0, 4096)           preamble: magic, format version, features, section offsets and
 *                       lengths, the hashes of the other sections, its own hash
 *   [4096, +ram_len)    RAM: an image in memfd order (never-touched and zero pages are
 *                       holes) or, for compressed/incremental files, RAM batch records
 *                       ending with an END record
 *   [hashes_off, +len)  image only: XXH3 of every page, 8 bytes each (verification)
 *   [meta_off, +len)    SnapshotMeta (proto/stream.proto): shape, machine state, lineage
 *   last 32 bytes       trailer: magic, file length, the preamble's hash, its own hash
 *
 * Metadata comes after RAM because a live snapshot only knows the machine state once the
 * guest is finally paused; the preamble is written last, so a file is only valid once
 * complete. The page hash table is a section of its own so a lazy restore need not read it. */
#ifndef VMM_SNAPSHOT_FILE_H
#define VMM_SNAPSHOT_FILE_H

#include <stdint.h>

#include "stream.pb-c.h"

#define VMM_SNAP_MAGIC "LIBVMMSN"
#define VMM_SNAP_TRAILER_MAGIC "LIBVMMND"
#define VMM_SNAP_RAM_OFFSET 4096ull
#define VMM_SNAP_META_MAX (64u << 20)

struct vmm__memory;

struct vmm__snap_preamble {
	char magic[8];
	uint16_t major, minor;
	uint32_t preamble_len;
	uint64_t required_features;
	uint64_t optional_features;
	uint64_t ram_off, ram_len;
	uint64_t hashes_off, hashes_len;
	uint64_t meta_off, meta_len;
	uint64_t file_len;
	uint64_t hashes_hash;
	uint64_t meta_hash;
	uint64_t preamble_hash; /* XXH3 of every byte before this field */
} __attribute__((packed));

struct vmm__snap_trailer {
	char magic[8];
	uint64_t file_len;
	uint64_t preamble_hash;
	uint64_t trailer_hash; /* XXH3 of the 24 bytes before it */
} __attribute__((packed));

/* An open snapshot with its checked preamble, trailer and metadata. */
struct vmm__snap {
	int fd;
	uint64_t file_size;
	struct vmm__snap_preamble pre;
	Vmm__Stream__SnapshotMeta *meta;
};

/* Opens path and checks everything but RAM: magic, versions, features, every offset
 * against the file size, preamble/trailer/metadata hashes, the Hello. */
int vmm__snap_open(const char *path, struct vmm__snap *s);
void vmm__snap_close(struct vmm__snap *s);

/* Seals a preamble and builds its trailer. */
void vmm__snap_seal(struct vmm__snap_preamble *p, struct vmm__snap_trailer *t);

/* Verifies the RAM section: every page hash (image) or every batch checksum (batches).
 * mem: the RAM to put the pages in (eager restore, incremental layers) or NULL (verify
 * only). Returns VMM_ECORRUPT naming the page or record. */
int vmm__snap_read_ram(struct vmm__snap *s, const struct vmm__memory *mem, int fresh);

/* An image file's page hash table, checked against its own hash: *out (malloc'd, the
 * caller frees it) holds ram_len / 4096 hashes. VMM_EINVAL for a file without one
 * (batches), VMM_ECORRUPT if the table fails its check. */
int vmm__snap_read_hashes(struct vmm__snap *s, uint64_t **out);

#endif
