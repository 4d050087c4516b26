/* The virtio-mmio transport (VIRTIO 1.2, section 4.2: the "modern" register layout,
 * version 2) with split virtqueues, under which a device model (virtio_rng.c,
 * virtio_blk.c) plugs in. Queue notifications are handled on the vCPU thread that wrote
 * QueueNotify, before that thread can park: a pause or a snapshot never finds a request
 * half-done. The guest is hostile: every ring and descriptor is checked against RAM, and a
 * driver that breaks the rules (descriptor outside RAM, a loop, a chain longer than the
 * queue, an index that jumps) puts the device in DEVICE_NEEDS_RESET; it never crashes
 * the VMM and nothing outside RAM is read or written. */
#ifndef VMM_VIRTIO_MMIO_H
#define VMM_VIRTIO_MMIO_H

#include <stdint.h>

struct vmm__device_host;
struct vmm__device_ops;
struct vmm__virtio;
struct vmm_device_info;

/* Where the devices sit: one 4 KiB window each from VMM_VIRTIO_MMIO_BASE (in the 32-bit
 * hole, below the I/O APIC), interrupt VMM_VIRTIO_IRQ_BASE + slot on I/O APIC pins 16-23,
 * level-triggered, active high (the MP table says so: mptable.c). */
#define VMM_VIRTIO_MMIO_BASE 0xd0000000ull
#define VMM_VIRTIO_MMIO_SIZE 0x1000ull
#define VMM_VIRTIO_IRQ_BASE 16u
#define VMM_VIRTIO_SLOTS 8u

#define VMM_VIRTIO_QUEUE_MAX 256u /* QueueNumMax of every queue */
#define VMM_VIRTIO_QUEUES_MAX 3u

#define VIRTIO_F_VERSION_1 32

/* One request popped from a queue: its head descriptor and its buffers, the readable
 * ones first (the spec's order; a chain that breaks it is refused). */
struct vmm__virtio_seg {
	uint64_t addr;
	uint32_t len;
	int write; /* device-writable */
};

struct vmm__virtio_req {
	uint16_t head;
	uint32_t nseg;
	uint64_t rlen, wlen; /* bytes readable, bytes writable */
	struct vmm__virtio_seg seg[VMM_VIRTIO_QUEUE_MAX];
};

/* A device model: what the transport needs of virtio-rng, virtio-blk, ... */
struct vmm__virtio_model {
	const char *kind;   /* "rng", "blk": in the device's saved-state name */
	uint32_t device_id; /* VIRTIO 1.2 section 5 */
	uint32_t nqueues;
	/* Device-specific feature bits offered (VERSION_1 is added by the transport). */
	uint64_t (*features)(void *model);
	/* Reads size bytes of the device's configuration space at off (the transport has
	 * checked off + size against config_len). */
	uint32_t config_len;
	void (*config_read)(void *model, uint32_t off, uint8_t *data, uint32_t size);
	/* Serves every available request of queue q (vmm__virtio_pop/push). Called with the
	 * transport's lock held, on the notifying vCPU thread. */
	void (*notify)(void *model, struct vmm__virtio *t, uint32_t q);
	/* Encodes/checks the model's own identity into the saved state (may be NULL): a
	 * restore into a device that differs (another disk size) is refused. */
	int (*save)(void *model, uint8_t **buf, size_t *len);
	int (*load_check)(void *model, const uint8_t *buf, size_t len);
	void (*destroy)(void *model);
	/* Fills what the model knows of vmm_device_info (path, counters, ...); called with
	 * the transport's lock held, which also guards the model's counters. May be NULL. */
	void (*info)(void *model, struct vmm_device_info *info);
	/* The device ops' release and acquire (device.h), under the transport's lock. May be
	 * NULL. */
	int (*release)(void *model);
	int (*acquire)(void *model);
	/* The device ops' run and quiesce (device.h) for a model with a thread of its own
	 * (virtio-net's receive side), called WITHOUT the transport's lock, which that thread
	 * takes around vmm__virtio_pop/push. May be NULL. */
	int (*run)(void *model, struct vmm__virtio *t);
	void (*quiesce)(void *model);
	/* The driver wrote the device status (0: a reset), under the transport's lock; for a
	 * model whose queues a kernel backend runs (vhost), which starts it at DRIVER_OK and
	 * stops it at a reset. May be NULL. */
	void (*status)(void *model, struct vmm__virtio *t, uint32_t status);
};

