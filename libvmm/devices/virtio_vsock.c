/* virtio-vsock on vhost-vsock: the VMM sets vhost up from the transport's queues and keeps
 * the event queue; see virtio_vsock.h for the lifecycle and the dirty log. */
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/devices.h"
#include "libvmm/device_host.h"
#include "devices.pb-c.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/devices/virtio_vsock.h"
#include "libvmm/error_internal.h"

#define VSOCK_DEVICE_ID 19
#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2
#define EVENT_TRANSPORT_RESET 0 /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
#define STATUS_DRIVER_OK 4
#define STATUS_NEEDS_RESET 64
#define LOG_PAGE 4096ull /* VHOST_PAGE_SIZE: one bit of the log per page */

static int sys_open_dev(void)
{
	return open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
}

static int sys_ioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

static const struct vmm__vhost_ops sys_ops = { sys_open_dev, sys_ioctl };
static const struct vmm__vhost_ops *ops = &sys_ops;

void vmm__vhost_set_ops_for_tests(const struct vmm__vhost_ops *o)
{
	ops = o ? o : &sys_ops;
}

int vmm__vhost_vsock_open(void)
{
	int fd = ops->open_dev();

	if (fd >= 0)
		return fd;
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		return vmm__err(VMM_EUNSUPPORTED, "vsock: this host has no /dev/vhost-vsock "
				"(modprobe vhost_vsock)");
	return vmm__err_sys(VMM_ESYS, "vsock: /dev/vhost-vsock");
}

struct vsock {
	const struct vmm__device_host *host;
	struct vmm__virtio *t;
	int fd;                 /* /dev/vhost-vsock */
	int kick[2], call[2];   /* eventfds of the rx and tx queues */
	uint64_t cid;
	uint64_t vhost_features;
	uint64_t *log;          /* vhost's dirty log: one bit per page of guest addresses */
	size_t log_words;
	/* The transport's lock covers these. */
	int active;             /* the guest runs (between run and quiesce) */
	int running;            /* vhost runs the queues */
	int reset_pending;      /* a saved guest was loaded: send TRANSPORT_RESET */
	struct vmm__virtio_req req;
	uint64_t events;        /* events sent: vmm_device_info's requests */
};

static int vh(struct vsock *v, unsigned long req, void *arg, const char *what)
{
	char why[96];

	if (ops->ioctl(v->fd, req, arg) == 0)
		return 0;
	snprintf(why, sizeof(why), "vhost-vsock %s: %s", what, strerror(errno));
	vmm__virtio_fail(v->t, why);
	return -1;
}

/* Sends TRANSPORT_RESET if one is due and the driver gave the event queue a buffer (if
 * not yet, its next notification of queue 2 comes here again). Transport lock held. */
static void send_reset(struct vsock *v)
{
	uint32_t ev = EVENT_TRANSPORT_RESET;

	if (!v->reset_pending || vmm__virtio_pop(v->t, Q_EVENT, &v->req) != 1)
		return;
	if (vmm__virtio_scatter(v->t, &v->req, 0, &ev, sizeof(ev)))
		return;
	vmm__virtio_push(v->t, Q_EVENT, &v->req, sizeof(ev));
	v->reset_pending = 0;
	v->events++;
}

static int set_mem_table(struct vsock *v)
{
	const struct vmm__device_host *h = v->host;
	struct vhost_memory *m;
	uint64_t gpa, size, end = 0;
	void *hva;
	uint32_t n = 0;
	int r;

	while (h->mem_region(h->ctx, n, &gpa, &size, &hva) == 0)
		n++;
	m = calloc(1, sizeof(*m) + n * sizeof(m->regions[0]));
	if (!m) {
		vmm__virtio_fail(v->t, "vhost-vsock: out of memory");
		return -1;
	}
	m->nregions = n;
	for (uint32_t i = 0; i < n; i++) {
		h->mem_region(h->ctx, i, &gpa, &size, &hva);
		m->regions[i].guest_phys_addr = gpa;
		m->regions[i].memory_size = size;
		m->regions[i].userspace_addr = (uint64_t)(uintptr_t)hva;
		if (gpa + size > end)
			end = gpa + size;
	}
	r = vh(v, VHOST_SET_MEM_TABLE, m, "SET_MEM_TABLE");
	free(m);
	if (r || !(v->vhost_features & (1ull << VHOST_F_LOG_ALL)))
		return r;
	if (!v->log) {
		v->log_words = (size_t)((end / LOG_PAGE + 63) / 64);
		v->log = calloc(v->log_words ? v->log_words : 1, sizeof(uint64_t));
		if (!v->log) {
			vmm__virtio_fail(v->t, "vhost-vsock: out of memory for the dirty log");
			return -1;
		}
	}
	{
		uint64_t base = (uint64_t)(uintptr_t)v->log;

		return vh(v, VHOST_SET_LOG_BASE, &base, "SET_LOG_BASE");
	}
}

