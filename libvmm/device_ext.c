/* The embedder's devices in the saved state: vmm_vm_register_device_state() puts a device
 * with the embedder's save/load hooks into the VM's device list, under its name prefixed
 * "ext/" so that it can never clash with a built-in device, and a libvmm that predates
 * this refuses such state by name rather than dropping it. Snapshots and migration carry
 * it like any device (vm_state.c); its hooks run without the VM's lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/error_internal.h"
#include "libvmm/vm_internal.h"

struct ext_dev {
	struct vmm__device_ops ops;
	char name[sizeof(VMM__DEV_EMBEDDER_PREFIX) + VMM_DEVICE_NAME_MAX];
	vmm_dev_save_fn save;
	vmm_dev_load_fn load;
	void *opaque;
};

/* The embedder's name, for messages. */
static const char *user_name(const struct ext_dev *d)
{
	return d->name + sizeof(VMM__DEV_EMBEDDER_PREFIX) - 1;
}

static int hook_error(const struct ext_dev *d, int r, const char *what)
{
	return vmm__err(r < 0 ? r : VMM_EINVAL, "device '%s': %s failed (%d)", user_name(d), what,
			r);
}

/* Asks the hook twice at most: a first guess, then the size it said it needs. */
static int ext_save(void *dev, uint8_t **buf, size_t *len)
{
	struct ext_dev *d = dev;
	size_t cap = 4096, need = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		uint8_t *b = malloc(cap);
		int r;

		if (!b)
			return vmm__err(VMM_ENOMEM, "device '%s': %zu bytes", user_name(d), cap);
		r = d->save(d->opaque, b, cap, &need);
		if (r) {
			free(b);
			return hook_error(d, r, "save");
		}
		if (need > VMM_DEVICE_STATE_MAX) {
			free(b);
			return vmm__err(VMM_EINVAL, "device '%s': %zu bytes of state, at most %u",
					user_name(d), need, VMM_DEVICE_STATE_MAX);
		}
		if (need <= cap) {
			*buf = b, *len = need;
			return 0;
		}
		free(b);
		cap = need;
	}
	return vmm__err(VMM_EINVAL, "device '%s': save wants more than the %zu bytes it asked for",
			user_name(d), cap);
}

static int ext_load(void *dev, const uint8_t *buf, size_t len)
{
	static const uint8_t empty;
	struct ext_dev *d = dev;
	int r;

	if (len > VMM_DEVICE_STATE_MAX)
		return vmm__err(VMM_ESTATEDATA, "device '%s': %zu bytes of state, at most %u",
				user_name(d), len, VMM_DEVICE_STATE_MAX);
	/* Empty state decodes as no buffer: the hook gets a valid pointer anyway. */
	r = d->load(d->opaque, len ? buf : &empty, len);
	return r ? hook_error(d, r, "load") : 0;
}

static void ext_destroy(void *dev)
{
	free(dev);
}

static int valid_name(const char *name)
{
	size_t n = strnlen(name, VMM_DEVICE_NAME_MAX + 1);

	if (n == 0 || n > VMM_DEVICE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int vmm_vm_register_device_state(struct vmm_vm *vm, const char *name, vmm_dev_save_fn save,
				 vmm_dev_load_fn load, void *opaque)
{
	struct ext_dev *d;
	int r;

	if (!vm || !name || !save || !load)
		return vmm__err(VMM_EINVAL, "NULL argument");
	if (!valid_name(name))
		return vmm__err(VMM_EINVAL, "device name '%.64s': 1 to %d of A-Z a-z 0-9 . _ -", name,
				VMM_DEVICE_NAME_MAX);
	d = calloc(1, sizeof(*d));
	if (!d)
		return vmm__err(VMM_ENOMEM, "device '%s'", name);
	snprintf(d->name, sizeof(d->name), "%s%s", VMM__DEV_EMBEDDER_PREFIX, name);
	d->ops = (struct vmm__device_ops){ .name = d->name, .flags = VMM__DEV_EMBEDDER,
					   .save = ext_save, .load = ext_load,
					   .destroy = ext_destroy };
	d->save = save, d->load = load, d->opaque = opaque;
	pthread_mutex_lock(&vm->lock);
	if (vmm__run_control_state(vm->runctl) != VMM_VM_CREATED)
		r = vmm__err(VMM_ESTATE, "device state hooks must be registered before start");
	else if (vmm__devices_find(&vm->devices, d->name))
		r = vmm__err(VMM_EBUSY, "device '%s' is already registered", name);
	else
		r = vmm__devices_add(&vm->devices, &d->ops, d);
	pthread_mutex_unlock(&vm->lock);
	if (r)
		free(d);
	return r;
}
