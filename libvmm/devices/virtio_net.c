/* virtio-net on a tap fd (virtio_net.h). Frames move through bounce buffers, guest RAM
 * being touched only through the transport's checked copies; the RX thread takes the
 * transport's lock only around one frame's pop, copy and push, never while it waits. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "devices.pb-c.h"
#include "vmm/devices.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/devices/virtio_net.h"
#include "libvmm/error_internal.h"
#include "libvmm/sandbox.h"

#define NET_F_MAC 5
#define NET_F_STATUS 16
#define NET_S_LINK_UP 1

#define Q_RX 0
#define Q_TX 1

/* struct virtio_net_hdr_v1 (VERSION_1 always has num_buffers): flags, gso_type, hdr_len,
 * gso_size, csum_start, csum_offset, num_buffers. */
#define HDR 12
#define NUM_BUFFERS_AT 10
/* The largest frame taken either way: a tap without offloads gives at most its MTU, and
 * 64 KiB covers any MTU Linux allows on one. */
#define FRAME_MAX 65536

struct net {
	int fd;      /* our duplicate of the embedder's */
	int wake;    /* eventfd: RX buffers added (the driver notified queue 0), or quiesce */
	uint8_t mac[6];
	int mac_given;
	int announce; /* a saved guest was loaded: tell the network where it now is at run */
	struct vmm__virtio *t;
	/* Held by run and quiesce, which a pause, a resume, a wait and destroy may call from
	 * different threads; never taken by the RX thread. */
	pthread_mutex_t life;
	pthread_t thread;
	int running;
	int stop; /* atomic: the RX thread returns */
	/* The transport's lock covers these: counters and the TX path's request and buffer. */
	uint64_t rx_frames, tx_frames, rx_bytes, tx_bytes, drops;
	struct vmm__virtio_req txreq;
	uint8_t txbuf[FRAME_MAX];
	/* The RX thread's own: a frame read from the fd and not yet given to the guest
	 * (pending bytes after the header), and the request it goes into (used under the
	 * lock). */
	size_t pending;
	struct vmm__virtio_req rxreq;
	uint8_t rxbuf[HDR + FRAME_MAX];
};

static void tx(struct net *n, struct vmm__virtio *t)
{
	int got;

	while ((got = vmm__virtio_pop(t, Q_TX, &n->txreq)) == 1) {
		uint64_t len = n->txreq.rlen;
		ssize_t w;

		if (len < HDR) {
			vmm__virtio_fail(t, "net TX request shorter than its header");
			return;
		}
		len -= HDR;
		if (len > FRAME_MAX) {
			n->drops++;
			vmm__virtio_push(t, Q_TX, &n->txreq, 0);
			continue;
		}
		if (vmm__virtio_gather(t, &n->txreq, HDR, n->txbuf, (size_t)len))
			return;
		do
			w = write(n->fd, n->txbuf, (size_t)len);
		while (w < 0 && errno == EINTR);
		if (w == (ssize_t)len) {
			n->tx_frames++;
			n->tx_bytes += len;
		} else {
			n->drops++; /* the tap's queue is full, or the link is down: a lost frame */
		}
		vmm__virtio_push(t, Q_TX, &n->txreq, 0);
	}
}

static void wake(struct net *n)
{
	uint64_t one = 1;

	/* A full counter (never, at 2^64 - 2) would still leave the thread woken. */
	if (write(n->wake, &one, sizeof(one)) < 0)
		return;
}

static void net_notify(void *model, struct vmm__virtio *t, uint32_t q)
{
	struct net *n = model;

	if (q == Q_TX)
		tx(n, t);
	else
		wake(n); /* new receive buffers: the RX thread may be waiting for them */
}

/* Gives the pending frame to the guest: 1 done (delivered or dropped), 0 no buffer yet. */
static int deliver(struct net *n)
{
	struct vmm__virtio *t = n->t;
	size_t len = HDR + n->pending;
	int got, done = 1;

	vmm__virtio_lock(t);
	got = vmm__virtio_pop(t, Q_RX, &n->rxreq);
	if (got == 1) {
		if (n->rxreq.wlen < len) {
			/* Buffers sized for a smaller MTU: the frame is dropped, the buffer
			 * returned empty (Linux counts a length error and reuses it). */
			n->drops++;
			vmm__virtio_push(t, Q_RX, &n->rxreq, 0);
		} else if (!vmm__virtio_scatter(t, &n->rxreq, 0, n->rxbuf, len)) {
			vmm__virtio_push(t, Q_RX, &n->rxreq, (uint32_t)len);
			n->rx_frames++;
			n->rx_bytes += n->pending;
		}
	} else if (got == 0) {
		done = 0;
	} else {
		n->drops++; /* the driver broke the rules: the device waits for a reset */
	}
	vmm__virtio_unlock(t);
	return done;
}

