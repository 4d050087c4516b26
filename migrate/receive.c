/* The receiving side of a live migration (protocol.h): accept, check the hello, build an
 * empty VM of the sender's shape, apply RAM batches straight into its memory (one thread
 * per connection), apply the machine state, answer READY, and start the VM on GO. The
 * stream is hostile input: every record is checked, and on any failure before READY the
 * half-built VM is destroyed and the sender told why; after READY an unclear outcome keeps
 * the VM, paused and in doubt. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "libvmm/clock.h"
#include "libvmm/sandbox.h"
#include "libvmm/error_internal.h"
#include "libvmm/kvm.h"
#include "libvmm/opts.h"
#include "libvmm/memory.h"
#include "migrate/protocol.h"
#include "migrate/ram.h"
#include "migrate/disk_stream.h"
#include "migrate/rx_populate.h"
#include "migrate/stream.h"
#include "migrate/tls.h"
#include "stream.pb-c.h"
#include "libvmm/vm_move.h"
#include "migrate/vm_shape.h"
#include "vmm/migrate.h"

struct rconn {
	struct receiver *rv;
	int fd;
	struct vmm__xport *xp;
	struct vmm__ram_rx *rx;
	pthread_t thread;
	int started;
	int err;
	char detail[256];
};

/* Connections accepted but not yet seen to start with the stream magic (with TLS: not
 * yet authenticated, or authenticated without their magic yet). */
#define PENDING_MAX 8

struct pending {
	int fd;
	uint64_t since_ns;
	struct vmm__tls_conn *tls; /* with TLS: the session, from the peer's first byte */
	int authed;                /* its handshake is done: the peer authenticated */
	int closing;               /* refused: our last word sent, waiting for its close */
};

/* How long a refused peer gets to read our alert or ERROR record and close: closing at
 * once with its bytes unread would reset the connection, and a reset can overtake what
 * we said, leaving the peer with "connection reset" instead of the reason. */
#define LINGER_NS 1000000000ull

struct receiver {
	struct vmm_receive_opts o;
	struct vmm_vm *vm;
	unsigned n;
	struct rconn c[VMM_MIGRATE_MAX_CONNS];
	int abort; /* a connection failed: the others stop waiting */
	ProtobufCBinaryData session;
	uint8_t session_buf[64];
	struct pending pend[PENDING_MAX];
	unsigned npend;
	struct vmm__tls *tls;      /* NULL: plain TCP */
	struct vmm__tls_conn *handed; /* accept_stream's session for the fd it returns */
	struct vmm__rx_populate *pop; /* populate-ahead during the RAM phase (NULL: none) */
	struct vmm__disk_rx *disks; /* the source copies its disks (VMM_FEAT_DISKS) */
};

void vmm_receive_opts_init(struct vmm_receive_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->timeout_ms = 10000;
}

/* Opens the transport of the connection accept_stream just handed over, with its TLS
 * session if there is one (the transport owns it from here). */
static int conn_open(struct receiver *rv, struct rconn *c, int fd)
{
	struct vmm__xport_opts xo = { .timeout_ms = rv->o.timeout_ms, .cancel = &rv->abort };
	struct vmm__tls_conn *t = rv->handed;
	int one = 1, r;

	rv->handed = NULL;
	c->rv = rv;
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	r = vmm__xport_new(fd, &xo, &c->xp);
	if (r) {
		vmm__tls_conn_free(t);
		return r;
	}
	return t ? vmm__xport_set_tls(c->xp, t) : 0;
}