/* Hands the rx and tx queues to vhost and starts it: at DRIVER_OK while the guest runs,
 * or as it runs again (resume, restore). Transport lock held. */
static void start(struct vsock *v)
{
	uint32_t status = vmm__virtio_status(v->t);
	uint64_t features;
	int on = 1;

	if (v->running || !v->active || !(status & STATUS_DRIVER_OK) ||
	    (status & STATUS_NEEDS_RESET))
		return;
	features = (vmm__virtio_driver_features(v->t) & v->vhost_features) |
		   (v->vhost_features & (1ull << VHOST_F_LOG_ALL));
	if (vh(v, VHOST_SET_FEATURES, &features, "SET_FEATURES") || set_mem_table(v))
		return;
	for (uint32_t q = Q_RX; q <= Q_TX; q++) {
		struct vmm__virtio_queue vq;
		struct vhost_vring_state num, base;
		struct vhost_vring_addr addr;
		struct vhost_vring_file kick = { q, v->kick[q] }, call = { q, v->call[q] };

		vmm__virtio_queue_get(v->t, q, &vq);
		if (!vq.ready) {
			vmm__virtio_fail(v->t, "vsock: driver started without its queues");
			return;
		}
		num = (struct vhost_vring_state){ q, vq.num };
		base = (struct vhost_vring_state){ q, vq.last_avail };
		addr = (struct vhost_vring_addr){
			.index = q,
			.flags = v->log ? 1u << VHOST_VRING_F_LOG : 0,
			.desc_user_addr = 0,
			.log_guest_addr = vq.used,
		};
		{
			const struct vmm__device_host *h = v->host;
			uint64_t gpa, size;
			void *hva;

			/* The rings as vhost sees them: host addresses (the transport checked they
			 * are RAM, each in one region). */
			for (uint32_t i = 0; h->mem_region(h->ctx, i, &gpa, &size, &hva) == 0; i++) {
				uint64_t a[3] = { vq.desc, vq.avail, vq.used };
				uint64_t *u[3] = { (uint64_t *)&addr.desc_user_addr,
						   (uint64_t *)&addr.avail_user_addr,
						   (uint64_t *)&addr.used_user_addr };

				for (int k = 0; k < 3; k++)
					if (a[k] >= gpa && a[k] - gpa < size)
						*u[k] = (uint64_t)(uintptr_t)hva + (a[k] - gpa);
			}
		}
		if (vh(v, VHOST_SET_VRING_NUM, &num, "SET_VRING_NUM") ||
		    vh(v, VHOST_SET_VRING_BASE, &base, "SET_VRING_BASE") ||
		    vh(v, VHOST_SET_VRING_ADDR, &addr, "SET_VRING_ADDR") ||
		    vh(v, VHOST_SET_VRING_KICK, &kick, "SET_VRING_KICK") ||
		    vh(v, VHOST_SET_VRING_CALL, &call, "SET_VRING_CALL"))
			return;
	}
	if (vh(v, VHOST_VSOCK_SET_RUNNING, &on, "SET_RUNNING"))
		return;
	v->running = 1;
	send_reset(v);
}

