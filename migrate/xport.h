/* Transport: an fd (socket or file) driven through io_uring. The stream and the snapshot
 * writer speak only to this; it knows nothing of VMs.
 *
 * Sequential I/O (sockets, or a file at a running offset) is done one request at a time,
 * each completely (short transfers are continued). Positional file writes can be queued,
 * many in flight, and are waited for with vmm__xport_drain(). Every wait is sliced so
 * that a timeout or a cancel flag set from another thread ends it promptly. */
#ifndef VMM_XPORT_H
#define VMM_XPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vmm__xport;

#define VMM_XPORT_QD 64

struct vmm__xport_opts {
	int is_file;        /* files: sequential I/O uses (and advances) an explicit offset */
	int timeout_ms;     /* max wait for one transfer to make progress; <= 0: forever */
	const int *cancel;  /* if non-NULL and set, waits end with VMM_ECANCELED */
};

/* Wraps fd (not owned: the caller closes it after vmm__xport_free). */
int vmm__xport_new(int fd, const struct vmm__xport_opts *opts, struct vmm__xport **out);
void vmm__xport_free(struct vmm__xport *xp);

/* Writes/reads all of iov sequentially. Errors: VMM_EPEER (closed, reset), VMM_ETRUNCATED
 * (end of file), VMM_ETIMEDOUT, VMM_ECANCELED, VMM_ENOSPC, VMM_EIO. */
int vmm__xport_writev(struct vmm__xport *xp, const struct iovec *iov, int iovcnt);
int vmm__xport_write(struct vmm__xport *xp, const void *buf, size_t len);
int vmm__xport_readv(struct vmm__xport *xp, const struct iovec *iov, int iovcnt);
int vmm__xport_read(struct vmm__xport *xp, void *buf, size_t len);

/* Files: the offset sequential I/O uses next. */
uint64_t vmm__xport_offset(const struct vmm__xport *xp);
void vmm__xport_seek(struct vmm__xport *xp, uint64_t off);

/* Queues a positional write of iov (which must stay valid until drained). A full queue
 * first waits for a slot. The first error of any queued write is returned by the next
 * queue or drain call. */
int vmm__xport_pwritev_queued(struct vmm__xport *xp, uint64_t off, const struct iovec *iov,
			      int iovcnt);
/* The same for a positional read into iov; a read that meets the end of the file fails
 * with VMM_ETRUNCATED. */
int vmm__xport_preadv_queued(struct vmm__xport *xp, uint64_t off, const struct iovec *iov,
			     int iovcnt);
/* Waits for every queued transfer. */
int vmm__xport_drain(struct vmm__xport *xp);

/* Sockets: waits until the kernel has put everything written on the wire (nothing left
 * unsent in the send queue), so that time measured includes the link and not just the
 * buffer.
 * Files: returns at once. Honours the timeout and the cancel flag. */
int vmm__xport_wait_sent(struct vmm__xport *xp);

/* Sockets: the lowest round-trip time the kernel has seen on the connection in ns
 * (TCP_INFO; its smoothed RTT where the kernel has no minimum), 0 if unknown. */
uint64_t vmm__xport_rtt_ns(const struct vmm__xport *xp);

/* Changes the timeout and cancel flag, e.g. to send a last error record briefly after
 * a cancel. */
void vmm__xport_set_opts(struct vmm__xport *xp, int timeout_ms, const int *cancel);

/* Runs every later sequential transfer through the TLS session c (tls.h), whose
 * handshake is done; the transport owns c from now on (freed with it). Sockets only: the
 * queued positional calls stay plain. */
struct vmm__tls_conn;
int vmm__xport_set_tls(struct vmm__xport *xp, struct vmm__tls_conn *c);
/* The session attached, or NULL. */
struct vmm__tls_conn *vmm__xport_tls(const struct vmm__xport *xp);

/* Bytes moved so far (both directions; with TLS, the stream's bytes before encryption). */
uint64_t vmm__xport_bytes(const struct vmm__xport *xp);

#endif