static void rv_log(struct receiver *rv, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void rv_log(struct receiver *rv, int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!rv->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rv->o.log(rv->o.log_opaque, level, msg);
}

static void pending_drop(struct receiver *rv, unsigned i, const char *why)
{
	rv_log(rv, VMM_LOG_WARN, "migration receiver: dropped a connection: %s", why);
	vmm__tls_conn_free(rv->pend[i].tls);
	close(rv->pend[i].fd);
	rv->pend[i] = rv->pend[--rv->npend];
}

/* Drops a connection whose peer was told why (a TLS alert, an ERROR record): logged now,
 * then our side is shut and what the peer still sends is read and discarded until it
 * closes or LINGER_NS pass (pending_linger). */
static void pending_refuse(struct receiver *rv, unsigned i, const char *why)
{
	struct pending *p = &rv->pend[i];

	rv_log(rv, VMM_LOG_WARN, "migration receiver: dropped a connection: %s", why);
	vmm__tls_conn_free(p->tls);
	p->tls = NULL;
	shutdown(p->fd, SHUT_WR);
	p->closing = 1;
	p->since_ns = vmm__now_ns();
}

/* A refused connection: -1 once gone (the peer closed, or LINGER_NS passed), else 0. */
static int pending_linger(struct receiver *rv, unsigned i)
{
	char buf[4096];
	ssize_t n;

	do
		n = recv(rv->pend[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
	while (n > 0);
	if ((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) &&
	    vmm__now_ns() - rv->pend[i].since_ns < LINGER_NS)
		return 0;
	close(rv->pend[i].fd);
	rv->pend[i] = rv->pend[--rv->npend];
	return -1;
}

/* A libvmm peer on the other side of a TLS mismatch is told so in clear (an ERROR
 * record, VMM_ETLS, where it waits for the HELLO_REPLY or its handshake), so that it
 * fails at once and says why, then dropped. */
static void pending_refuse_tls(struct receiver *rv, unsigned i, const char *why)
{
	uint8_t buf[512];
	size_t n = vmm__stream_error_bytes(VMM_ETLS, why, buf, sizeof(buf));

	if (n && send(rv->pend[i].fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		n = 0; /* best effort: it is dropped either way */
	pending_refuse(rv, i, why);
}

/* The stream magic seen in the first bytes n of buf: 1 all 8 there, 0 not yet, -1 not
 * the magic (dropped). */
static int magic_check(struct receiver *rv, unsigned i, const char *buf, ssize_t n)
{
	if (memcmp(buf, VMM_STREAM_MAGIC, (size_t)n)) {
		pending_drop(rv, i, "not a libvmm migration stream");
		return -1;
	}
	return n == 8;
}

/* With TLS: the first byte must open a handshake; then the handshake is stepped without
 * blocking whenever the socket is ready; once the peer has authenticated, its first
 * decrypted bytes must be the magic. Nothing else is read or allocated for it before. */
static int pending_check_tls(struct receiver *rv, unsigned i)
{
	struct pending *p = &rv->pend[i];
	char buf[8];
	int r;

	if (!p->tls) {
		ssize_t n = recv(p->fd, buf, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n <= 0) {
			pending_drop(rv, i, "closed before its TLS handshake");
			return -1;
		}
		if (buf[0] == VMM_STREAM_MAGIC[0]) {
			pending_refuse_tls(rv, i, "this receiver requires TLS (vmm migrate "
					   "--tls-dir or --psk-file): a plain libvmm stream");
			return 0;
		}
		if (buf[0] != 0x16) {
			pending_drop(rv, i, "not a TLS handshake");
			return -1;
		}
		if (vmm__tls_conn_new(rv->tls, p->fd, &p->tls)) {
			pending_drop(rv, i, vmm_last_error());
			return -1;
		}
	}
	if (!p->authed) {
		r = vmm__tls_conn_step(p->tls);
		if (r < 0) {
			char why[300];

			/* OpenSSL has sent the peer its alert: let it read it. */
			snprintf(why, sizeof(why), "%s: %s", vmm_err_name(r), vmm_last_error());
			pending_refuse(rv, i, why);
			return 0;
		}
		if (!r)
			return 0;
		p->authed = 1;
	}
	r = vmm__tls_conn_peek(p->tls, buf, sizeof(buf));
	if (r < 0) {
		pending_drop(rv, i, vmm_last_error());
		return -1;
	}
	return r ? magic_check(rv, i, buf, r) : 0;
}

/* Whether a pending connection's first bytes are the stream magic: 1 yes (all 8 there),
 * 0 not yet, -1 dropped. Peeked, not read: the stream reader reads the preamble itself. */
static int pending_check(struct receiver *rv, unsigned i)
{
	char buf[8];
	ssize_t n;

	if (rv->pend[i].closing)
		return pending_linger(rv, i);
	if (rv->tls)
		return pending_check_tls(rv, i);
	n = recv(rv->pend[i].fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n <= 0) {
		pending_drop(rv, i, n ? "error before its preamble" : "closed before its preamble");
		return -1;
	}
	/* A TLS handshake record (0x16, version 3.x): a source with TLS meets a receiver
	 * without. */
	if (n >= 2 && buf[0] == 0x16 && buf[1] == 0x03) {
		pending_refuse_tls(rv, i, "this receiver does not use TLS (vmm receive --tls-dir "
				   "or --psk-file): a TLS handshake");
		return 0;
	}
	return magic_check(rv, i, buf, n);
}

/* Waits for a connection that starts with the stream magic, until deadline_ns (0: no
 * deadline), and hands it over in *fd. Anything else that connects meanwhile (a port
 * scanner, a health check, a confused client) is dropped, not fatal: it must not cost the
 * real source its migration. Strays are watched together with the listening socket, so a
 * silent one cannot hold the source up; each gets timeout_ms to show its magic. */
static int accept_stream(struct receiver *rv, int lfd, uint64_t deadline_ns, int *fd)
{
	uint64_t stray_ns = rv->o.timeout_ms > 0 ? (uint64_t)rv->o.timeout_ms * 1000000ull
						  : 10000000000ull;

	for (;;) {
		struct pollfd p[1 + PENDING_MAX];
		uint64_t now = vmm__now_ns(), wake = deadline_ns, limit;
		int partial = 0, timeout, r;

		for (unsigned i = 0; i < rv->npend;) {
			r = pending_check(rv, i);
			if (r > 0) {
				*fd = rv->pend[i].fd;
				rv->handed = rv->pend[i].tls;
				rv->pend[i] = rv->pend[--rv->npend];
				return 0;
			}
			if (r < 0)
				continue;
			limit = rv->pend[i].closing ? LINGER_NS : stray_ns;
			if (!rv->pend[i].closing && now - rv->pend[i].since_ns >= limit) {
				pending_drop(rv, i, "silent before its preamble");
				continue;
			}
			if (!wake || rv->pend[i].since_ns + limit < wake)
				wake = rv->pend[i].since_ns + limit;
			i++;
		}
		if (deadline_ns && now >= deadline_ns)
			return vmm__err(VMM_ETIMEDOUT, "no migration stream connected in time");
		p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (unsigned i = 0; i < rv->npend; i++) {
			char c;
			int got;

			/* A TLS session consumes what arrives: poll for what it waits on; a
			 * refused connection is drained as data comes. */
			if (rv->pend[i].closing) {
				p[1 + i] = (struct pollfd){ .fd = rv->pend[i].fd, .events = POLLIN };
				continue;
			}
			if (rv->pend[i].tls) {
				p[1 + i] = (struct pollfd){ .fd = rv->pend[i].fd,
							    .events = vmm__tls_conn_events(rv->pend[i].tls) };
				continue;
			}
			/* A partial magic stays readable: poll would spin on it, so it is
			 * re-peeked on a short timer instead. */
			got = (int)recv(rv->pend[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
			partial |= got > 0;
			p[1 + i] = (struct pollfd){ .fd = got > 0 ? -1 : rv->pend[i].fd,
						    .events = POLLIN };
		}
		timeout = wake ? (int)((wake - now + 999999) / 1000000) : -1;
		if (partial && (timeout < 0 || timeout > 10))
			timeout = 10;
		r = poll(p, 1 + rv->npend, timeout);
		if (r < 0 && errno != EINTR)
			return vmm__err_sys(VMM_ESYS, "poll");
		if (r > 0 && (p[0].revents & POLLIN)) {
			int nfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (nfd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				return vmm__err_sys(VMM_ESYS, "accept");
			if (nfd >= 0) {
				if (rv->npend == PENDING_MAX) {
					unsigned old = 0;

					for (unsigned i = 1; i < rv->npend; i++)
						if (rv->pend[i].since_ns < rv->pend[old].since_ns)
							old = i;
					pending_drop(rv, old, "too many connections without a preamble");
				}
				rv->pend[rv->npend++] = (struct pending){ .fd = nfd, .since_ns = vmm__now_ns() };
			}
		}
	}
}

/* Closes a connection that spoke the stream but belongs to no migration accepted here,
 * telling its sender why. */
static void stray_stream(struct receiver *rv, struct rconn *c, const char *why)
{
	rv_log(rv, VMM_LOG_WARN, "migration receiver: dropped a connection: %s", why);
	vmm__stream_send_error(c->xp, VMM_EPROTO, why);
	vmm__xport_free(c->xp);
	close(c->fd);
	memset(c, 0, sizeof(*c));
}

/* This host's memory available for a new VM (MemAvailable), 0 if unknown. */
static uint64_t host_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kib = 0;
	char line[128];
	struct sysinfo si;

	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
				break;
		fclose(f);
	}
	if (kib)
		return (uint64_t)kib << 10;
	/* Kernels before 3.14: free memory and buffers, an underestimate. */
	if (!sysinfo(&si))
		return ((uint64_t)si.freeram + si.bufferram) * si.mem_unit;
	return 0;
}

/* What this host takes: memory up to max_mem_size (default: what is available now) and
 * vCPUs up to max_vcpus (default: what KVM recommends here). Checked before anything is
 * built, so a refusal costs nothing and the source keeps running. */
static int check_limits(const struct receiver *rv, const Vmm__Stream__VmShape *s)
{
	uint64_t max = rv->o.max_mem_size;
	uint32_t rec, hard, cap;
	int r;

	if (!max) {
		uint64_t avail = host_mem_available();

		if (avail && s->mem_size > avail)
			return vmm__err(VMM_ESHAPE,
					"VM of %llu MiB is larger than the %llu MiB available on "
					"this host (max_mem_size, vmm receive --max-mem, raise it)",
					(unsigned long long)(s->mem_size >> 20),
					(unsigned long long)(avail >> 20));
	} else if (s->mem_size > max) {
		return vmm__err(VMM_ESHAPE, "VM of %llu MiB is larger than the %llu MiB allowed here",
				(unsigned long long)(s->mem_size >> 20),
				(unsigned long long)(max >> 20));
	}
	r = vmm__kvm_vcpu_limits(&rec, &hard);
	if (r)
		return r;
	cap = rv->o.max_vcpus ? rv->o.max_vcpus : rec;
	if (cap > hard)
		cap = hard;
	if (s->vcpus > cap)
		return vmm__err(VMM_ESHAPE,
				"VM has %u vCPUs, this host takes at most %u (%s)", s->vcpus, cap,
				cap == hard ? "KVM_CAP_MAX_VCPUS"
				: rv->o.max_vcpus ? "max_vcpus"
				: "KVM_CAP_NR_VCPUS: its CPUs; max_vcpus, vmm receive --max-cpus, raise it");
	return 0;
}

static int read_hello(struct rconn *c, Vmm__Stream__Hello **h)
{
	struct vmm__rec_hdr hd;
	uint32_t maj, min;
	uint8_t *p;
	int r = vmm__stream_read_preamble(c->xp, &maj, &min);

	if (!r)
		r = vmm__stream_read_rec(c->xp, VMM_REC_HELLO, &hd, &p);
	if (r)
		return r;
	*h = vmm__stream__hello__unpack(NULL, hd.len, p);
	free(p);
	return *h ? 0 : vmm__err(VMM_EPROTO, "unparsable hello");
}

static int reply(struct rconn *c, int code, const char *reason, uint64_t rehearsal_ns)
{
	Vmm__Stream__HelloReply m = VMM__STREAM__HELLO_REPLY__INIT;

	m.has_state_rehearsal_ns = rehearsal_ns != 0, m.state_rehearsal_ns = rehearsal_ns;
	m.has_accepted = 1, m.accepted = code == 0;
	m.has_error = code != 0, m.error = code;
	m.reason = (char *)reason;
	m.has_version_major = 1, m.version_major = VMM_STREAM_MAJOR;
	m.has_version_minor = 1, m.version_minor = VMM_STREAM_MINOR;
	return vmm__stream_write_msg(c->xp, VMM_REC_HELLO_REPLY, &m.base);
}

/* Checks the sender's hello and builds the VM; refuses with the reason otherwise. */
static int accept_hello(struct receiver *rv, const Vmm__Stream__Hello *h)
{
	struct vmm_vm_config cfg;
	int r = vmm__hello_check(h);

	/* A 1.0 source resumes when COMMITTED is late: starting its guest here could make
	 * two. */
	if (!r && !(h->required_features & VMM_FEAT_HANDOVER))
		r = vmm__err(VMM_EFEATURE, "the source does not speak the hand-over of stream "
			     "%u.%u (READY, GO, STARTED): upgrade it", VMM_STREAM_MAJOR,
			     VMM_STREAM_MINOR);
	if (!r && (!h->has_connections || h->connections < 1 ||
		   h->connections > VMM_MIGRATE_MAX_CONNS || !h->has_session_id ||
		   h->session_id.len < 8 || /* random, so strays cannot pass for extras */
		   h->session_id.len > sizeof(rv->session_buf) || h->conn_index != 0))
		r = vmm__err(VMM_EPROTO, "hello: bad connection count or session");
	if (!r)
		r = check_limits(rv, h->shape);
	if (!r) {
		vmm_vm_config_init(&cfg);
		vmm__hello_to_config(h, &cfg);
		cfg.serial_out = rv->o.serial_out;
		cfg.serial_opaque = rv->o.serial_opaque;
		cfg.log = rv->o.log;
		cfg.log_opaque = rv->o.log_opaque;
		r = vmm_vm_create(&cfg, &rv->vm);
		if (!r) {
			vmm__move_allow_cpu_mismatch(rv->vm, rv->o.allow_cpu_mismatch);
			/* A disk the prepare callback adds may be the source's, on shared
			 * storage: its lock moves at GO (virtio_blk.h). */
			vmm__move_set_receiving(rv->vm);
		}
	}
	/* Before the rehearsal and any RAM or state: the embedder's devices are part of the
	 * VM the source is told it can have. A failure is a refusal like any other. */
	if (!r && rv->o.prepare && (r = rv->o.prepare(rv->o.prepare_opaque, rv->vm)))
		r = vmm__err(r < 0 ? r : VMM_EINVAL, "the prepare callback refused the VM (%d)", r);
	/* Copied disks land in the images the prepare callback gave the VM. */
	if (!r && (h->required_features & VMM_FEAT_DISKS))
		r = vmm__disk_rx_new(rv->vm, 0, &rv->disks);
	if (!r && h->shape->has_cpuid_digest) {
		struct vmm__move_shape sh;

		vmm__move_shape(rv->vm, &sh);
		if (h->shape->cpuid_digest != sh.cpuid_digest)
			vmm__move_warn(rv->vm, "source host has other CPU features");
	}
	if (r) {
		char reason[512];

		snprintf(reason, sizeof(reason), "%s: %s", vmm_strerror(r), vmm_last_error());
		reply(&rv->c[0], r, reason, 0);
		return r;
	}
	rv->n = h->connections;
	memcpy(rv->session_buf, h->session_id.data, h->session_id.len);
	rv->session = (ProtobufCBinaryData){ h->session_id.len, rv->session_buf };
	return reply(&rv->c[0], 0, NULL, vmm__move_state_rehearse(rv->vm));
}

/* The extra connections, in whatever order they arrive. Each must carry this migration's
 * session id (random per migration, from the source's HELLO) and a free index: anything
 * else is a stray, dropped, and the wait goes on. Each extra gets timeout_ms. */
static int accept_extra(struct receiver *rv, int lfd)
{
	uint64_t wait_ns = (uint64_t)(rv->o.timeout_ms > 0 ? rv->o.timeout_ms : 10000) * 1000000ull;
	uint64_t deadline = 0; /* for the next extra connection: strays do not extend it */

	for (unsigned k = 1; k < rv->n;) {
		struct rconn tmp = { 0 };
		Vmm__Stream__Hello *h = NULL;
		int fd, r;

		if (!deadline)
			deadline = vmm__now_ns() + wait_ns;
		r = accept_stream(rv, lfd, deadline, &fd);
		if (r)
			return r;
		r = conn_open(rv, &tmp, fd);
		if (!r)
			r = read_hello(&tmp, &h);
		if (r) {
			/* It showed the magic, then failed its hello: a stray too. */
			rv_log(rv, VMM_LOG_WARN, "migration receiver: dropped a connection: %s",
			       vmm_last_error());
			vmm__xport_free(tmp.xp);
			close(fd);
			continue;
		}
		if (!h->has_session_id || h->session_id.len != rv->session.len ||
		    memcmp(h->session_id.data, rv->session.data, rv->session.len))
			stray_stream(rv, &tmp, "extra connection of another migration (session id)");
		else if (h->conn_index < 1 || h->conn_index >= rv->n || rv->c[h->conn_index].xp)
			stray_stream(rv, &tmp, "extra connection with a wrong or repeated index");
		else {
			rv->c[h->conn_index] = tmp;
			rv->c[h->conn_index].rv = rv;
			k++;
			deadline = 0;
		}
		vmm__stream__hello__free_unpacked(h, NULL);
	}
	return 0;
}

/* The control connection: the first stream whose HELLO opens a migration (index 0).
 * Strays before it, extra connections of a migration not accepted here included, are
 * dropped; a libvmm source that opens with a HELLO this receiver refuses is not a stray,
 * and ends the receive (it is told why). Waits without a deadline, as listen does. */
static int accept_control(struct receiver *rv, int lfd, Vmm__Stream__Hello **h)
{
	for (;;) {
		int fd, r = accept_stream(rv, lfd, 0, &fd);

		if (r)
			return r;
		r = conn_open(rv, &rv->c[0], fd);
		if (r) {
			close(fd);
			return r;
		}
		r = read_hello(&rv->c[0], h);
		if (!r && (*h)->has_conn_index && (*h)->conn_index != 0) {
			vmm__stream__hello__free_unpacked(*h, NULL);
			*h = NULL;
			stray_stream(rv, &rv->c[0], "extra connection of a migration not accepted here");
			continue;
		}
		return r;
	}
}

/* Applies RAM records until END. Connection 0 also sees ROUND markers. */
static int receive_ram(struct rconn *c)
{
	struct vmm__rec_hdr h;
	int r;

	for (;;) {
		r = vmm__stream_read_hdr(c->xp, &h);
		if (r)
			return r;
		switch (h.type) {
		case VMM_REC_RAM:
			r = vmm__ram_rx_apply(c->rx, c->xp, h.len);
			if (!r && c->rv->pop) {
				uint32_t count, zeros;
				uint64_t last = vmm__ram_rx_last_batch(c->rx, &count, &zeros);

				vmm__rx_populate_progress(c->rv->pop, (unsigned)(c - c->rv->c), last,
							  count, zeros);
			}
			break;
		case VMM_REC_ROUND: {
			uint8_t *p = malloc(h.len ? h.len : 1);
			Vmm__Stream__Round *m = NULL;

			r = p ? vmm__xport_read(c->xp, p, h.len) : vmm__err(VMM_ENOMEM, "round");
			if (!r && !(m = vmm__stream__round__unpack(NULL, h.len, p)))
				r = vmm__err(VMM_EPROTO, "unparsable round marker");
			vmm__stream__round__free_unpacked(m, NULL);
			free(p);
			break;
		}
		case VMM_REC_DISK:
			r = c == &c->rv->c[0] && c->rv->disks ?
				    vmm__disk_rx_apply(c->rv->disks, c->xp, h.len) :
				    vmm__err(VMM_EPROTO, "a disk record the hello did not announce");
			break;
		case VMM_REC_SYNC:
			/* Everything before it on this connection is applied. */
			r = vmm__stream_write_rec(c->xp, VMM_REC_SYNC, NULL, 0);
			break;
		case VMM_REC_END:
			return 0;
		case VMM_REC_ERROR: {
			uint8_t *p = malloc(h.len ? h.len : 1);
			Vmm__Stream__Error *e = NULL;

			if (p && !vmm__xport_read(c->xp, p, h.len))
				e = vmm__stream__error__unpack(NULL, h.len, p);
			r = vmm__err(VMM_EPEER, "the source gave up: %s",
				     e && e->message ? e->message : "(no reason)");
			vmm__stream__error__free_unpacked(e, NULL);
			free(p);
			return r;
		}
		default:
			return vmm__err(VMM_EPROTO, "unexpected %s record during RAM transfer",
					vmm__rec_name(h.type));
		}
		if (r)
			return r;
	}
}

static void *conn_thread(void *arg)
{
	struct rconn *c = arg;

	c->err = vmm__sandbox_thread(VMM_THREAD_MIGRATION, "vmm-mig-recv");
	if (!c->err)
		c->err = receive_ram(c);
	if (c->err) {
		snprintf(c->detail, sizeof(c->detail), "%s", vmm_last_error());
		__atomic_store_n(&c->rv->abort, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Whether a page was written by the connection that carries it (its 2 MiB chunk's). */
static int page_written(void *opaque, uint64_t page)
{
	const struct receiver *rv = opaque;

	return vmm__ram_rx_written(rv->c[page / VMM_MIGRATE_CHUNK_PAGES % rv->n].rx, page);
}

static int receive_all(struct receiver *rv)
{
	struct vmm__memory *mem = vmm__move_ram(rv->vm);
	uint64_t npages = mem->size / VMM_PAGE_SIZE, ahead, released;
	int r = 0;

	for (unsigned i = 0; i < rv->n && !r; i++)
		r = vmm__ram_rx_new(mem->host, npages, 1, &rv->c[i].rx);
	/* Before the connection threads, so none of them sees it half made. */
	if (!r)
		r = vmm__rx_populate_start(mem->host, npages, rv->n, &rv->pop);
	for (unsigned i = 1; i < rv->n && !r; i++) {
		if (pthread_create(&rv->c[i].thread, NULL, conn_thread, &rv->c[i]))
			r = vmm__err(VMM_ESYS, "receiver thread");
		else
			rv->c[i].started = 1;
	}
	if (!r) {
		r = receive_ram(&rv->c[0]);
		if (r)
			__atomic_store_n(&rv->abort, 1, __ATOMIC_RELEASE);
	}
	for (unsigned i = 1; i < rv->n; i++) {
		if (!rv->c[i].started)
			continue;
		pthread_join(rv->c[i].thread, NULL);
		rv->c[i].started = 0;
		/* The first real cause wins over the cancellations it triggered. */
		if ((!r || r == VMM_ECANCELED) && rv->c[i].err && rv->c[i].err != VMM_ECANCELED)
			r = vmm__err(rv->c[i].err, "connection %u: %s", i, rv->c[i].detail);
	}
	/* Joined on every path; on success what it populated and no page landed in (zero
	 * pages, the source's holes) is given back. */
	ahead = vmm__rx_populate_stop(rv->pop, r ? NULL : page_written, rv, &released);
	rv->pop = NULL;
	if (ahead)
		rv_log(rv, VMM_LOG_DEBUG, "migration receiver: populated %llu pages ahead, %llu "
		       "of them given back unused", (unsigned long long)ahead,
		       (unsigned long long)released);
	return r;
}

/* The pages the source says it sent must be the pages that arrived (protocol.h): a
 * batch lost or duplicated between the two would otherwise go unnoticed. */
static int check_complete(struct receiver *rv, const Vmm__Stream__Complete *done,
			  uint64_t *got)
{
	*got = 0;
	for (unsigned i = 0; i < rv->n; i++)
		*got += vmm__ram_rx_pages(rv->c[i].rx);
	if (!done->has_pages_total)
		return vmm__err(VMM_EPROTO, "complete record without pages_total");
	if (done->pages_total != *got)
		return vmm__err(VMM_EPROTO, "complete: the source sent %llu pages, %llu arrived",
				(unsigned long long)done->pages_total, (unsigned long long)*got);
	return 0;
}

/* STATE and COMPLETE: everything is checked and loaded, the VM is paused (never started);
 * READY says so. */
static int receive_state(struct receiver *rv)
{
	struct vmm__rec_hdr h;
	Vmm__Stream__Complete *done = NULL;
	Vmm__Stream__Ready ok = VMM__STREAM__READY__INIT;
	uint64_t t0, got;
	uint8_t *p;
	int r = vmm__stream_read_rec(rv->c[0].xp, VMM_REC_STATE, &h, &p);

	if (r)
		return r;
	t0 = vmm__now_ns();
	/* Marks the VM loaded too: if what follows fails, the VM is destroyed unstarted. */
	r = vmm__move_state_install(rv->vm, p, h.len, VMM_ESTATEDATA);
	free(p);
	if (!r)
		r = vmm__stream_read_rec(rv->c[0].xp, VMM_REC_COMPLETE, &h, &p);
	if (r)
		return r;
	done = vmm__stream__complete__unpack(NULL, h.len, p);
	free(p);
	if (!done)
		return vmm__err(VMM_EPROTO, "unparsable complete record");
	r = check_complete(rv, done, &got);
	vmm__stream__complete__free_unpacked(done, NULL);
	if (r)
		return r;
	ok.has_apply_ns = 1, ok.apply_ns = vmm__now_ns() - t0;
	ok.has_pages_received = 1, ok.pages_received = got;
	return vmm__stream_write_msg(rv->c[0].xp, VMM_REC_READY, &ok.base);
}

/* After READY: GO hands the guest over; the source's ERROR means it kept the guest (it
 * resumes, this copy goes). Anything else (silence, a reset, garbage) leaves it unknown:
 * the source may have written GO, so neither starting nor discarding is safe. */
static int wait_go(struct receiver *rv)
{
	struct vmm__rec_hdr h;
	uint8_t *p;
	char why[512];
	int r = vmm__stream_read_rec(rv->c[0].xp, VMM_REC_GO, &h, &p);

	free(p);
	if (!r)
		return 0;
	snprintf(why, sizeof(why), "%s", vmm_last_error());
	if (r == VMM_EREFUSED)
		return vmm__err(VMM_EPEER, "the source kept the guest: %s", why);
	return vmm__err(VMM_EINDOUBT, "READY sent, no GO from the source (%s: %s): it may have "
			"let go", vmm_err_name(r), why);
}

/* GO arrived: the guest is this side's. Starts it and tells the source how that went; a
 * failed start discards this copy, and the source, told so, takes the guest back. */
static int take_over(struct receiver *rv)
{
	Vmm__Stream__Started m = VMM__STREAM__STARTED__INIT;
	char why[512] = "";
	int r = rv->o.no_start ? 0 : vmm_vm_start(rv->vm);

	if (r)
		snprintf(why, sizeof(why), "%s", vmm_last_error());
	m.has_error = 1, m.error = r;
	m.message = why;
	/* If STARTED is lost the source stays in doubt and is resolved by whoever sees this
	 * side run; this side has the guest either way. */
	vmm__stream_write_msg(rv->c[0].xp, VMM_REC_STARTED, &m.base);
	if (r)
		vmm__err(r, "%s", why);
	return r;
}

/* Everything after the control connection's HELLO was read (r: how that went): the hello
 * checked and the VM built, the extra connections, RAM, state, READY, GO, the start; on
 * failure the source told why and the VM destroyed (kept in doubt after READY). Frees h and
 * rv. Its own function so that tests/fuzz/target_receiver.c runs exactly this on a stream
 * it forged after a hello. */
static int receive_after_hello(struct receiver *rv, int r, Vmm__Stream__Hello *h, int lfd,
			       struct vmm_vm **out)
{
	int handed = 0;

	if (!r)
		r = accept_hello(rv, h);
	vmm__stream__hello__free_unpacked(h, NULL);
	if (!r)
		r = accept_extra(rv, lfd);
	if (!r)
		r = receive_all(rv);
	/* The copied images are on stable storage before READY (disk_stream.h). */
	if (!r && rv->disks)
		r = vmm__disk_rx_finish(rv->disks);
	if (!r)
		r = receive_state(rv);
	if (!r)
		r = wait_go(rv);
	if (!r) {
		r = take_over(rv);
		handed = 1;
	}
	if (r && rv->c[0].xp && r != VMM_EPEER && r != VMM_EINDOUBT && !handed) {
		char why[512];

		/* rv->abort is every connection's cancel flag and a failed RAM phase has set it:
		 * clear it (the connection threads are joined by now) or the error record is
		 * refused as "canceled" and never reaches the source. Keep the cause as this
		 * thread's detail, not the outcome of this courtesy write. */
		snprintf(why, sizeof(why), "%s", vmm_last_error());
		__atomic_store_n(&rv->abort, 0, __ATOMIC_RELEASE);
		vmm__stream_send_error(rv->c[0].xp, r, why);
		vmm__err(r, "%s", why);
	}
	for (unsigned i = 0; i < VMM_MIGRATE_MAX_CONNS; i++) {
		vmm__ram_rx_free(rv->c[i].rx);
		vmm__xport_free(rv->c[i].xp);
		if (rv->c[i].xp)
			close(rv->c[i].fd);
	}
	for (unsigned i = 0; i < rv->npend; i++) {
		vmm__tls_conn_free(rv->pend[i].tls);
		close(rv->pend[i].fd);
	}
	vmm__tls_free(rv->tls);
	vmm__disk_rx_free(rv->disks);
	if (r == VMM_EINDOUBT) {
		/* Kept, loaded and never started, until vmm_migrate_resolve (protocol.h). */
		vmm__move_set_in_doubt(rv->vm, VMM__SIDE_DEST);
		*out = rv->vm;
	} else if (r) {
		vmm_vm_destroy(rv->vm);
	} else {
		*out = rv->vm;
	}
	free(rv);
	return r;
}

int vmm_migrate_receive(int lfd, const struct vmm_receive_opts *opts, struct vmm_vm **out)
{
	struct receiver *rv;
	Vmm__Stream__Hello *h = NULL;
	int r;

	if (!out)
		return vmm__err(VMM_EINVAL, "NULL argument");
	*out = NULL;
	rv = calloc(1, sizeof(*rv));
	if (!rv)
		return vmm__err(VMM_ENOMEM, "receiver");
	vmm_receive_opts_init(&rv->o);
	r = VMM__OPTS_COPY(&rv->o, opts, "vmm_receive_opts_init");
	/* Credentials are loaded and checked before the first connection is accepted. */
	if (!r && rv->o.tls)
		r = vmm__tls_new(rv->o.tls, 1, NULL, &rv->tls);
	if (!r)
		r = accept_control(rv, lfd, &h);
	return receive_after_hello(rv, r, h, lfd, out);
}

int vmm_migrate_receive_at(const char *addr, uint16_t port, const struct vmm_receive_opts *opts,
			   struct vmm_vm **out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	char portstr[8];
	int fd, one = 1, e, r;

	snprintf(portstr, sizeof(portstr), "%u", port);
	e = getaddrinfo(addr, portstr, &hints, &res);
	if (e)
		return vmm__err(VMM_EINVAL, "%s: %s", addr ? addr : "*", gai_strerror(e));
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		freeaddrinfo(res);
		return vmm__err_sys(VMM_ESYS, "socket");
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, VMM_MIGRATE_MAX_CONNS) < 0) {
		r = vmm__err_sys(VMM_ESYS, "bind/listen");
		freeaddrinfo(res);
		close(fd);
		return r;
	}
	freeaddrinfo(res);
	r = vmm_migrate_receive(fd, opts, out);
	close(fd);
	return r;
}