/* Hands what vhost wrote to the VM's dirty tracker, and forgets it. vhost stopped. A
 * vhost without VHOST_F_LOG_ALL (every vhost-vsock has it) could have written anywhere the
 * driver pointed it: all of RAM is marked then, slow but never a silent loss. */
static void harvest_log(struct vsock *v)
{
	if (!v->log) {
		const struct vmm__device_host *h = v->host;
		uint64_t gpa, size;
		void *hva;

		for (uint32_t i = 0; h->mem_region(h->ctx, i, &gpa, &size, &hva) == 0; i++)
			h->mark_dirty(h->ctx, gpa, size);
		return;
	}
	for (size_t w = 0; w < v->log_words; w++) {
		uint64_t bits = v->log[w];

		v->log[w] = 0;
		while (bits) {
			int b = __builtin_ctzll(bits);

			bits &= bits - 1;
			v->host->mark_dirty(v->host->ctx, ((uint64_t)w * 64 + (uint64_t)b) * LOG_PAGE,
					    LOG_PAGE);
		}
	}
}

/* Stops vhost and takes back where it left the queues. Transport lock held. */
static void stop(struct vsock *v)
{
	int off = 0;

	if (!v->running)
		return;
	v->running = 0;
	vh(v, VHOST_VSOCK_SET_RUNNING, &off, "SET_RUNNING 0");
	for (uint32_t q = Q_RX; q <= Q_TX; q++) {
		struct vhost_vring_state base = { q, 0 };
		struct vmm__virtio_queue vq;
		uint16_t used = 0;

		if (vh(v, VHOST_GET_VRING_BASE, &base, "GET_VRING_BASE"))
			continue;
		vmm__virtio_queue_get(v->t, q, &vq);
		/* vhost returns the next available entry; the used index is the ring's own. */
		if (v->host->mem_read(v->host->ctx, vq.used + 2, &used, 2))
			used = vq.used_idx;
		vmm__virtio_queue_set_index(v->t, q, (uint16_t)base.num, used);
	}
	harvest_log(v);
}

static void vsock_notify(void *model, struct vmm__virtio *t, uint32_t q)
{
	struct vsock *v = model;
	uint64_t one = 1;

	(void)t;
	if (q == Q_EVENT) {
		send_reset(v);
		return;
	}
	/* With KVM the ioeventfd takes these writes before they exit; a notification that
	 * comes here anyway (a fake kernel) is passed on to vhost the same way. */
	if (write(v->kick[q], &one, sizeof(one)) < 0) {
		/* an eventfd at its maximum is signalled already */
	}
}

static void vsock_status(void *model, struct vmm__virtio *t, uint32_t status)
{
	struct vsock *v = model;

	(void)t;
	if (!status || (status & STATUS_NEEDS_RESET))
		stop(v);
	else
		start(v);
}

static int vsock_run(void *model, struct vmm__virtio *t)
{
	struct vsock *v = model;

	vmm__virtio_lock(t);
	v->active = 1;
	start(v);
	vmm__virtio_unlock(t);
	return 0;
}

static void vsock_quiesce(void *model)
{
	struct vsock *v = model;

	if (!v->t)
		return;
	vmm__virtio_lock(v->t);
	v->active = 0;
	stop(v);
	vmm__virtio_unlock(v->t);
}

static void vsock_config_read(void *model, uint32_t off, uint8_t *data, uint32_t size)
{
	const struct vsock *v = model;
	uint8_t cfg[8];

	for (int i = 0; i < 8; i++)
		cfg[i] = (uint8_t)(v->cid >> (8 * i));
	memcpy(data, cfg + off, size);
}

static int vsock_save(void *model, uint8_t **buf, size_t *len)
{
	const struct vsock *v = model;
	Vmm__Devices__VirtioVsock m = VMM__DEVICES__VIRTIO_VSOCK__INIT;

	m.has_guest_cid = 1;
	m.guest_cid = v->cid;
	*len = vmm__devices__virtio_vsock__get_packed_size(&m);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		return vmm__err(VMM_ENOMEM, "virtio-vsock state");
	vmm__devices__virtio_vsock__pack(&m, *buf);
	return 0;
}

