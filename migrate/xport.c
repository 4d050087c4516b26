/* io_uring transport for sockets and files. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* glibc's struct tcp_info stops before tcpi_min_rtt */
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "libvmm/error_internal.h"
#include "migrate/tls.h"
#include "migrate/xport.h"

/* The kernel fills read buffers behind valgrind's back (io_uring has no system call per
 * read for it to watch): tell memcheck, when it is there, that they are now defined. */
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

static void mark_read(const struct iovec *iov, int cnt, size_t n)
{
	for (int i = 0; i < cnt && n; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;

		VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, k);
		n -= k;
	}
}

#define SLICE_MS 100 /* how often a wait looks at the cancel flag and the timeout */
#define MAX_IOV 260 /* a full RAM batch: headers plus one vector per page */

/* A queued positional write that may need continuing after a short write. */
struct pending {
	int used;
	int is_write;
	uint64_t off;
	struct iovec iov[MAX_IOV];
	int iovcnt;
};

struct vmm__xport {
	int fd;
	struct vmm__xport_opts opts;
	struct io_uring ring;
	uint64_t offset;
	uint64_t bytes;
	unsigned inflight;
	int deferred_err;
	struct vmm__tls_conn *tls; /* set: sequential I/O goes through TLS, not io_uring */
	uint8_t *tlsbuf;           /* gathers a writev into full TLS records */
	/* The queue (260 KiB), made by the first queued I/O: a socket's transport never
	 * queues, and a receiver opens one per connection (the receiver fuzzer, per input). */
	struct pending *slots;
};

/* 64 KiB per SSL_write: four full 16 KiB records per call, so a RAM batch of 4 KiB pages
 * is not cut into a record per page. */
#define TLSBUF_SIZE (64u << 10)

int vmm__xport_new(int fd, const struct vmm__xport_opts *opts, struct vmm__xport **out)
{
	struct vmm__xport *xp = calloc(1, sizeof(*xp));
	int r;

	if (!xp)
		return vmm__err(VMM_ENOMEM, "transport");
	xp->fd = fd;
	if (opts)
		xp->opts = *opts;
	r = io_uring_queue_init(VMM_XPORT_QD * 2, &xp->ring, 0);
	if (r < 0) {
		free(xp);
		errno = -r;
		return vmm__err_sys(VMM_ESYS, "io_uring_queue_init");
	}
	*out = xp;
	return 0;
}

void vmm__xport_free(struct vmm__xport *xp)
{
	if (!xp)
		return;
	vmm__xport_drain(xp);
	io_uring_queue_exit(&xp->ring);
	free(xp->slots);
	vmm__tls_conn_free(xp->tls);
	free(xp->tlsbuf);
	free(xp);
}

uint64_t vmm__xport_offset(const struct vmm__xport *xp)
{
	return xp->offset;
}

void vmm__xport_seek(struct vmm__xport *xp, uint64_t off)
{
	xp->offset = off;
}

uint64_t vmm__xport_bytes(const struct vmm__xport *xp)
{
	return xp->bytes;
}

static int canceled(const struct vmm__xport *xp)
{
	return xp->opts.cancel && __atomic_load_n(xp->opts.cancel, __ATOMIC_ACQUIRE);
}

static int errno_to_vmm(int e, const char *what)
{
	errno = e;
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		return vmm__err_sys(VMM_ENOSPC, what);
	case EPIPE:
	case ECONNRESET:
	case ECONNABORTED:
	case ENOTCONN:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ETIMEDOUT:
		return vmm__err_sys(VMM_EPEER, what);
	case ECANCELED:
		return vmm__err(VMM_ECANCELED, "%s: canceled", what);
	default:
		return vmm__err_sys(VMM_EIO, what);
	}
}

#define CANCEL_TAG ((void *)(uintptr_t)1)

/* Cancels every request in flight and reaps them all: their buffers must not be touched
 * by the kernel after we return. */
static void cancel_inflight(struct vmm__xport *xp)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&xp->ring);
	struct io_uring_cqe *cqe;

	if (sqe) {
		io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data(sqe, CANCEL_TAG);
		io_uring_submit(&xp->ring);
	}
	while (xp->inflight && io_uring_wait_cqe(&xp->ring, &cqe) == 0) {
		void *d = io_uring_cqe_get_data(cqe);

		io_uring_cqe_seen(&xp->ring, cqe);
		if (d == CANCEL_TAG)
			continue;
		if (d)
			((struct pending *)d)->used = 0;
		xp->inflight--;
	}
}

