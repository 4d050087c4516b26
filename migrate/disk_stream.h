/* The guest's local disk images in a migration stream (VMM_FEAT_DISKS, copy mode): what
 * QEMU needs a separate NBD mirror job for travels here beside RAM on connection 0.
 *
 *   DISK {layout: n disks, each its size; the source's boot id, device and inode}
 *        before round 0: the destination checks the sizes (VMM_ESHAPE) and that the
 *        images are not one file on one host (VMM_EINVAL) before it writes anything
 *   round 0:   DISK {data | hole} for every extent of every image (SEEK_DATA/SEEK_HOLE:
 *              a sparse image stays sparse; an all-zero chunk goes as a hole too)
 *   round k:   the 64 KiB blocks the guest wrote since round k-1's take
 *   final:     the same, the guest paused
 *
 * The destination writes into its own images (the disks its prepare callback gave the
 * VM) and fdatasyncs them before READY. A failure before GO leaves the source's images
 * untouched (the source only reads them); the destination's images hold whatever part
 * of the copy arrived: they are scratch until the guest starts there.
 *
 * Records are raw little-endian structs (libvmm runs on x86-64 only). */
#ifndef VMM_DISK_STREAM_H
#define VMM_DISK_STREAM_H

#include <stdint.h>

struct vmm_vm;
struct vmm__xport;
struct vmm__disk_tx;
struct vmm__disk_rx;

/* Source: finds vm's disks and starts tracking their writes. */
int vmm__disk_tx_new(struct vmm_vm *vm, struct vmm__disk_tx **out);
/* Sends the layout record. */
int vmm__disk_tx_layout(struct vmm__disk_tx *tx, struct vmm__xport *xp);
/* Sends one round: every allocated extent when first, else the blocks dirtied since the
 * last round (taken, i.e. cleared, before they are read). */
int vmm__disk_tx_round(struct vmm__disk_tx *tx, struct vmm__xport *xp, int first);
/* Bytes the guest dirtied since the last round's take (for the downtime estimate). */
uint64_t vmm__disk_tx_pending_bytes(struct vmm__disk_tx *tx);
/* Image bytes sent so far (data, not holes). */
uint64_t vmm__disk_tx_bytes(const struct vmm__disk_tx *tx);
/* Stops tracking and frees. NULL is fine. */
void vmm__disk_tx_free(struct vmm__disk_tx *tx);

/* Destination: vm's disks (added by the prepare callback) as the targets. restore: a
 * snapshot's section, which may go back into the very image it was saved from. */
int vmm__disk_rx_new(struct vmm_vm *vm, int restore, struct vmm__disk_rx **out);
/* Applies one DISK record of len bytes read from xp. */
int vmm__disk_rx_apply(struct vmm__disk_rx *rx, struct vmm__xport *xp, uint32_t len);
/* After the last round: the layout arrived, and the images are on stable storage. */
int vmm__disk_rx_finish(struct vmm__disk_rx *rx);
void vmm__disk_rx_free(struct vmm__disk_rx *rx);

/* ---- the same records as a snapshot file's disk section */
struct vmm__snap;
/* Writes the section at xp's offset (the guest paused): layout, every extent, END; *len
 * and *hash (XXH3) for the metadata. */
int vmm__disk_section_write(struct vmm_vm *vm, struct vmm__xport *xp, int fd, uint64_t off,
			    uint64_t *len, uint64_t *hash);
/* Checks the section of fd at [off, +len) against hash first (VMM_ECORRUPT, nothing
 * written), then writes it into vm's disks. */
int vmm__disk_section_restore(struct vmm_vm *vm, int fd, uint64_t off, uint64_t len,
			      uint64_t hash);

#endif