/* A queue's state as the driver set it (for a kernel backend), under the transport's lock. */
struct vmm__virtio_queue {
	uint32_t num;
	int ready;
	uint64_t desc, avail, used;
	uint16_t last_avail, used_idx;
};
void vmm__virtio_queue_get(struct vmm__virtio *t, uint32_t q, struct vmm__virtio_queue *out);
/* Where a stopped kernel backend left queue q (VHOST_GET_VRING_BASE), saved with the rest. */
void vmm__virtio_queue_set_index(struct vmm__virtio *t, uint32_t q, uint16_t last_avail,
				 uint16_t used_idx);
uint64_t vmm__virtio_driver_features(struct vmm__virtio *t);
uint32_t vmm__virtio_status(struct vmm__virtio *t);

/* Hands queue q to a backend in the host kernel (vhost), with no exit to the VMM on either
 * side: the guest's write of q to QueueNotify signals kick_fd inside KVM (KVM_IOEVENTFD
 * with datamatch q on the window's QueueNotify register), and a signal of call_fd pulses
 * the device's interrupt line (KVM_IRQFD on its I/O APIC pin). Since the transport does not
 * see those interrupts, InterruptStatus reads with "used buffer" set as long as one queue
 * is handed over (the driver then scans its queues: a spurious scan costs nothing). Both
 * fds stay the caller's; the registrations are removed as the device is destroyed. At
 * creation, before the VM runs. 0, or an error code already set. */
int vmm__virtio_kernel_queue(struct vmm__virtio *t, uint32_t q, int kick_fd, int call_fd);


/* Creates the transport for model in the given slot: registers its MMIO window, its saved
 * state ("virtio<slot>-<kind>") and takes ownership of model (destroyed with the VM, or
 * here on failure). */
int vmm__virtio_create(const struct vmm__device_host *host, uint32_t slot,
		       const struct vmm__virtio_model *model, void *model_ctx);
/* The same, handing back the transport (NULL on failure) for vmm__virtio_kernel_queue. */
int vmm__virtio_create_get(const struct vmm__device_host *host, uint32_t slot,
			   const struct vmm__virtio_model *model, void *model_ctx,
			   struct vmm__virtio **out);

/* The transport's lock, for a model's own thread around pop, gather, scatter and push
 * (the vCPU path holds it already when it calls notify). */
void vmm__virtio_lock(struct vmm__virtio *t);
/* Unlocks and logs why the device broke, if it did meanwhile (the log is the embedder's
 * callback: never under the lock). */
void vmm__virtio_unlock(struct vmm__virtio *t);

/* The next available request of queue q: 1 and *req filled, 0 when none, -1 when the
 * driver broke the rules (the device is now NEEDS_RESET; stop serving). */
int vmm__virtio_pop(struct vmm__virtio *t, uint32_t q, struct vmm__virtio_req *req);
/* Copies between a request's buffers and buf, by byte offset within its readable
 * (gather) or writable (scatter) part. 0, or -1 when the guest memory is not RAM (the
 * device is then NEEDS_RESET). */
int vmm__virtio_gather(struct vmm__virtio *t, const struct vmm__virtio_req *req,
		       uint64_t off, void *buf, size_t len);
int vmm__virtio_scatter(struct vmm__virtio *t, const struct vmm__virtio_req *req,
			uint64_t off, const void *buf, size_t len);
/* Returns the request to the driver (used ring) with `written` bytes written, and
 * raises the interrupt unless the driver asked for none. */
void vmm__virtio_push(struct vmm__virtio *t, uint32_t q, const struct vmm__virtio_req *req,
		      uint32_t written);
/* The transport behind an entry (ops, dev) of the VM's device list if it is a virtio one
 * in `slot`, else NULL. */
struct vmm__virtio *vmm__virtio_at(const struct vmm__device_ops *ops, void *dev, uint32_t slot);
/* The model context behind t if its model is `model`, else NULL. */
void *vmm__virtio_model_of(struct vmm__virtio *t, const struct vmm__virtio_model *model);
/* Fills *info (all of it: zeroed first) under the transport's lock. */
void vmm__virtio_info(struct vmm__virtio *t, struct vmm_device_info *info);
/* Marks the device broken (DEVICE_NEEDS_RESET, configuration-change interrupt) and logs
 * why. */
void vmm__virtio_fail(struct vmm__virtio *t, const char *why);

#endif