/* Waits for one completion in slices, so a cancel or a timeout ends the wait promptly. */
static int wait_cqe(struct vmm__xport *xp, struct io_uring_cqe **cqe, const char *what)
{
	int waited_ms = 0;

	for (;;) {
		struct __kernel_timespec ts = { 0, SLICE_MS * 1000000L };
		int r = io_uring_wait_cqe_timeout(&xp->ring, cqe, &ts);

		if (r == 0) {
			if (io_uring_cqe_get_data(*cqe) == CANCEL_TAG) {
				io_uring_cqe_seen(&xp->ring, *cqe);
				continue;
			}
			return 0;
		}
		if (r != -ETIME && r != -EINTR) {
			errno = -r;
			return vmm__err_sys(VMM_ESYS, "io_uring_wait_cqe");
		}
		waited_ms += SLICE_MS;
		if (canceled(xp)) {
			cancel_inflight(xp);
			return vmm__err(VMM_ECANCELED, "%s: canceled", what);
		}
		if (xp->opts.timeout_ms > 0 && waited_ms >= xp->opts.timeout_ms) {
			cancel_inflight(xp);
			return vmm__err(VMM_ETIMEDOUT, "%s: no progress for %d ms", what,
					xp->opts.timeout_ms);
		}
	}
}

/* Advances iov past n bytes; returns the new count. */
static int iov_advance(struct iovec *iov, int cnt, size_t n)
{
	int i = 0;

	while (i < cnt && n >= iov[i].iov_len)
		n -= iov[i++].iov_len;
	if (i < cnt) {
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
		iov[i].iov_len -= n;
	}
	memmove(iov, iov + i, (size_t)(cnt - i) * sizeof(*iov));
	return cnt - i;
}

int vmm__xport_set_tls(struct vmm__xport *xp, struct vmm__tls_conn *c)
{
	xp->tlsbuf = malloc(TLSBUF_SIZE);
	if (!xp->tlsbuf) {
		vmm__tls_conn_free(c);
		return vmm__err(VMM_ENOMEM, "TLS buffer");
	}
	xp->tls = c;
	return 0;
}

struct vmm__tls_conn *vmm__xport_tls(const struct vmm__xport *xp)
{
	return xp->tls;
}

/* Waits (one slice) for the socket to be ready as the TLS session asks. */
static int tls_wait(struct vmm__xport *xp, int *waited_ms, const char *what)
{
	struct pollfd p = { .fd = xp->fd, .events = vmm__tls_conn_events(xp->tls) };
	int r = poll(&p, 1, SLICE_MS);

	if (r < 0 && errno != EINTR)
		return vmm__err_sys(VMM_ESYS, "poll");
	if (r > 0)
		return 0;
	*waited_ms += SLICE_MS;
	if (canceled(xp))
		return vmm__err(VMM_ECANCELED, "%s: canceled", what);
	if (xp->opts.timeout_ms > 0 && *waited_ms >= xp->opts.timeout_ms)
		return vmm__err(VMM_ETIMEDOUT, "%s: no progress for %d ms", what,
				xp->opts.timeout_ms);
	return 0;
}

/* All of buf through the TLS session. A write that must wait is retried with the same
 * buffer and length, as OpenSSL requires. */
static int tls_all(struct vmm__xport *xp, uint8_t *buf, size_t len, int is_write)
{
	const char *what = is_write ? "write" : "read";
	int waited = 0;
	size_t pos = 0;

	while (pos < len) {
		size_t done;
		int r;

		if (canceled(xp))
			return vmm__err(VMM_ECANCELED, "%s: canceled", what);
		r = vmm__tls_conn_io(xp->tls, buf + pos, len - pos, is_write, &done);
		if (r < 0)
			return r;
		if (r == 0) {
			pos += done;
			xp->bytes += done;
			waited = 0;
			continue;
		}
		r = tls_wait(xp, &waited, what);
		if (r)
			return r;
	}
	return 0;
}

/* Reads decrypt straight into the caller's buffers (guest RAM for pages); writes gather
 * into full records first. */
static int tls_transfer(struct vmm__xport *xp, const struct iovec *iov, int iovcnt, int is_write)
{
	size_t fill = 0, off = 0;
	int i = 0, r;

	if (!is_write) {
		for (i = 0; i < iovcnt; i++) {
			r = tls_all(xp, iov[i].iov_base, iov[i].iov_len, 0);
			if (r)
				return r;
		}
		return 0;
	}
	while (i < iovcnt) {
		size_t k = iov[i].iov_len - off;

		if (k > TLSBUF_SIZE - fill)
			k = TLSBUF_SIZE - fill;
		memcpy(xp->tlsbuf + fill, (const uint8_t *)iov[i].iov_base + off, k);
		fill += k;
		off += k;
		if (off == iov[i].iov_len)
			i++, off = 0;
		if (fill == TLSBUF_SIZE || (i == iovcnt && fill)) {
			r = tls_all(xp, xp->tlsbuf, fill, 1);
			if (r)
				return r;
			fill = 0;
		}
	}
	return 0;
}

