/* The public calls that give a VM its virtio devices (vmm/devices.h): each takes the next
 * virtio-mmio slot and announces it on the kernel command line. The devices themselves
 * live in devices/ and see only the device host. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices.h"
#include "libvmm/devices/virtio_blk.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/devices/virtio_net.h"
#include "libvmm/devices/virtio_rng.h"
#include "libvmm/devices/virtio_vsock.h"
#include "libvmm/error_internal.h"
#include "libvmm/opts.h"
#include "libvmm/vm_internal.h"
#include "libvmm/vm_move.h"

void vmm_disk_opts_init(struct vmm_disk_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
}

void vmm_rng_opts_init(struct vmm_rng_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
}

void vmm_net_opts_init(struct vmm_net_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->fd = -1;
}

#define ANNOUNCE_MAX 48 /* " virtio_mmio.device=4K@0xd0007000:23" and room */

/* vm->lock held. The command line is checked first so that announcing cannot fail on its
 * length once the device exists. */
static int check_addable(struct vmm_vm *vm)
{
	if (vmm__run_control_state(vm->runctl) != VMM_VM_CREATED || vm->loaded)
		return vmm__err(VMM_ESTATE, "devices are added to a new VM before its kernel or "
				"saved state is loaded");
	if (vm->nvirtio == VMM_VIRTIO_SLOTS)
		return vmm__err(VMM_EINVAL, "more than %u virtio devices", VMM_VIRTIO_SLOTS);
	if (strlen(vm->cmdline) + ANNOUNCE_MAX >= VMM_CMDLINE_MAX)
		return vmm__err(VMM_EINVAL, "command line too long for one more virtio device");
	return 0;
}

/* Appends the slot's virtio_mmio.device= argument to the command line; vm->lock held.
 * The device exists already: only out of memory can fail here. */
static int announce(struct vmm_vm *vm, uint32_t slot)
{
	char arg[ANNOUNCE_MAX];
	size_t len = strlen(vm->cmdline);
	char *c;

	snprintf(arg, sizeof(arg), "%svirtio_mmio.device=4K@0x%llx:%u", len ? " " : "",
		 (unsigned long long)(VMM_VIRTIO_MMIO_BASE + slot * VMM_VIRTIO_MMIO_SIZE),
		 VMM_VIRTIO_IRQ_BASE + slot);
	c = realloc(vm->cmdline, len + strlen(arg) + 1);
	if (!c)
		return vmm__err(VMM_ENOMEM, "command line");
	strcpy(c + len, arg);
	vm->cmdline = c;
	vm->cfg.cmdline = c;
	return 0;
}

