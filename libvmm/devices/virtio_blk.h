/* virtio-blk (VIRTIO 1.2 section 5.2, device id 2) on a raw image file or block device:
 * read, write, flush and get-id, served on the notifying vCPU with pread/pwrite. The
 * image is locked (flock: exclusive, shared when read-only) so that a second VMM cannot
 * open it behind this one's back (VMM_ELOCKED). In a migration the lock moves with the
 * guest: the source flushes and releases it just before GO, the destination takes it
 * before its guest starts (device.h's release and acquire). */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <stdint.h>

struct vmm__device_host;

/* serial: up to 20 bytes the guest reads with GET_ID (NULL: "libvmm" and the slot).
 * defer_lock: a migration's destination, whose source may still hold the image (shared
 * storage): a lock held elsewhere is then taken at start instead of refused here. */
int vmm__virtio_blk_create(const struct vmm__device_host *host, uint32_t slot, const char *path,
			   int read_only, const char *serial, int defer_lock);

/* ---- for a migration or snapshot that copies the image (migrate/disk_stream.h)
 * The guest's writes are tracked in blocks of VMM_BLK_DIRTY_BLOCK bytes: 64 KiB keeps the
 * bitmap of a 1 TiB image at 2 MiB and a round's extents long, at the cost of resending up
 * to 64 KiB for a 4 KiB write. */
#define VMM_BLK_DIRTY_BLOCK (64 * 1024ull)

struct vmm__virtio;
/* The blk model behind a transport, or NULL if it is another kind of device. */
void *vmm__virtio_blk_of(struct vmm__virtio *t);
int vmm__blk_fd(const void *blk);
uint64_t vmm__blk_bytes(const void *blk); /* what the guest sees: whole sectors */
int vmm__blk_read_only(const void *blk);
const char *vmm__blk_path(const void *blk);
uint64_t vmm__blk_dirty_blocks(const void *blk);
/* Starts (on: a clean bitmap) or stops tracking the guest's writes. Any thread. */
int vmm__blk_track(void *blk, int on);
/* Copies the blocks written since the last take (or the start) into out
 * ((dirty_blocks + 63) / 64 words), clears them, and returns how many. Any thread. */
uint64_t vmm__blk_take_dirty(void *blk, uint64_t *out);
/* How many blocks are dirty now, without taking them. */
uint64_t vmm__blk_dirty_count(void *blk);

#endif