static void drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return; /* nothing to drain */
}

static void *rx_main(void *arg)
{
	struct net *n = arg;

	if (vmm__sandbox_thread(VMM_THREAD_DEVICE, "vmm-net-rx"))
		return NULL; /* unconfined it may not run: the guest receives nothing */
	while (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE)) {
		/* With a frame in hand only new buffers (or a quiesce) matter. */
		struct pollfd p[2] = { { n->wake, POLLIN, 0 }, { n->fd, POLLIN, 0 } };
		ssize_t r;

		if (n->pending && deliver(n)) {
			n->pending = 0;
			continue;
		}
		if (poll(p, n->pending ? 1 : 2, -1) < 0)
			continue; /* EINTR */
		if (p[0].revents)
			drain(n->wake);
		if (n->pending || !(p[1].revents & POLLIN))
			continue;
		r = read(n->fd, n->rxbuf + HDR, FRAME_MAX);
		if (r > 0)
			n->pending = (size_t)r;
	}
	return NULL;
}

/* What QEMU's announce-self sends for a guest that arrived: a RARP request from the
 * guest's MAC to everyone, so that switches learn its new port before the guest speaks
 * (the guest is not asked to: no VIRTIO_NET_F_GUEST_ANNOUNCE). Best effort, once. */
static void announce(struct net *n)
{
	uint8_t f[60] = { 0 };
	static const uint8_t rarp[] = { 0x80, 0x35, 0, 1, 0x08, 0x00, 6, 4, 0, 3 };

	memset(f, 0xff, 6);
	memcpy(f + 6, n->mac, 6);
	memcpy(f + 12, rarp, sizeof(rarp));
	memcpy(f + 22, n->mac, 6); /* sender hardware address; protocol address 0 */
	memcpy(f + 32, n->mac, 6); /* target hardware address; protocol address 0 */
	if (write(n->fd, f, sizeof(f)) != (ssize_t)sizeof(f))
		return; /* the link is down or full: the guest's own next frame does the same */
}