/* Called only when the whole state is about to load: from here on the guest's
 * connections are gone, which the event queue will tell it. */
static int vsock_load_check(void *model, const uint8_t *buf, size_t len)
{
	struct vsock *v = model;
	Vmm__Devices__VirtioVsock *m = buf ? vmm__devices__virtio_vsock__unpack(NULL, len, buf) : NULL;
	int r = 0;

	if (!m || !m->has_guest_cid || m->guest_cid < 3 || m->guest_cid > 0xffffffffu)
		r = vmm__err(VMM_ESTATEDATA, "virtio-vsock: state missing or does not parse");
	if (m)
		vmm__devices__virtio_vsock__free_unpacked(m, NULL);
	v->reset_pending = !r;
	return r;
}

static void vsock_info(void *model, struct vmm_device_info *info)
{
	const struct vsock *v = model;

	info->requests = v->events;
	info->guest_cid = v->cid;
}

static uint64_t vsock_features(void *model)
{
	(void)model;
	return 0; /* VERSION_1 only (the transport adds it): no SEQPACKET */
}

static void vsock_destroy(void *model)
{
	struct vsock *v = model;

	for (int q = 0; q < 2; q++) {
		if (v->kick[q] >= 0)
			close(v->kick[q]);
		if (v->call[q] >= 0)
			close(v->call[q]);
	}
	if (v->fd >= 0)
		close(v->fd);
	free(v->log);
	free(v);
}

static const struct vmm__virtio_model vsock_model = {
	.kind = "vsock",
	.device_id = VSOCK_DEVICE_ID,
	.nqueues = 3,
	.features = vsock_features,
	.config_len = 8,
	.config_read = vsock_config_read,
	.notify = vsock_notify,
	.save = vsock_save,
	.load_check = vsock_load_check,
	.destroy = vsock_destroy,
	.info = vsock_info,
	.run = vsock_run,
	.quiesce = vsock_quiesce,
	.status = vsock_status,
};

int vmm__virtio_vsock_create(const struct vmm__device_host *host, uint32_t slot, uint64_t cid,
			     int vhost_fd)
{
	struct vsock *v = calloc(1, sizeof(*v));
	struct vmm__virtio *t;
	int r;

	if (!v) {
		close(vhost_fd);
		return vmm__err(VMM_ENOMEM, "virtio-vsock");
	}
	v->host = host;
	v->fd = vhost_fd;
	v->cid = cid;
	v->kick[0] = v->kick[1] = v->call[0] = v->call[1] = -1;
	for (int q = 0; q < 2; q++) {
		v->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		v->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (v->kick[q] < 0 || v->call[q] < 0) {
			r = vmm__err_sys(VMM_ESYS, "virtio-vsock: eventfd");
			vsock_destroy(v);
			return r;
		}
	}
	/* Owner, features and CID now, so that a CID in use is refused as the device is
	 * added, not when the guest first runs. */
	if (ops->ioctl(v->fd, VHOST_SET_OWNER, NULL) < 0 ||
	    ops->ioctl(v->fd, VHOST_GET_FEATURES, &v->vhost_features) < 0) {
		r = vmm__err_sys(VMM_ESYS, "virtio-vsock: vhost SET_OWNER/GET_FEATURES");
		vsock_destroy(v);
		return r;
	}
	if (ops->ioctl(v->fd, VHOST_VSOCK_SET_GUEST_CID, &v->cid) < 0) {
		r = errno == EADDRINUSE
			    ? vmm__err(VMM_EBUSY, "virtio-vsock: CID %llu is in use on this host",
				       (unsigned long long)cid)
			    : vmm__err_sys(VMM_ESYS, "virtio-vsock: VHOST_VSOCK_SET_GUEST_CID");
		vsock_destroy(v);
		return r;
	}
	r = vmm__virtio_create_get(host, slot, &vsock_model, v, &t);
	if (r)
		return r; /* v destroyed by the transport */
	v->t = t;
	for (uint32_t q = Q_RX; q <= Q_TX && !r; q++)
		r = vmm__virtio_kernel_queue(t, q, v->kick[q], v->call[q]);
	return r;
}
