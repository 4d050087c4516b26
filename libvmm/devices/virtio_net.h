/* virtio-net (VIRTIO 1.2 section 5.1, device id 1) on a frame-preserving fd the embedder
 * opened: a tap (IFF_TAP | IFF_NO_PI, without IFF_VNET_HDR), or any fd where one read or
 * write is one Ethernet frame (a SOCK_DGRAM/SEQPACKET socket, as the tests use). Queue 0
 * receives, queue 1 transmits; offered: VIRTIO_NET_F_MAC and VIRTIO_NET_F_STATUS (link
 * always up), nothing else (no checksum or segmentation offload, no mergeable buffers, no
 * control queue, no GUEST_ANNOUNCE: instead, a guest that was restored or received is
 * announced by the device itself as it starts, with one RARP broadcast from its MAC as
 * QEMU's announce-self sends, so that switches learn its new port).
 *
 * TX is served on the notifying vCPU like blk: the 12-byte virtio_net_hdr is dropped and
 * the frame written to the fd (a frame the fd will not take now is dropped, as a NIC
 * would). RX has a thread of its own (run at start and resume, joined at pause, stop and
 * destroy: device.h's run and quiesce) that polls the fd, and fills one receive buffer per
 * frame with a zeroed header in front (num_buffers 1). A frame that does not fit the
 * buffer is dropped. Frames in flight at a pause stay in the device's hands (at most one)
 * and are delivered after it; a snapshot or migration keeps only the rings' state, so a
 * frame the host had not handed over is lost, which a network allows. */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include <stdint.h>

struct vmm__device_host;

/* fd: the embedder's, duplicated (the device owns and closes its copy) and set O_NONBLOCK
 * (which the embedder's copy shares). mac: 6 bytes, or NULL for a random locally
 * administered one that a restore replaces by the saved guest's. */
int vmm__virtio_net_create(const struct vmm__device_host *host, uint32_t slot, int fd,
			   const uint8_t *mac);

#endif