/* One sequential transfer, continued until complete. */
static int transfer(struct vmm__xport *xp, const struct iovec *iov_in, int iovcnt, int is_write)
{
	struct iovec iov[MAX_IOV];
	const char *what = is_write ? "write" : "read";
	int r;

	if (xp->tls)
		return tls_transfer(xp, iov_in, iovcnt, is_write);
	if (xp->inflight) {
		r = vmm__xport_drain(xp);
		if (r)
			return r;
	}
	while (iovcnt > MAX_IOV) { /* rare: split large vectors */
		r = transfer(xp, iov_in, MAX_IOV, is_write);
		if (r)
			return r;
		iov_in += MAX_IOV;
		iovcnt -= MAX_IOV;
	}
	memcpy(iov, iov_in, (size_t)iovcnt * sizeof(*iov));
	iovcnt = iov_advance(iov, iovcnt, 0); /* drops empty leading vectors */
	while (iovcnt > 0) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&xp->ring);
		struct io_uring_cqe *cqe;
		struct msghdr msg;
		uint64_t off = xp->opts.is_file ? xp->offset : (uint64_t)-1;
		int res;

		if (canceled(xp))
			return vmm__err(VMM_ECANCELED, "%s: canceled", what);
		if (is_write && !xp->opts.is_file) {
			/* sendmsg, not writev: MSG_NOSIGNAL turns a vanished peer into EPIPE instead
			 * of a SIGPIPE that would kill the embedding process. */
			msg = (struct msghdr){ .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
			io_uring_prep_sendmsg(sqe, xp->fd, &msg, MSG_NOSIGNAL);
		} else if (is_write) {
			io_uring_prep_writev(sqe, xp->fd, iov, (unsigned)iovcnt, off);
		} else {
			io_uring_prep_readv(sqe, xp->fd, iov, (unsigned)iovcnt, off);
		}
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_submit(&xp->ring);
		xp->inflight = 1;
		r = wait_cqe(xp, &cqe, what);
		if (r)
			return r;
		res = cqe->res;
		io_uring_cqe_seen(&xp->ring, cqe);
		xp->inflight = 0;
		if (res == -EINTR || res == -EAGAIN)
			continue;
		if (res < 0)
			return errno_to_vmm(-res, what);
		if (res == 0)
			return is_write ? vmm__err(VMM_EIO, "write: no progress")
			       : xp->opts.is_file
				       ? vmm__err(VMM_ETRUNCATED, "read: end of file at offset %llu",
						  (unsigned long long)xp->offset)
				       : vmm__err(VMM_EPEER, "read: the peer closed the connection");
		xp->bytes += (uint64_t)res;
		xp->offset += (uint64_t)res;
		if (!is_write)
			mark_read(iov, iovcnt, (size_t)res);
		iovcnt = iov_advance(iov, iovcnt, (size_t)res);
	}
	return 0;
}

int vmm__xport_writev(struct vmm__xport *xp, const struct iovec *iov, int iovcnt)
{
	return transfer(xp, iov, iovcnt, 1);
}

int vmm__xport_write(struct vmm__xport *xp, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return transfer(xp, &iov, 1, 1);
}

int vmm__xport_readv(struct vmm__xport *xp, const struct iovec *iov, int iovcnt)
{
	return transfer(xp, iov, iovcnt, 0);
}

int vmm__xport_read(struct vmm__xport *xp, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return transfer(xp, &iov, 1, 0);
}

static void submit_pending(struct vmm__xport *xp, struct pending *p)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&xp->ring);

	if (p->is_write)
		io_uring_prep_writev(sqe, xp->fd, p->iov, (unsigned)p->iovcnt, p->off);
	else
		io_uring_prep_readv(sqe, xp->fd, p->iov, (unsigned)p->iovcnt, p->off);
	io_uring_sqe_set_data(sqe, p);
	io_uring_submit(&xp->ring);
	xp->inflight++;
}

