/* Emulated devices with state. Each registers one save/load pair that encodes its own
 * protobuf message; state capture, snapshots and migration walk this one list, so adding
 * a device is one file, one message and one vmm__devices_add() call. */
#ifndef VMM_DEVICE_H
#define VMM_DEVICE_H

#include <stddef.h>
#include <stdint.h>

/* The embedder's device (device_ext.c): its hooks are called without the VM's lock and
 * left out of a migration's state rehearsal. */
#define VMM__DEV_EMBEDDER 1u
/* A device the guest was given (a virtio disk): a saved state without it, or a VM
 * without it restoring a state that has it, is refused; never left as it is. */
#define VMM__DEV_REQUIRED 2u
/* Saved-state names of embedder devices start with this; the built-in ones never do. */
#define VMM__DEV_EMBEDDER_PREFIX "ext/"

struct vmm__device_ops {
	const char *name; /* unique, stable: it names the section in saved state */
	unsigned flags;   /* VMM__DEV_* */
	/* Encodes the device's registers into a malloc'd buffer. Called with the VM paused. */
	int (*save)(void *dev, uint8_t **buf, size_t *len);
	/* Loads them back; hostile input: validate everything, VMM_ESTATEDATA on error. */
	int (*load)(void *dev, const uint8_t *buf, size_t len);
	void (*destroy)(void *dev);
	/* What the device holds outside the VM for the guest (a disk image's lock), handed
	 * over in a migration: release (a disk flushes first) when this side lets the guest
	 * go, acquire before this side runs it. Both idempotent, both may be NULL. */
	int (*release)(void *dev);
	int (*acquire)(void *dev);
	/* A device with a thread of its own (virtio-net's receive side): run starts it as the
	 * guest starts or resumes, quiesce joins it once the vCPUs are parked (pause), the
	 * guest has stopped, or the VM is destroyed, so that nothing writes guest RAM while a
	 * snapshot or the last migration round reads it. Both idempotent, both may be NULL.
	 * Called from the VM's lifecycle calls, some under the VM's lock: the device's thread
	 * must never take it. */
	int (*run)(void *dev);
	void (*quiesce)(void *dev);
};

#define VMM_DEVICES_MAX 32 /* built-in ones and the embedder's */

struct vmm__devices {
	uint32_t n;
	struct {
		const struct vmm__device_ops *ops;
		void *dev;
	} items[VMM_DEVICES_MAX];
};

int vmm__devices_add(struct vmm__devices *d, const struct vmm__device_ops *ops, void *dev);
/* The device registered under name, or NULL. */
void *vmm__devices_find(const struct vmm__devices *d, const char *name);
void vmm__devices_destroy(struct vmm__devices *d);
/* Every device's release, then acquire hook: the first failure is returned (its detail
 * set), the devices before it keep what they did. */
int vmm__devices_release(struct vmm__devices *d);
int vmm__devices_acquire(struct vmm__devices *d);
/* Every device's run hook (the first failure quiesces those started and is returned), or
 * every quiesce hook. */
int vmm__devices_run(struct vmm__devices *d);
void vmm__devices_quiesce(struct vmm__devices *d);

#endif