static int net_run(void *model, struct vmm__virtio *t)
{
	struct net *n = model;
	sigset_t all, old;
	int e;

	pthread_mutex_lock(&n->life);
	if (n->running) {
		pthread_mutex_unlock(&n->life);
		return 0;
	}
	if (n->announce) {
		announce(n);
		n->announce = 0;
	}
	n->t = t;
	__atomic_store_n(&n->stop, 0, __ATOMIC_RELEASE);
	/* Signals go to the embedder's threads, never to this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&n->thread, NULL, rx_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	n->running = !e;
	pthread_mutex_unlock(&n->life);
	return e ? vmm__err(VMM_ESYS, "virtio-net RX thread: %s", strerror(e)) : 0;
}

static void net_quiesce(void *model)
{
	struct net *n = model;

	pthread_mutex_lock(&n->life);
	if (n->running) {
		__atomic_store_n(&n->stop, 1, __ATOMIC_RELEASE);
		wake(n);
		pthread_join(n->thread, NULL);
		n->running = 0;
		drain(n->wake);
	}
	pthread_mutex_unlock(&n->life);
}

static uint64_t net_features(void *model)
{
	(void)model;
	return (1ull << NET_F_MAC) | (1ull << NET_F_STATUS);
}

/* struct virtio_net_config up to status: mac[6], status. */
static void net_config_read(void *model, uint32_t off, uint8_t *data, uint32_t size)
{
	const struct net *n = model;
	uint8_t cfg[8];
	uint16_t status = NET_S_LINK_UP;

	memcpy(cfg, n->mac, 6);
	memcpy(cfg + 6, &status, 2);
	memcpy(data, cfg + off, size);
}

static int net_save(void *model, uint8_t **buf, size_t *len)
{
	const struct net *n = model;
	Vmm__Devices__VirtioNet m = VMM__DEVICES__VIRTIO_NET__INIT;

	m.has_mac = 1, m.mac.data = (uint8_t *)n->mac, m.mac.len = 6;
	*len = vmm__devices__virtio_net__get_packed_size(&m);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		return vmm__err(VMM_ENOMEM, "virtio-net state");
	vmm__devices__virtio_net__pack(&m, *buf);
	return 0;
}

/* The guest knows its MAC: a restore into a device given another one is refused; one
 * whose MAC was made up takes the guest's. */
static int net_load_check(void *model, const uint8_t *buf, size_t len)
{
	struct net *n = model;
	Vmm__Devices__VirtioNet *m = buf ? vmm__devices__virtio_net__unpack(NULL, len, buf) : NULL;
	int r = 0;

	if (!m || !m->has_mac || m->mac.len != 6)
		r = vmm__err(VMM_ESTATEDATA, "virtio-net: state missing or does not parse");
	else if (!n->mac_given)
		memcpy(n->mac, m->mac.data, 6);
	else if (memcmp(n->mac, m->mac.data, 6))
		r = vmm__err(VMM_ESTATEDATA, "virtio-net: the guest was saved with another MAC "
			     "address than this device's");
	if (m)
		vmm__devices__virtio_net__free_unpacked(m, NULL);
	n->announce = !r;
	return r;
}

static void net_info(void *model, struct vmm_device_info *info)
{
	const struct net *n = model;

	info->requests = n->rx_frames + n->tx_frames;
	info->errors = n->drops;
	info->bytes_read = n->rx_bytes;     /* read from the tap, given to the guest */
	info->bytes_written = n->tx_bytes;  /* the guest's, written to the tap */
	memcpy(info->mac, n->mac, 6);
}

static void net_destroy(void *model)
{
	struct net *n = model;

	net_quiesce(n); /* the transport quiesces first; a failed create comes here directly */
	if (n->fd >= 0)
		close(n->fd);
	if (n->wake >= 0)
		close(n->wake);
	pthread_mutex_destroy(&n->life);
	free(n);
}

static const struct vmm__virtio_model net_model = {
	.kind = "net",
	.device_id = 1,
	.nqueues = 2,
	.features = net_features,
	.config_len = 8,
	.config_read = net_config_read,
	.notify = net_notify,
	.save = net_save,
	.load_check = net_load_check,
	.destroy = net_destroy,
	.info = net_info,
	.run = net_run,
	.quiesce = net_quiesce,
};

static int net_open(struct net *n, int fd)
{
	struct ifreq ifr;
	int fl;

	if (fd < 0 || fcntl(fd, F_GETFL) < 0)
		return vmm__err(VMM_EINVAL, "net: fd %d is not open", fd);
	/* A tap that adds its own header would shift every frame by 10 or 12 bytes. */
	memset(&ifr, 0, sizeof(ifr));
	if (!ioctl(fd, TUNGETIFF, &ifr) && (ifr.ifr_flags & (IFF_VNET_HDR | IFF_TUN)))
		return vmm__err(VMM_EINVAL, "net: the tap must be IFF_TAP without IFF_VNET_HDR");
	n->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (n->fd < 0)
		return vmm__err(VMM_ESYS, "net: dup: %s", strerror(errno));
	fl = fcntl(n->fd, F_GETFL);
	if (fl < 0 || fcntl(n->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return vmm__err(VMM_ESYS, "net: O_NONBLOCK: %s", strerror(errno));
	n->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake < 0)
		return vmm__err(VMM_ESYS, "net: eventfd: %s", strerror(errno));
	return 0;
}

int vmm__virtio_net_create(const struct vmm__device_host *host, uint32_t slot, int fd,
			   const uint8_t *mac)
{
	struct net *n = calloc(1, sizeof(*n));
	int r;

	if (!n)
		return vmm__err(VMM_ENOMEM, "virtio-net");
	n->fd = n->wake = -1;
	pthread_mutex_init(&n->life, NULL);
	r = net_open(n, fd);
	if (r) {
		net_destroy(n);
		return r;
	}
	if (mac) {
		memcpy(n->mac, mac, 6);
		n->mac_given = 1;
	} else if (getrandom(n->mac, 6, 0) != 6) {
		n->mac[5] = (uint8_t)slot;
	}
	n->rxbuf[NUM_BUFFERS_AT] = 1; /* the header in front of every frame; the rest is 0 */
	/* Unicast, locally administered (the 02 bit), as made-up addresses must be. */
	if (!n->mac_given)
		n->mac[0] = (uint8_t)((n->mac[0] & 0xfc) | 0x02);
	return vmm__virtio_create(host, slot, &net_model, n);
}