int vmm_vm_add_disk(struct vmm_vm *vm, const struct vmm_disk_opts *opts)
{
	struct vmm_disk_opts o;
	int r;

	if (!vm || !opts)
		return vmm__err(VMM_EINVAL, "NULL argument");
	vmm_disk_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_disk_opts_init");
	if (r)
		return r;
	if (!o.path || !o.path[0])
		return vmm__err(VMM_EINVAL, "disk: no path");
	pthread_mutex_lock(&vm->lock);
	r = check_addable(vm);
	if (!r)
		r = vmm__virtio_blk_create(&vm->host, vm->nvirtio, o.path, (int)o.read_only,
					   o.serial, vm->move.receiving);
	if (!r)
		r = announce(vm, vm->nvirtio++);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_add_rng(struct vmm_vm *vm, const struct vmm_rng_opts *opts)
{
	struct vmm_rng_opts o;
	int r;

	if (!vm)
		return vmm__err(VMM_EINVAL, "NULL argument");
	vmm_rng_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_rng_opts_init");
	if (r)
		return r;
	pthread_mutex_lock(&vm->lock);
	r = check_addable(vm);
	if (!r)
		r = vmm__virtio_rng_create(&vm->host, vm->nvirtio);
	if (!r)
		r = announce(vm, vm->nvirtio++);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_vm_add_net(struct vmm_vm *vm, const struct vmm_net_opts *opts)
{
	struct vmm_net_opts o;
	int r;

	if (!vm || !opts)
		return vmm__err(VMM_EINVAL, "NULL argument");
	vmm_net_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_net_opts_init");
	if (r)
		return r;
	if (o.fd < 0)
		return vmm__err(VMM_EINVAL, "net: no fd");
	if (o.has_mac && (o.mac[0] & 1))
		return vmm__err(VMM_EINVAL, "net: MAC address %02x:..: is multicast", o.mac[0]);
	pthread_mutex_lock(&vm->lock);
	r = check_addable(vm);
	if (!r)
		r = vmm__virtio_net_create(&vm->host, vm->nvirtio, o.fd, o.has_mac ? o.mac : NULL);
	if (!r)
		r = announce(vm, vm->nvirtio++);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

void vmm_vsock_opts_init(struct vmm_vsock_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->vhost_fd = -1;
}

int vmm_vm_add_vsock(struct vmm_vm *vm, const struct vmm_vsock_opts *opts)
{
	struct vmm_vsock_opts o;
	int r, fd;

	if (!vm || !opts)
		return vmm__err(VMM_EINVAL, "NULL argument");
	vmm_vsock_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_vsock_opts_init");
	if (r)
		return r;
	/* 0-2 are the hypervisor, the loopback and the host; VMADDR_CID_ANY is -1U. */
	if (o.guest_cid < 3 || o.guest_cid >= 0xffffffffull)
		return vmm__err(VMM_EINVAL, "vsock: guest CID %llu (3 .. 4294967294)",
				(unsigned long long)o.guest_cid);
	pthread_mutex_lock(&vm->lock);
	r = check_addable(vm);
	if (!r) {
		fd = o.vhost_fd >= 0 ? fcntl(o.vhost_fd, F_DUPFD_CLOEXEC, 0) : vmm__vhost_vsock_open();
		if (fd < 0)
			r = o.vhost_fd >= 0 ? vmm__err_sys(VMM_EINVAL, "vsock: vhost_fd") : fd;
		else
			r = vmm__virtio_vsock_create(&vm->host, vm->nvirtio, o.guest_cid, fd);
	}
	if (!r)
		r = announce(vm, vm->nvirtio++);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

void vmm_device_info_init(struct vmm_device_info *info)
{
	if (!info)
		return;
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
}

uint32_t vmm_vm_device_count(struct vmm_vm *vm)
{
	uint32_t n;

	if (!vm)
		return 0;
	pthread_mutex_lock(&vm->lock);
	n = vm->nvirtio;
	pthread_mutex_unlock(&vm->lock);
	return n;
}

int vmm_vm_device_info(struct vmm_vm *vm, uint32_t slot, struct vmm_device_info *info)
{
	struct vmm__virtio *t = NULL;
	uint32_t n;

	if (!vm || !info)
		return vmm__err(VMM_EINVAL, "NULL argument");
	if (info->size != sizeof(*info))
		return vmm__err(VMM_EINVAL, "struct vmm_device_info of %u bytes (this libvmm's is "
				"%zu): call vmm_device_info_init()", info->size, sizeof(*info));
	/* Devices are added only before the VM is loaded, and live until it is destroyed:
	 * the transport found under the lock stays valid after it. */
	pthread_mutex_lock(&vm->lock);
	for (uint32_t i = 0; i < vm->devices.n && !t; i++)
		t = vmm__virtio_at(vm->devices.items[i].ops, vm->devices.items[i].dev, slot);
	n = vm->nvirtio;
	pthread_mutex_unlock(&vm->lock);
	if (!t)
		return vmm__err(VMM_ENOENT, "no virtio device in slot %u (the VM has %u)", slot, n);
	vmm__virtio_info(t, info);
	return 0;
}

unsigned vmm__move_disks(struct vmm_vm *vm, void **disks, unsigned max)
{
	unsigned n = 0;

	/* As in vmm_vm_device_info: devices live until the VM is destroyed. */
	pthread_mutex_lock(&vm->lock);
	for (uint32_t slot = 0; slot < vm->nvirtio; slot++) {
		struct vmm__virtio *t = NULL;
		void *b;

		for (uint32_t i = 0; i < vm->devices.n && !t; i++)
			t = vmm__virtio_at(vm->devices.items[i].ops, vm->devices.items[i].dev, slot);
		b = vmm__virtio_blk_of(t);
		if (b && n < max)
			disks[n++] = b;
	}
	pthread_mutex_unlock(&vm->lock);
	return n;
}
