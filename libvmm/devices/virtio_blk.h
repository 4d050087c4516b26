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

#endif
