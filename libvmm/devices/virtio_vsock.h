/* virtio-vsock (VIRTIO 1.2 section 5.10, device id 19) whose rx (0) and tx (1) queues the
 * host kernel's vhost-vsock runs: the guest's notifications reach it through an
 * ioeventfd and its interrupts go back through an irqfd (vmm__virtio_kernel_queue), so
 * the VMM sees neither. The event queue (2) is the VMM's own: after a restore or a
 * migration it carries VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, as Firecracker sends, so the
 * guest drops its connections (they did not survive) and reconnects.
 *
 * vhost runs only while the guest does: run (start, resume) sets it up from the
 * transport's queues and starts it, quiesce (pause, stop, destroy) stops it and reads
 * back where it left each queue (VHOST_GET_VRING_BASE), so nothing writes guest RAM while
 * a snapshot or the last migration round reads it, and the saved indexes are exact.
 * vhost's writes to guest RAM bypass KVM's dirty log: the device asks vhost to log them
 * (VHOST_F_LOG_ALL into a bitmap of its own, VHOST_SET_LOG_BASE) and hands what it logged
 * to the VM's dirty tracker at every quiesce, that is before a migration's final round. */
#ifndef VMM_VIRTIO_VSOCK_H
#define VMM_VIRTIO_VSOCK_H

#include <stdint.h>

struct vmm__device_host;

/* vhost_fd: an open /dev/vhost-vsock, owned by the device from here on (closed on
 * failure too). */
int vmm__virtio_vsock_create(const struct vmm__device_host *host, uint32_t slot, uint64_t cid,
			     int vhost_fd);

/* The vhost calls, so that unit tests can run the device without the kernel module; NULL
 * puts the system calls back. Not thread-safe, as vmm__kvm_set_ops_for_tests. */
struct vmm__vhost_ops {
	int (*open_dev)(void); /* /dev/vhost-vsock, read-write; -1 with errno */
	int (*ioctl)(int fd, unsigned long req, void *arg);
};
void vmm__vhost_set_ops_for_tests(const struct vmm__vhost_ops *ops);
/* Opens /dev/vhost-vsock: the fd, or VMM_EUNSUPPORTED (error set) when this host has no
 * vhost-vsock, VMM_ESYS for another failure. */
int vmm__vhost_vsock_open(void);

#endif