/* Reaps one queued completion, resubmitting the rest of a short transfer. */
static int reap_one(struct vmm__xport *xp)
{
	struct io_uring_cqe *cqe;
	struct pending *p;
	int res, r = wait_cqe(xp, &cqe, "queued I/O");

	if (r)
		return r;
	p = io_uring_cqe_get_data(cqe);
	res = cqe->res;
	io_uring_cqe_seen(&xp->ring, cqe);
	xp->inflight--;
	if (!p)
		return 0;
	if (res == -EINTR || res == -EAGAIN || res > 0) {
		if (res > 0) {
			xp->bytes += (uint64_t)res;
			p->off += (uint64_t)res;
			if (!p->is_write)
				mark_read(p->iov, p->iovcnt, (size_t)res);
			p->iovcnt = iov_advance(p->iov, p->iovcnt, (size_t)res);
		}
		if (p->iovcnt > 0) {
			submit_pending(xp, p);
			return 0;
		}
		p->used = 0;
		return 0;
	}
	p->used = 0;
	if (!xp->deferred_err)
		xp->deferred_err =
			res < 0 ? errno_to_vmm(-res, p->is_write ? "write" : "read")
			: p->is_write ? vmm__err(VMM_EIO, "write: no progress")
				      : vmm__err(VMM_ETRUNCATED, "read: end of file at offset %llu",
						 (unsigned long long)p->off);
	return 0;
}

static int queue_io(struct vmm__xport *xp, uint64_t off, const struct iovec *iov, int iovcnt,
		    int is_write)
{
	struct pending *p = NULL;
	int r;

	if (iovcnt > MAX_IOV)
		return vmm__err(VMM_EINVAL, "queued I/O of %d vectors", iovcnt);
	if (!xp->slots && !(xp->slots = calloc(VMM_XPORT_QD, sizeof(*xp->slots))))
		return vmm__err(VMM_ENOMEM, "transport queue");
	while (!p) {
		if (xp->deferred_err)
			return xp->deferred_err;
		for (int i = 0; i < VMM_XPORT_QD && !p; i++)
			if (!xp->slots[i].used)
				p = &xp->slots[i];
		if (!p) {
			r = reap_one(xp);
			if (r)
				return r;
		}
	}
	p->used = 1;
	p->is_write = is_write;
	p->off = off;
	p->iovcnt = iovcnt;
	memcpy(p->iov, iov, (size_t)iovcnt * sizeof(*iov));
	submit_pending(xp, p);
	return 0;
}

int vmm__xport_pwritev_queued(struct vmm__xport *xp, uint64_t off, const struct iovec *iov,
			      int iovcnt)
{
	return queue_io(xp, off, iov, iovcnt, 1);
}

int vmm__xport_preadv_queued(struct vmm__xport *xp, uint64_t off, const struct iovec *iov,
			     int iovcnt)
{
	return queue_io(xp, off, iov, iovcnt, 0);
}

int vmm__xport_drain(struct vmm__xport *xp)
{
	int r;

	while (xp->inflight) {
		r = reap_one(xp);
		if (r)
			return r;
	}
	r = xp->deferred_err;
	xp->deferred_err = 0;
	return r;
}

int vmm__xport_wait_sent(struct vmm__xport *xp)
{
	struct timespec ms = { 0, 1000000 };
	int waited_us = 0, queued;

	if (xp->opts.is_file)
		return 0;
	for (;;) {
		/* Unsent, not unacknowledged: waiting for the ACK of the last segment would add
		 * the peer's delayed-ACK timer (~40 ms) to every round. */
		if (ioctl(xp->fd, SIOCOUTQNSD, &queued) < 0)
			return vmm__err_sys(VMM_EIO, "SIOCOUTQNSD");
		if (!queued)
			return 0;
		if (canceled(xp))
			return vmm__err(VMM_ECANCELED, "write: canceled");
		if (xp->opts.timeout_ms > 0 && waited_us / 1000 >= xp->opts.timeout_ms)
			return vmm__err(VMM_ETIMEDOUT, "write: %d bytes unsent after %d ms",
					queued, xp->opts.timeout_ms);
		nanosleep(&ms, NULL);
		waited_us += 1000;
	}
}

void vmm__xport_set_opts(struct vmm__xport *xp, int timeout_ms, const int *cancel)
{
	xp->opts.timeout_ms = timeout_ms;
	xp->opts.cancel = cancel;
}

uint64_t vmm__xport_rtt_ns(const struct vmm__xport *xp)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (xp->opts.is_file || getsockopt(xp->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	/* The smoothed RTT of a connection that has been carrying pages includes the time
	 * they queued in socket buffers and ACKs the receiver delayed; what the downtime
	 * estimate needs is the round trip of small records on an idle link, as the hand-over's
	 * records make it: the lowest RTT seen. */
	if (len >= offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt) &&
	    ti.tcpi_min_rtt && ti.tcpi_min_rtt != ~0u)
		return (uint64_t)ti.tcpi_min_rtt * 1000;
	return (uint64_t)ti.tcpi_rtt * 1000;
}
