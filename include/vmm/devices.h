/* Virtio devices for the guest: a disk (virtio-blk), an entropy source (virtio-rng), a
 * network card (virtio-net) and host sockets (virtio-vsock on vhost-vsock),
 * each on its own virtio-mmio transport (VIRTIO 1.x, version 2 registers) at
 * 0xd0000000 + 4 KiB x n with interrupt 16 + n on the I/O APIC (level-triggered; the MP
 * table says so), n the order in which they were added (at most 8 devices).
 *
 * A Linux guest learns of them two ways, so add devices before vmm_vm_load_kernel():
 *   - ACPI: the Linux loader writes an RSDP, XSDT, hardware-reduced FADT and a DSDT with
 *     one "LNRO0005" device per window (its memory and interrupt), which is what
 *     distribution kernels such as Debian's use (they lack the command-line option);
 *     a VM without virtio devices gets no ACPI tables at all;
 *   - the command line: each device appends "virtio_mmio.device=4K@<base>:<irq>" to the
 *     VM's kernel command line (vmm_vm_cmdline()), for kernels built with
 *     CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and without ACPI.
 *
 * A restored or received VM needs the same devices, added in the same order, from the
 * restore's or receive's prepare callback (before the state loads): the state carries
 * each device's registers and queues but not the disk's path (paths differ between hosts
 * and the image is opened and locked by the process that runs the guest). A state whose
 * devices differ from the VM's (one missing, one more, another disk size) is refused
 * with VMM_ESTATEDATA.
 *
 * A disk on storage both hosts share migrates with its lock: the receive's prepare
 * callback adds it (the same path) while the source still holds it; the source flushes
 * and releases it just before it lets the guest go (GO), and the destination takes it as
 * it starts. A side that cannot get the lock does not run the guest: vmm_vm_start() and
 * vmm_vm_resume() return VMM_ELOCKED (a destination's failed start hands the guest back;
 * a source that then cannot retake its lock stays paused, warned, until it can).
 *
 * Requests are served on the vCPU thread that notifies the device, before it returns to
 * the guest, so a pause, snapshot or migration never finds one half-done. The one
 * exception is virtio-net's receive side, served by a thread of the VM's that runs only
 * while the guest does (joined before a pause returns), so the same holds for it.
 *
 * Thread rule for adding: one controlling thread, on a VM in state CREATED that has no
 * kernel or saved state loaded yet (VMM_ESTATE otherwise). */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stdint.h>

#include "vmm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vm;

struct vmm_disk_opts {
	uint32_t size;       /* sizeof(struct vmm_disk_opts), set by vmm_disk_opts_init() */
	uint32_t read_only;  /* 1: opened read-only, offered with VIRTIO_BLK_F_RO */
	const char *path;    /* raw image file or block device; required */
	/* What the guest reads with VIRTIO_BLK_T_GET_ID (/sys/block/vdX/serial), up to 20
	 * bytes; NULL: "libvmm-disk<n>". */
	const char *serial;
	uint64_t reserved[4];
};
VMM_EXPORT void vmm_disk_opts_init(struct vmm_disk_opts *opts);

/* Adds a virtio-blk disk backed by opts->path. The image is locked with flock
 * (exclusive; shared when read-only) for as long as the VM lives: an image another
 * process holds that way is refused with VMM_ELOCKED. Its size is rounded down to whole
 * 512-byte sectors. VMM_ENOENT when the path does not exist. */
VMM_EXPORT int vmm_vm_add_disk(struct vmm_vm *vm, const struct vmm_disk_opts *opts);

struct vmm_rng_opts {
	uint32_t size; /* sizeof(struct vmm_rng_opts), set by vmm_rng_opts_init() */
	uint32_t reserved_pad;
	uint64_t reserved[4];
};
VMM_EXPORT void vmm_rng_opts_init(struct vmm_rng_opts *opts);

/* Adds a virtio-rng device fed by getrandom(). opts may be NULL (the defaults). */
VMM_EXPORT int vmm_vm_add_rng(struct vmm_vm *vm, const struct vmm_rng_opts *opts);

struct vmm_net_opts {
	uint32_t size; /* sizeof(struct vmm_net_opts), set by vmm_net_opts_init() */
	/* The backend: an open tap (IFF_TAP | IFF_NO_PI, without IFF_VNET_HDR: VMM_EINVAL
	 * otherwise) or any fd on which one read or write is one Ethernet frame (a
	 * SOCK_DGRAM or SOCK_SEQPACKET socket). The VM keeps a duplicate (the caller may
	 * close its own) and sets O_NONBLOCK on it, which the caller's copy shares. libvmm
	 * never opens /dev/net/tun itself. */
	int fd;
	/* 1: mac is the guest's address (unicast: VMM_EINVAL for a multicast one); 0: a
	 * random locally administered one, replaced by the saved guest's on a restore. */
	uint32_t has_mac;
	uint8_t mac[6];
	uint8_t reserved_pad[2];
	uint64_t reserved[4];
};
VMM_EXPORT void vmm_net_opts_init(struct vmm_net_opts *opts);

