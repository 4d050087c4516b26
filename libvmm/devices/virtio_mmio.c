/* virtio-mmio, version 2 (VIRTIO 1.2 section 4.2.2), and split virtqueues (section 2.7).
 * x86 only: the rings are little-endian, as the host is, so they are copied as they are.
 * Indirect descriptors, event index and packed queues are not offered. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices.h"
#include "libvmm/bus.h"
#include "libvmm/device.h"
#include "libvmm/device_host.h"
#include "devices.pb-c.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/error_internal.h"

/* Ordering against the guest's vCPUs, which read and write the rings as another agent, not
 * a C11 thread. x86 keeps loads in order and stores in order (TSO): acquire and release
 * need only the compiler held back; a store followed by a load (the used index, then the
 * avail flags) needs mfence, which is what __atomic_thread_fence(__ATOMIC_SEQ_CST) emits.
 * Inline assembly rather than __atomic_thread_fence: gcc refuses those fences under
 * -fsanitize=thread, and a fence against the guest is no concern of ThreadSanitizer's. */
static inline void guest_ordered(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline void guest_fence(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

/* Register offsets (section 4.2.2, table "MMIO Device Register Layout"). */
#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_VENDOR_ID 0x00c
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define MAGIC 0x74726976     /* "virt" */
#define VENDOR_ID 0x4d4d564c /* "LVMM" */

#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 64

#define ISR_USED 1
#define ISR_CONFIG 2

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

struct vq {
	uint32_t num;
	int ready;
	uint64_t desc, avail, used;
	uint16_t last_avail, used_idx;
};

struct vmm__virtio {
	struct vmm__device_ops ops; /* its entry in the device list (named after the slot) */
	const struct vmm__device_host *host;
	const struct vmm__virtio_model *model;
	void *mctx;
	uint64_t base;
	uint32_t irq;
	char name[32];
	/* vCPUs exit on the window concurrently; held while a queue is served. */
	pthread_mutex_t lock;
	uint64_t dev_features, drv_features;
	uint32_t dev_sel, drv_sel, status, queue_sel, isr, gen;
	struct vq q[VMM_VIRTIO_QUEUES_MAX];
	/* Queues handed to a kernel backend: their eventfds, -1 when not. */
	int kick_fd[VMM_VIRTIO_QUEUES_MAX], call_fd[VMM_VIRTIO_QUEUES_MAX];
	int kernel_queues;
	/* Why the device broke, logged once the lock is dropped (the log callback is the
	 * embedder's). */
	char why[192];
};

static void update_irq(struct vmm__virtio *t)
{
	t->host->irq_line(t->host->ctx, t->irq, t->isr != 0);
}

void vmm__virtio_fail(struct vmm__virtio *t, const char *why)
{
	if (t->status & STATUS_NEEDS_RESET)
		return;
	t->status |= STATUS_NEEDS_RESET;
	snprintf(t->why, sizeof(t->why), "%s: %s; device needs reset", t->name, why);
	if (t->status & STATUS_DRIVER_OK) {
		t->isr |= ISR_CONFIG;
		update_irq(t);
	}
}

static void reset(struct vmm__virtio *t)
{
	t->drv_features = 0;
	t->dev_sel = t->drv_sel = t->status = t->queue_sel = t->isr = 0;
	memset(t->q, 0, sizeof(t->q));
	update_irq(t);
}

static int rd16(struct vmm__virtio *t, uint64_t gpa, uint16_t *v)
{
	if (t->host->mem_read(t->host->ctx, gpa, v, 2)) {
		vmm__virtio_fail(t, "ring outside RAM");
		return -1;
	}
	return 0;
}

int vmm__virtio_pop(struct vmm__virtio *t, uint32_t qi, struct vmm__virtio_req *req)
{
	struct vq *q = &t->q[qi];
	uint16_t avail_idx, head, i;
	char why[96];

	/* Not before DRIVER_OK (section 3.1.1): the notify path checks it, a device's own
	 * thread (virtio-net's RX) may come here earlier. */
	if ((t->status & STATUS_NEEDS_RESET) || !(t->status & STATUS_DRIVER_OK) || !q->ready)
		return -1;
	if (rd16(t, q->avail + 2, &avail_idx))
		return -1;
	if (avail_idx == q->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->num) {
		snprintf(why, sizeof(why), "queue %u: available index %u is more than %u ahead of %u",
			 qi, avail_idx, q->num, q->last_avail);
		vmm__virtio_fail(t, why);
		return -1;
	}
	/* The ring entry is read after the index that published it. */
	guest_ordered();
	if (rd16(t, q->avail + 4 + 2ull * (q->last_avail % q->num), &head))
		return -1;
	req->head = head;
	req->nseg = 0;
	req->rlen = req->wlen = 0;
	for (i = head;;) {
		struct {
			uint64_t addr;
			uint32_t len;
			uint16_t flags, next;
		} d;

		if (i >= q->num) {
			snprintf(why, sizeof(why), "queue %u: descriptor %u of %u", qi, i, q->num);
			vmm__virtio_fail(t, why);
			return -1;
		}
		/* A chain visits each descriptor once at most: a longer one loops. */
		if (req->nseg == q->num) {
			snprintf(why, sizeof(why), "queue %u: chain from %u loops or exceeds the queue",
				 qi, head);
			vmm__virtio_fail(t, why);
			return -1;
		}
		if (t->host->mem_read(t->host->ctx, q->desc + 16ull * i, &d, 16)) {
			vmm__virtio_fail(t, "descriptor table outside RAM");
			return -1;
		}
		if (d.flags & DESC_F_INDIRECT) {
			vmm__virtio_fail(t, "indirect descriptor (not offered)");
			return -1;
		}
		if (t->host->mem_check(t->host->ctx, d.addr, d.len)) {
			snprintf(why, sizeof(why), "queue %u: buffer 0x%llx+0x%x is not RAM", qi,
				 (unsigned long long)d.addr, d.len);
			vmm__virtio_fail(t, why);
			return -1;
		}
		if (!(d.flags & DESC_F_WRITE) && req->wlen) {
			vmm__virtio_fail(t, "readable descriptor after a writable one");
			return -1;
		}
		req->seg[req->nseg++] = (struct vmm__virtio_seg){ d.addr, d.len,
								  !!(d.flags & DESC_F_WRITE) };
		if (d.flags & DESC_F_WRITE)
			req->wlen += d.len;
		else
			req->rlen += d.len;
		if (!(d.flags & DESC_F_NEXT))
			break;
		i = d.next;
	}
	q->last_avail++;
	return 1;
}

/* Walks the readable (write 0) or writable (write 1) buffers from byte off. */
static int copy(struct vmm__virtio *t, const struct vmm__virtio_req *req, int write,
		uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;

	for (uint32_t i = 0; i < req->nseg && len; i++) {
		const struct vmm__virtio_seg *s = &req->seg[i];
		uint64_t n;
		int r;

		if (s->write != write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = s->len - off < len ? s->len - off : len;
		r = write ? t->host->mem_write(t->host->ctx, s->addr + off, p, n)
			  : t->host->mem_read(t->host->ctx, s->addr + off, p, n);
		if (r) {
			vmm__virtio_fail(t, "buffer outside RAM");
			return -1;
		}
		p += n, len -= n, off = 0;
	}
	if (len) {
		vmm__virtio_fail(t, "request shorter than its contents");
		return -1;
	}
	return 0;
}

int vmm__virtio_gather(struct vmm__virtio *t, const struct vmm__virtio_req *req, uint64_t off,
		       void *buf, size_t len)
{
	return copy(t, req, 0, off, buf, len);
}

int vmm__virtio_scatter(struct vmm__virtio *t, const struct vmm__virtio_req *req,
			uint64_t off, const void *buf, size_t len)
{
	return copy(t, req, 1, off, (void *)buf, len);
}

void vmm__virtio_push(struct vmm__virtio *t, uint32_t qi, const struct vmm__virtio_req *req,
		      uint32_t written)
{
	struct vq *q = &t->q[qi];
	struct {
		uint32_t id, len;
	} e = { req->head, written };
	uint16_t idx, flags;

	if (t->host->mem_write(t->host->ctx, q->used + 4 + 8ull * (q->used_idx % q->num), &e, 8)) {
		vmm__virtio_fail(t, "used ring outside RAM");
		return;
	}
	/* The entry is visible before the index that publishes it. */
	guest_ordered();
	idx = ++q->used_idx;
	if (t->host->mem_write(t->host->ctx, q->used + 2, &idx, 2)) {
		vmm__virtio_fail(t, "used ring outside RAM");
		return;
	}
	guest_fence();
	if (rd16(t, q->avail, &flags) || (flags & AVAIL_F_NO_INTERRUPT))
		return;
	t->isr |= ISR_USED;
	update_irq(t);
}

/* Checks a queue the driver declares ready (section 2.7: size a power of 2, areas
 * aligned, all in RAM). */
static int queue_check(struct vmm__virtio *t, uint32_t qi, const struct vq *q, char *why,
		       size_t len)
{
	const struct vmm__device_host *h = t->host;

	if (!q->num || q->num > VMM_VIRTIO_QUEUE_MAX || (q->num & (q->num - 1)))
		snprintf(why, len, "queue %u: size %u", qi, q->num);
	else if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		snprintf(why, len, "queue %u: misaligned ring", qi);
	else if (h->mem_check(h->ctx, q->desc, 16ull * q->num) ||
		 h->mem_check(h->ctx, q->avail, 6 + 2ull * q->num) ||
		 h->mem_check(h->ctx, q->used, 6 + 8ull * q->num))
		snprintf(why, len, "queue %u: ring outside RAM", qi);
	else
		return 0;
	return -1;
}

static uint32_t reg_read(struct vmm__virtio *t, uint32_t reg)
{
	struct vq *q = t->queue_sel < t->model->nqueues ? &t->q[t->queue_sel] : NULL;

	switch (reg) {
	case REG_MAGIC:
		return MAGIC;
	case REG_VERSION:
		return 2;
	case REG_DEVICE_ID:
		return t->model->device_id;
	case REG_VENDOR_ID:
		return VENDOR_ID;
	case REG_DEVICE_FEATURES:
		return t->dev_sel < 2 ? (uint32_t)(t->dev_features >> (32 * t->dev_sel)) : 0;
	case REG_QUEUE_NUM_MAX:
		return q ? VMM_VIRTIO_QUEUE_MAX : 0;
	case REG_QUEUE_READY:
		return q ? (uint32_t)q->ready : 0;
	case REG_INTERRUPT_STATUS:
		return t->isr | (t->kernel_queues ? ISR_USED : 0);
	case REG_STATUS:
		return t->status;
	case REG_CONFIG_GENERATION:
		return t->gen;
	}
	return 0;
}

static void set_half(uint64_t *v, uint32_t hi, uint32_t val)
{
	int sh = hi ? 32 : 0;

	*v = (*v & ~(0xffffffffull << sh)) | ((uint64_t)val << sh);
}

static void reg_write(struct vmm__virtio *t, uint32_t reg, uint32_t v)
{
	struct vq *q = t->queue_sel < t->model->nqueues ? &t->q[t->queue_sel] : NULL;
	char why[96];

	switch (reg) {
	case REG_DEVICE_FEATURES_SEL:
		t->dev_sel = v;
		break;
	case REG_DRIVER_FEATURES_SEL:
		t->drv_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		/* Only between DRIVER and FEATURES_OK (section 3.1.1). */
		if ((t->status & STATUS_DRIVER) && !(t->status & STATUS_FEATURES_OK) && t->drv_sel < 2)
			set_half(&t->drv_features, t->drv_sel, v);
		break;
	case REG_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case REG_QUEUE_NUM:
		if (q && !q->ready)
			q->num = v;
		break;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
		if (q && !q->ready)
			set_half(&q->desc, reg == REG_QUEUE_DESC_HIGH, v);
		break;
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
		if (q && !q->ready)
			set_half(&q->avail, reg == REG_QUEUE_DRIVER_HIGH, v);
		break;
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		if (q && !q->ready)
			set_half(&q->used, reg == REG_QUEUE_DEVICE_HIGH, v);
		break;
	case REG_QUEUE_READY:
		if (!q)
			break;
		if (!v) {
			q->ready = 0;
		} else if (!q->ready) {
			if (queue_check(t, t->queue_sel, q, why, sizeof(why))) {
				vmm__virtio_fail(t, why);
				break;
			}
			q->ready = 1;
			q->last_avail = q->used_idx = 0;
		}
		break;
	case REG_QUEUE_NOTIFY:
		if (v < t->model->nqueues && t->q[v].ready && (t->status & STATUS_DRIVER_OK) &&
		    !(t->status & STATUS_NEEDS_RESET))
			t->model->notify(t->mctx, t, v);
		break;
	case REG_INTERRUPT_ACK:
		t->isr &= ~v;
		update_irq(t);
		break;
	case REG_STATUS:
		if (!v) {
			reset(t);
			if (t->model->status)
				t->model->status(t->mctx, t, 0);
			break;
		}
		/* FEATURES_OK only for a subset of what was offered that includes VERSION_1
		 * (a legacy driver); the driver reads the status back to learn it. */
		if ((v & STATUS_FEATURES_OK) && !(t->status & STATUS_FEATURES_OK) &&
		    (!(t->drv_features & (1ull << VIRTIO_F_VERSION_1)) ||
		     (t->drv_features & ~t->dev_features)))
			v &= ~(uint32_t)STATUS_FEATURES_OK;
		t->status = (v & 0xff & ~(uint32_t)STATUS_NEEDS_RESET) |
			    (t->status & STATUS_NEEDS_RESET);
		if (t->model->status)
			t->model->status(t->mctx, t, t->status);
		break;
	}
}

void vmm__virtio_lock(struct vmm__virtio *t)
{
	pthread_mutex_lock(&t->lock);
}

void vmm__virtio_unlock(struct vmm__virtio *t)
{
	char why[sizeof(t->why)];

	memcpy(why, t->why, sizeof(why));
	t->why[0] = 0;
	pthread_mutex_unlock(&t->lock);
	if (why[0])
		t->host->log(t->host->ctx, VMM_LOG_WARN, why);
}

static void virtio_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct vmm__virtio *t = opaque;
	uint64_t off = addr - t->base;
	uint32_t v = 0;

	pthread_mutex_lock(&t->lock);
	if (off >= REG_CONFIG) {
		uint64_t c = off - REG_CONFIG;

		/* The configuration space is read-only for every device offered. */
		if (!is_write) {
			memset(data, 0, size);
			if (size <= 8 && c + size <= t->model->config_len)
				t->model->config_read(t->mctx, (uint32_t)c, data, size);
		}
	} else if (size != 4 || (off & 3)) {
		/* Registers are 32-bit (section 4.2.2.2): anything else is ignored. */
		if (!is_write)
			memset(data, 0, size);
	} else if (is_write) {
		memcpy(&v, data, 4);
		reg_write(t, (uint32_t)off, v);
	} else {
		v = reg_read(t, (uint32_t)off);
		memcpy(data, &v, 4);
	}
	vmm__virtio_unlock(t);
}

static int virtio_save(void *dev, uint8_t **buf, size_t *len)
{
	struct vmm__virtio *t = dev;
	Vmm__Devices__VirtioMmio m = VMM__DEVICES__VIRTIO_MMIO__INIT;
	Vmm__Devices__VirtioQueue qm[VMM_VIRTIO_QUEUES_MAX], *qp[VMM_VIRTIO_QUEUES_MAX];
	uint8_t *model = NULL;
	size_t model_len = 0;
	int r = 0;

	if (t->model->save)
		r = t->model->save(t->mctx, &model, &model_len);
	if (r)
		return r;
	pthread_mutex_lock(&t->lock);
#define SET(f, v) (m.has_##f = 1, m.f = (v))
	SET(device_id, t->model->device_id);
	SET(device_features, t->dev_features);
	SET(driver_features, t->drv_features);
	SET(device_features_sel, t->dev_sel);
	SET(driver_features_sel, t->drv_sel);
	SET(status, t->status);
	SET(queue_sel, t->queue_sel);
	SET(interrupt_status, t->isr);
	SET(config_generation, t->gen);
	m.n_queues = t->model->nqueues;
	m.queues = qp;
	for (uint32_t i = 0; i < t->model->nqueues; i++) {
		const struct vq *q = &t->q[i];
		Vmm__Devices__VirtioQueue *p = &qm[i];

		vmm__devices__virtio_queue__init(p);
		qp[i] = p;
#define QSET(f, v) (p->has_##f = 1, p->f = (v))
		QSET(num, q->num);
		QSET(ready, q->ready);
		QSET(desc_addr, q->desc);
		QSET(avail_addr, q->avail);
		QSET(used_addr, q->used);
		QSET(last_avail_idx, q->last_avail);
		QSET(used_idx, q->used_idx);
#undef QSET
	}
#undef SET
	pthread_mutex_unlock(&t->lock);
	if (model) {
		m.has_model = 1;
		m.model.data = model;
		m.model.len = model_len;
	}
	*len = vmm__devices__virtio_mmio__get_packed_size(&m);
	*buf = malloc(*len ? *len : 1);
	if (*buf)
		vmm__devices__virtio_mmio__pack(&m, *buf);
	free(model);
	return *buf ? 0 : vmm__err(VMM_ENOMEM, "%s state", t->name);
}

/* Everything the guest could have set, checked before any of it is used. */
static int load_check(struct vmm__virtio *t, const Vmm__Devices__VirtioMmio *m)
{
	char why[96];

	if (m->device_id != t->model->device_id || m->device_features != t->dev_features)
		return vmm__err(VMM_ESTATEDATA,
				"%s: saved device %u with features 0x%llx, this one is %u with 0x%llx",
				t->name, m->device_id, (unsigned long long)m->device_features,
				t->model->device_id, (unsigned long long)t->dev_features);
	if ((m->driver_features & ~t->dev_features) || m->status > 0xff ||
	    m->interrupt_status > 3 || m->n_queues != t->model->nqueues)
		return vmm__err(VMM_ESTATEDATA, "%s: features, status, interrupt or queue count "
				"out of range", t->name);
	for (uint32_t i = 0; i < m->n_queues; i++) {
		const Vmm__Devices__VirtioQueue *p = m->queues[i];
		struct vq q = { p->num, p->ready, p->desc_addr, p->avail_addr, p->used_addr, 0, 0 };

		if (p->last_avail_idx > 0xffff || p->used_idx > 0xffff || p->num > VMM_VIRTIO_QUEUE_MAX ||
		    (p->ready && queue_check(t, i, &q, why, sizeof(why))))
			return vmm__err(VMM_ESTATEDATA, "%s: queue %u out of range", t->name, i);
	}
	return 0;
}

static int virtio_load(void *dev, const uint8_t *buf, size_t len)
{
	struct vmm__virtio *t = dev;
	Vmm__Devices__VirtioMmio *m = vmm__devices__virtio_mmio__unpack(NULL, len, buf);
	int r;

	if (!m)
		return vmm__err(VMM_ESTATEDATA, "%s: state does not parse", t->name);
	r = load_check(t, m);
	if (!r && t->model->load_check)
		r = t->model->load_check(t->mctx, m->has_model ? m->model.data : NULL,
					 m->has_model ? m->model.len : 0);
	if (!r) {
		pthread_mutex_lock(&t->lock);
		t->drv_features = m->driver_features;
		t->dev_sel = m->device_features_sel;
		t->drv_sel = m->driver_features_sel;
		t->status = m->status;
		t->queue_sel = m->queue_sel;
		t->isr = m->interrupt_status;
		t->gen = m->config_generation;
		for (uint32_t i = 0; i < m->n_queues; i++) {
			const Vmm__Devices__VirtioQueue *p = m->queues[i];

			t->q[i] = (struct vq){ p->num, p->ready, p->desc_addr, p->avail_addr,
					       p->used_addr, (uint16_t)p->last_avail_idx,
					       (uint16_t)p->used_idx };
		}
		update_irq(t);
		pthread_mutex_unlock(&t->lock);
	}
	vmm__devices__virtio_mmio__free_unpacked(m, NULL);
	return r;
}

void vmm__virtio_queue_get(struct vmm__virtio *t, uint32_t qi, struct vmm__virtio_queue *out)
{
	const struct vq *q = &t->q[qi];

	*out = (struct vmm__virtio_queue){ q->num, q->ready, q->desc, q->avail, q->used,
					   q->last_avail, q->used_idx };
}

void vmm__virtio_queue_set_index(struct vmm__virtio *t, uint32_t qi, uint16_t last_avail,
				 uint16_t used_idx)
{
	t->q[qi].last_avail = last_avail;
	t->q[qi].used_idx = used_idx;
}

uint64_t vmm__virtio_driver_features(struct vmm__virtio *t)
{
	return t->drv_features;
}

uint32_t vmm__virtio_status(struct vmm__virtio *t)
{
	return t->status;
}

int vmm__virtio_kernel_queue(struct vmm__virtio *t, uint32_t q, int kick_fd, int call_fd)
{
	const struct vmm__device_host *h = t->host;
	int r;

	if (q >= t->model->nqueues || t->kick_fd[q] >= 0)
		return vmm__err(VMM_EINVAL, "%s: queue %u", t->name, q);
	r = h->ioeventfd(h->ctx, t->base + REG_QUEUE_NOTIFY, 4, q, kick_fd, 1);
	if (r)
		return r;
	r = h->irqfd(h->ctx, t->irq, call_fd, 1);
	if (r) {
		h->ioeventfd(h->ctx, t->base + REG_QUEUE_NOTIFY, 4, q, kick_fd, 0);
		return r;
	}
	t->kick_fd[q] = kick_fd;
	t->call_fd[q] = call_fd;
	t->kernel_queues++;
	return 0;
}

/* Removes the kernel queues' registrations before their fds close (the model's destroy):
 * KVM would otherwise keep signalling a recycled fd number. */
static void kernel_queues_off(struct vmm__virtio *t)
{
	const struct vmm__device_host *h = t->host;

	for (uint32_t q = 0; q < VMM_VIRTIO_QUEUES_MAX; q++) {
		if (t->kick_fd[q] < 0)
			continue;
		h->ioeventfd(h->ctx, t->base + REG_QUEUE_NOTIFY, 4, q, t->kick_fd[q], 0);
		h->irqfd(h->ctx, t->irq, t->call_fd[q], 0);
		t->kick_fd[q] = t->call_fd[q] = -1;
	}
	t->kernel_queues = 0;
}

static void virtio_destroy(void *dev)
{
	struct vmm__virtio *t = dev;

	if (t->model->quiesce)
		t->model->quiesce(t->mctx);
	kernel_queues_off(t);
	if (t->model->destroy)
		t->model->destroy(t->mctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void *vmm__virtio_model_of(struct vmm__virtio *t, const struct vmm__virtio_model *model)
{
	return t->model == model ? t->mctx : NULL;
}

struct vmm__virtio *vmm__virtio_at(const struct vmm__device_ops *ops, void *dev, uint32_t slot)
{
	struct vmm__virtio *t = dev;

	if (ops->destroy != virtio_destroy)
		return NULL; /* another kind of device: dev is not ours to read */
	return t->base == VMM_VIRTIO_MMIO_BASE + slot * VMM_VIRTIO_MMIO_SIZE ? t : NULL;
}

void vmm__virtio_info(struct vmm__virtio *t, struct vmm_device_info *info)
{
	uint32_t size = info->size;

	memset(info, 0, sizeof(*info));
	info->size = size;
	info->slot = (uint32_t)((t->base - VMM_VIRTIO_MMIO_BASE) / VMM_VIRTIO_MMIO_SIZE);
	info->kind = t->model->kind;
	pthread_mutex_lock(&t->lock);
	info->status = t->status;
	if (t->model->info)
		t->model->info(t->mctx, info);
	pthread_mutex_unlock(&t->lock);
}

/* One of the model's ownership hooks (NULL: nothing to do), under the transport's lock. */
static int model_hook(struct vmm__virtio *t, int (*hook)(void *model))
{
	int r;

	pthread_mutex_lock(&t->lock);
	r = hook ? hook(t->mctx) : 0;
	pthread_mutex_unlock(&t->lock);
	return r;
}

static int virtio_release(void *dev)
{
	struct vmm__virtio *t = dev;

	return model_hook(t, t->model->release);
}

static int virtio_acquire(void *dev)
{
	struct vmm__virtio *t = dev;

	return model_hook(t, t->model->acquire);
}

static int virtio_run(void *dev)
{
	struct vmm__virtio *t = dev;

	return t->model->run ? t->model->run(t->mctx, t) : 0;
}

static void virtio_quiesce(void *dev)
{
	struct vmm__virtio *t = dev;

	if (t->model->quiesce)
		t->model->quiesce(t->mctx);
}

static const struct vmm__device_ops virtio_ops_proto = {
	.flags = VMM__DEV_REQUIRED,
	.save = virtio_save,
	.load = virtio_load,
	.destroy = virtio_destroy,
	.release = virtio_release,
	.acquire = virtio_acquire,
	.run = virtio_run,
	.quiesce = virtio_quiesce,
};

int vmm__virtio_create(const struct vmm__device_host *host, uint32_t slot,
		       const struct vmm__virtio_model *model, void *model_ctx)
{
	return vmm__virtio_create_get(host, slot, model, model_ctx, NULL);
}

int vmm__virtio_create_get(const struct vmm__device_host *host, uint32_t slot,
			   const struct vmm__virtio_model *model, void *model_ctx,
			   struct vmm__virtio **out)
{
	struct vmm__virtio *t;
	int r;

	if (out)
		*out = NULL;
	if (slot >= VMM_VIRTIO_SLOTS) {
		if (model->destroy)
			model->destroy(model_ctx);
		return vmm__err(VMM_EINVAL, "more than %u virtio devices", VMM_VIRTIO_SLOTS);
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		if (model->destroy)
			model->destroy(model_ctx);
		return vmm__err(VMM_ENOMEM, "virtio device");
	}
	t->host = host;
	t->model = model;
	t->mctx = model_ctx;
	t->base = VMM_VIRTIO_MMIO_BASE + slot * VMM_VIRTIO_MMIO_SIZE;
	t->irq = VMM_VIRTIO_IRQ_BASE + slot;
	t->dev_features = (model->features ? model->features(model_ctx) : 0) |
			  (1ull << VIRTIO_F_VERSION_1);
	snprintf(t->name, sizeof(t->name), "virtio%u-%s", slot, model->kind);
	for (uint32_t q = 0; q < VMM_VIRTIO_QUEUES_MAX; q++)
		t->kick_fd[q] = t->call_fd[q] = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->ops = virtio_ops_proto;
	t->ops.name = t->name;
	r = vmm__devices_add(host->devices, &t->ops, t);
	if (r) {
		virtio_destroy(t);
		return r;
	}
	r = vmm__bus_add(host->mmio, t->base, VMM_VIRTIO_MMIO_SIZE, virtio_io, t);
	if (!r && out)
		*out = t;
	return r;
}
