/* The list of stateful devices of one VM. */
#include <string.h>

#include "libvmm/device.h"
#include "libvmm/error_internal.h"

int vmm__devices_add(struct vmm__devices *d, const struct vmm__device_ops *ops, void *dev)
{
	if (d->n == VMM_DEVICES_MAX)
		return vmm__err(VMM_ENOMEM, "more than %d devices", VMM_DEVICES_MAX);
	d->items[d->n].ops = ops;
	d->items[d->n].dev = dev;
	d->n++;
	return 0;
}

void *vmm__devices_find(const struct vmm__devices *d, const char *name)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (!strcmp(d->items[i].ops->name, name))
			return d->items[i].dev;
	return NULL;
}

/* Every device's release (or acquire) hook in turn, up to the first failure. */
static int each(struct vmm__devices *d, int release)
{
	for (uint32_t i = 0; i < d->n; i++) {
		const struct vmm__device_ops *ops = d->items[i].ops;
		int (*hook)(void *dev) = release ? ops->release : ops->acquire;
		int r = hook ? hook(d->items[i].dev) : 0;

		if (r)
			return r;
	}
	return 0;
}

int vmm__devices_release(struct vmm__devices *d)
{
	return each(d, 1);
}

int vmm__devices_acquire(struct vmm__devices *d)
{
	return each(d, 0);
}

void vmm__devices_quiesce(struct vmm__devices *d)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (d->items[i].ops->quiesce)
			d->items[i].ops->quiesce(d->items[i].dev);
}

int vmm__devices_run(struct vmm__devices *d)
{
	for (uint32_t i = 0; i < d->n; i++) {
		int r = d->items[i].ops->run ? d->items[i].ops->run(d->items[i].dev) : 0;

		if (r) {
			vmm__devices_quiesce(d);
			return r;
		}
	}
	return 0;
}

void vmm__devices_destroy(struct vmm__devices *d)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (d->items[i].ops->destroy)
			d->items[i].ops->destroy(d->items[i].dev);
	d->n = 0;
}