/* Adds a virtio-net device (features MAC and STATUS, link always up; no offloads).
 * Transmitted frames are written to the fd from the vCPU that sends them; received ones
 * are read by a thread of the VM's (started with the guest, joined at pause, stop and
 * destroy; a VMM_THREAD_DEVICE thread for the sandbox). A frame the fd will not take, or
 * that does not fit the guest's buffer, is dropped and counted in errors. Snapshots and
 * migration carry the device's registers and rings; frames in flight may be lost, as on
 * any network. A restored or received guest is announced as it starts: one RARP
 * broadcast from its MAC (as QEMU's announce-self), so that switches learn its new port
 * (no VIRTIO_NET_F_GUEST_ANNOUNCE: the guest is not asked to). */
VMM_EXPORT int vmm_vm_add_net(struct vmm_vm *vm, const struct vmm_net_opts *opts);

struct vmm_vsock_opts {
	uint32_t size; /* sizeof(struct vmm_vsock_opts), set by vmm_vsock_opts_init() */
	/* An open /dev/vhost-vsock, or -1 (the default): libvmm opens it itself. An embedder
	 * that sandboxes itself (vmm_sandbox_*) opens it before and passes it here, as the
	 * CLI does; the VM keeps a duplicate (the caller may close its own). */
	int vhost_fd;
	uint64_t guest_cid; /* the guest's context id: 3 .. 0xffffffff, unique on the host */
	uint64_t reserved[4];
};
VMM_EXPORT void vmm_vsock_opts_init(struct vmm_vsock_opts *opts);

/* Adds a virtio-vsock device (AF_VSOCK between the guest and this host) run by the host
 * kernel's vhost-vsock: the guest's queues go to the kernel through an ioeventfd and an
 * irqfd, without exits to the VMM. VMM_EUNSUPPORTED when this host has no
 * /dev/vhost-vsock (modprobe vhost_vsock), VMM_EINVAL for a CID below 3 or above 32 bits,
 * VMM_EBUSY for a CID another VM on this host uses. Connections do not survive a snapshot
 * or migration: a restored or received guest gets VIRTIO_VSOCK_EVENT_TRANSPORT_RESET as
 * it starts (its sockets are reset and it reconnects), and learns the device's CID again,
 * which is the restoring side's (on another host, the CID must be free there). */
VMM_EXPORT int vmm_vm_add_vsock(struct vmm_vm *vm, const struct vmm_vsock_opts *opts);

/* One device as vmm_vm_device_info() reports it. The strings are the VM's, valid until
 * vmm_vm_destroy(). The counters start at zero in each process: a restored or received
 * VM counts from its restore. */
struct vmm_device_info {
	uint32_t size;         /* sizeof(struct vmm_device_info), set by vmm_device_info_init() */
	uint32_t slot;         /* the order added: window 0xd0000000 + 4 KiB x slot, IRQ 16 + slot */
	const char *kind;      /* "blk", "rng", "net" or "vsock" */
	const char *path;      /* blk: the image as given; NULL for other kinds */
	uint32_t read_only;    /* blk */
	/* The driver's device status (VIRTIO 1.2 section 2.1): 0 until a driver binds, 15
	 * once it runs the device, bit 64 (DEVICE_NEEDS_RESET) after it broke the rules. */
	uint32_t status;
	uint64_t capacity;     /* blk: bytes the guest sees */
	char serial[24];       /* blk: what GET_ID answers, NUL-terminated */
	uint64_t requests;     /* requests served (net: frames received and sent) */
	/* of them answered with an error (blk: IOERR, UNSUPP); net: frames dropped */
	uint64_t errors;
	/* blk: read from the image; rng: random bytes given; net: frame bytes received */
	uint64_t bytes_read;
	uint64_t bytes_written; /* blk: written to the image; net: frame bytes sent */
	uint8_t mac[8];        /* net: the guest's MAC address (6 bytes, then 0) */
	uint64_t guest_cid;    /* vsock: the guest's context id (requests: events sent) */
	uint64_t reserved[2];
};
VMM_EXPORT void vmm_device_info_init(struct vmm_device_info *info);

/* How many virtio devices the VM has (0 for NULL): slots 0 .. count - 1. */
VMM_EXPORT uint32_t vmm_vm_device_count(struct vmm_vm *vm);
/* Fills *info (its size set by vmm_device_info_init()) for the device in `slot`. Any
 * thread, any state: the counters are read under the device's own lock. VMM_EINVAL for
 * a NULL argument or a bad info->size, VMM_ENOENT for a slot with no device. */
VMM_EXPORT int vmm_vm_device_info(struct vmm_vm *vm, uint32_t slot,
				  struct vmm_device_info *info);

#ifdef __cplusplus
}
#endif
#endif
