/* The sending side of a live migration (protocol.h): connections and hello, pre-copy
 * rounds while the guest runs, convergence (expected downtime under the limit, a round or
 * time cap, auto-converge throttling), stop-and-copy, and the wait for COMMITTED. All of
 * one migration's state lives in struct sender; nothing is global. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "dirty.h"
#include "clock.h"
#include "error_internal.h"
#include "opts.h"
#include "memory.h"
#include "policy.h"
#include "protocol.h"
#include "ram.h"
#include "state_codec.h"
#include "stream.h"
#include "stream.pb-c.h"
#include "vm_internal.h"
#include "vm_shape.h"
#include "vmm/migrate.h"

struct conn {
	struct sender *s;
	unsigned idx;
	struct vmm__xport *xp;
	struct vmm__ram_tx *tx;
	pthread_t thread;
	int err;
	uint64_t chunk_clears;
};

struct sender {
	struct vmm_vm *vm;
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	unsigned n;
	struct conn c[VMM_MIGRATE_MAX_CONNS];
	uint64_t npages;
	uint64_t *pages;         /* this round's set */
	pthread_mutex_t clear_lock; /* vmm__dirty_clear is one caller at a time */
	int tracking;            /* we started the tracker (and stop it) */
	int paused;              /* we paused the guest (and resume it on failure) */
	int stable;              /* final round: the guest cannot write */
	uint64_t t0, t_pause, round_t0;
	uint64_t sync_ns;        /* the last dirty-log sync took this long */
	uint64_t state_cost_ns;  /* the destination's rehearsal of the state (hello reply) */
	uint8_t session[16];
};

void vmm_migrate_opts_init(struct vmm_migrate_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->downtime_limit_ns = 50000000ull;
	o->compress = VMM_MIGRATE_COMPRESS_OFF;
	o->connections = 1;
	o->max_rounds = 30;
	o->timeout_ms = 10000;
}

void vmm_migrate_cancel(struct vmm_vm *vm)
{
	if (vm)
		__atomic_store_n(&vm->migrate_cancel, 1, __ATOMIC_RELEASE);
}

int vmm_vm_migrated(const struct vmm_vm *vm)
{
	int m;

	if (!vm)
		return 0;
	pthread_mutex_lock((pthread_mutex_t *)&vm->lock);
	m = vm->migrated;
	pthread_mutex_unlock((pthread_mutex_t *)&vm->lock);
	return m;
}

/* ---- RAM rounds */

static uint64_t wire_bytes(const struct sender *s)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < s->n; i++)
		b += vmm__xport_bytes(s->c[i].xp);
	return b;
}

/* Keeps a connection under its share of max_bandwidth, measured over the round. */
static void rate_limit(struct conn *c, uint64_t sent)
{
	const struct sender *s = c->s;
	uint64_t limit = s->o.max_bandwidth / s->n, elapsed, due;

	if (!limit)
		return;
	elapsed = vmm__now_ns() - s->round_t0;
	due = (uint64_t)((double)sent * 1e9 / (double)limit);
	if (due > elapsed) {
		struct timespec ts = { (time_t)((due - elapsed) / 1000000000ull),
				       (long)((due - elapsed) % 1000000000ull) };

		nanosleep(&ts, NULL);
	}
}

/* Sends this connection's share of s->pages: its 2 MiB chunks, each re-protected right
 * before its pages are read, so a write after the read shows up in the next round. */
static int send_share(struct conn *c)
{
	struct sender *s = c->s;
	uint64_t start = vmm__xport_bytes(c->xp);
	int r = 0;

	for (uint64_t first = (uint64_t)c->idx * VMM_MIGRATE_CHUNK_PAGES; first < s->npages && !r;
	     first += (uint64_t)s->n * VMM_MIGRATE_CHUNK_PAGES) {
		uint64_t n = s->npages - first < VMM_MIGRATE_CHUNK_PAGES ? s->npages - first
									 : VMM_MIGRATE_CHUNK_PAGES;

		if (!vmm__bitmap_any(s->pages + first / 64, (n + 63) / 64))
			continue;
		if (!s->stable) {
			pthread_mutex_lock(&s->clear_lock);
			r = vmm__dirty_clear(&s->vm->dirty, s->pages, first,
					     VMM_MIGRATE_CHUNK_PAGES);
			pthread_mutex_unlock(&s->clear_lock);
		}
		for (uint64_t p = first; p < first + n && !r; p++)
			if (vmm__bitmap_test(s->pages, p))
				r = vmm__ram_tx_add(c->tx, c->xp, p);
		if (!r)
			rate_limit(c, vmm__xport_bytes(c->xp) - start);
	}
	if (!r)
		r = vmm__ram_tx_flush(c->tx, c->xp);
	return r;
}

static void *share_thread(void *arg)
{
	struct conn *c = arg;

	c->err = send_share(c);
	return NULL;
}

/* Sends s->pages over every connection at once. */
static int send_round_pages(struct sender *s)
{
	int r = 0;

	for (unsigned i = 1; i < s->n; i++) {
		s->c[i].err = 0;
		if (pthread_create(&s->c[i].thread, NULL, share_thread, &s->c[i])) {
			/* Fall back to this thread for the rest. */
			s->c[i].thread = 0;
			s->c[i].err = send_share(&s->c[i]);
		}
	}
	r = send_share(&s->c[0]);
	for (unsigned i = 1; i < s->n; i++) {
		if (s->c[i].thread)
			pthread_join(s->c[i].thread, NULL);
		s->c[i].thread = 0;
		if (!r && s->c[i].err) {
			r = s->c[i].err;
			vmm__err(r, "connection %u: %s", i, vmm_strerror(r));
		}
	}
	return r;
}

static int send_round_marker(struct sender *s, uint32_t round, uint64_t pages, int final)
{
	Vmm__Stream__Round m = VMM__STREAM__ROUND__INIT;

	m.has_round = 1, m.round = round;
	m.has_pages = 1, m.pages = pages;
	m.has_final = 1, m.final = final;
	return vmm__stream_write_msg(s->c[0].xp, VMM_REC_ROUND, &m.base);
}

static void add_tx_stats(struct sender *s, struct vmm_migrate_round *rd, const uint64_t before[4])
{
	uint64_t pages = 0, zero = 0, raw = 0;

	for (unsigned i = 0; i < s->n; i++) {
		const struct vmm__ram_tx_stats *t = vmm__ram_tx_stats(s->c[i].tx);

		pages += t->pages, zero += t->zero_pages, raw += t->raw_bytes;
	}
	rd->pages = pages - before[0];
	rd->zero_pages = zero - before[1];
	rd->raw_bytes = raw - before[2];
	rd->wire_bytes = wire_bytes(s) - before[3];
	s->st.pages = pages, s->st.zero_pages = zero, s->st.raw_bytes = raw;
	s->st.wire_bytes = wire_bytes(s);
}

static void snapshot_tx_stats(struct sender *s, uint64_t before[4])
{
	before[0] = before[1] = before[2] = 0;
	for (unsigned i = 0; i < s->n; i++) {
		const struct vmm__ram_tx_stats *t = vmm__ram_tx_stats(s->c[i].tx);

		before[0] += t->pages, before[1] += t->zero_pages, before[2] += t->raw_bytes;
	}
	before[3] = wire_bytes(s);
}

static int cancelled(struct sender *s)
{
	if (__atomic_load_n(&s->vm->migrate_cancel, __ATOMIC_ACQUIRE))
		return vmm__err(VMM_ECANCELED, "migration canceled");
	return 0;
}

static int converge(struct sender *s, const struct vmm_migrate_round *rd)
{
	uint32_t pct = vmm__vm_throttle(s->vm);

	if (!s->o.auto_converge)
		return 0;
	pct = vmm__policy_next_throttle(pct, rd->round, rd->dirty_rate_mbps, rd->bandwidth_mbps);
	if (pct > s->st.max_throttle_pct)
		s->st.max_throttle_pct = pct;
	return pct != vmm__vm_throttle(s->vm) ? vmm__vm_set_throttle(s->vm, pct) : 0;
}

/* One round over s->pages; then the next round's set is synced into s->pages. Returns 1
 * in *done when the rest fits the downtime limit (or a cap is reached). */
static int precopy_round(struct sender *s, uint32_t round, int *done)
{
	struct vmm_migrate_round rd = { .round = round };
	struct vmm__round_measure m;
	uint64_t before[4], t_end, words = vmm__bitmap_words(s->npages);
	int r;

	snapshot_tx_stats(s, before);
	s->round_t0 = vmm__now_ns();
	rd.throttle_pct = vmm__vm_throttle(s->vm);
	r = send_round_marker(s, round, vmm__bitmap_weight(s->pages, s->npages), 0);
	if (!r)
		r = send_round_pages(s);
	/* Until the peer has it: otherwise the round's time is the time to fill socket
	 * buffers, the bandwidth looks higher than the link and the downtime estimate lies
	 * (and what is still queued would be paid for in the pause). */
	for (unsigned i = 0; i < s->n && !r; i++)
		r = vmm__xport_wait_sent(s->c[i].xp);
	if (!r)
		r = cancelled(s);
	if (r)
		return r;
	t_end = vmm__now_ns();
	memset(s->pages, 0, words * 8);
	r = vmm__dirty_sync(&s->vm->dirty, s->pages);
	if (r)
		return r;
	s->sync_ns = vmm__now_ns() - t_end;
	add_tx_stats(s, &rd, before);
	m = (struct vmm__round_measure){
		.wire_bytes = rd.wire_bytes,
		.duration_ns = t_end - s->round_t0,
		.elapsed_ns = vmm__now_ns() - s->round_t0,
		.remaining_bytes = vmm__bitmap_weight(s->pages, s->npages) * VMM_PAGE_SIZE,
		/* What the pause costs besides the pages: the final sync, the state's capture
		 * and load (rehearsed on the destination at hello), COMPLETE's round trip.
		 * Without the state, a slow host's downtime exceeded its estimate 70-fold. */
		.fixed_ns = vmm__xport_rtt_ns(s->c[0].xp) + s->sync_ns + s->state_cost_ns,
	};
	rd.duration_ns = m.duration_ns;
	rd.bandwidth_mbps = vmm__policy_bandwidth(&m) / 1e6;
	rd.dirty_rate_mbps = vmm__policy_dirty_rate(&m) / 1e6;
	rd.remaining_bytes = m.remaining_bytes;
	rd.expected_downtime_ns = vmm__policy_expected_downtime(&m);
	s->st.rounds = round + 1;
	s->st.expected_downtime_ns = rd.expected_downtime_ns;
	if (s->o.progress)
		s->o.progress(s->o.progress_opaque, &rd, &s->st);
	*done = vmm__policy_should_stop(rd.expected_downtime_ns, s->o.downtime_limit_ns, round,
					s->o.max_rounds, vmm__now_ns() - s->t0, s->o.max_time_ns);
	return *done ? 0 : converge(s, &rd);
}

/* Waits until the destination has applied everything sent so far (protocol.h, SYNC), so
 * that the pause only pays for the last pages, not for a receive backlog. */
static int sync_destination(struct sender *s)
{
	struct vmm__rec_hdr h;
	uint8_t *p;
	int r = 0;

	for (unsigned i = 0; i < s->n && !r; i++)
		r = vmm__stream_write_rec(s->c[i].xp, VMM_REC_SYNC, NULL, 0);
	for (unsigned i = 0; i < s->n && !r; i++) {
		r = vmm__stream_read_rec(s->c[i].xp, VMM_REC_SYNC, &h, &p);
		free(p);
	}
	return r;
}

/* ---- stop-and-copy and commit */

static int send_state(struct sender *s)
{
	struct vmm__machine_state ms;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t t0 = vmm__now_ns();
	int r = vmm__vm_state_capture(s->vm, &ms);

	if (!r)
		r = vmm__machine_state_encode(&ms, &buf, &len);
	vmm__machine_state_free(&ms);
	s->st.capture_ns = vmm__now_ns() - t0;
	if (!r)
		r = vmm__stream_write_rec(s->c[0].xp, VMM_REC_STATE, buf, len);
	s->st.state_bytes = len;
	free(buf);
	return r;
}

static int wait_committed(struct sender *s)
{
	Vmm__Stream__Committed *ok;
	struct vmm__rec_hdr h;
	uint8_t *p;
	int r = vmm__stream_read_rec(s->c[0].xp, VMM_REC_COMMITTED, &h, &p);

	if (r)
		return r;
	ok = vmm__stream__committed__unpack(NULL, h.len, p);
	free(p);
	if (!ok)
		return vmm__err(VMM_EPROTO, "unparsable committed record");
	s->st.apply_ns = ok->has_apply_ns ? ok->apply_ns : 0;
	vmm__stream__committed__free_unpacked(ok, NULL);
	return 0;
}

static int stop_and_copy(struct sender *s)
{
	struct vmm_migrate_round rd = { .final = 1, .round = s->st.rounds };
	Vmm__Stream__Complete done = VMM__STREAM__COMPLETE__INIT;
	uint64_t before[4], t_sync;
	int r;

	/* The downtime starts as the pause does: the vCPUs stop during the call. */
	s->t_pause = vmm__now_ns();
	if (vmm_vm_run_state(s->vm) == VMM_VM_RUNNING) {
		r = vmm_vm_pause(s->vm);
		if (r)
			return r;
		s->paused = 1;
	}
	/* The guest may have exited during pre-copy (the VM is STOPPED, not PAUSED). Sending
	 * it anyway would make the destination start vCPUs past the guest's exit, where it
	 * hangs, while the exit itself is reported nowhere: fail instead and leave the
	 * caller its stopped VM, whose vmm_vm_wait() still tells how the guest ended. */
	if (vmm_vm_run_state(s->vm) != VMM_VM_PAUSED)
		return vmm__err(VMM_ESTATE, "migrate: the VM stopped during pre-copy");
	t_sync = vmm__now_ns();
	s->st.pause_ns = t_sync - s->t_pause;
	vmm__vm_set_throttle(s->vm, 0);
	/* The guest cannot write now: one more sync catches what the last round missed. */
	r = vmm__dirty_sync(&s->vm->dirty, s->pages);
	if (r)
		return r;
	s->st.final_sync_ns = vmm__now_ns() - t_sync;
	s->stable = 1;
	for (unsigned i = 0; i < s->n; i++)
		vmm__ram_tx_set_stable(s->c[i].tx, 1);
	snapshot_tx_stats(s, before);
	s->round_t0 = vmm__now_ns();
	r = send_round_marker(s, rd.round, vmm__bitmap_weight(s->pages, s->npages), 1);
	if (!r)
		r = send_round_pages(s);
	for (unsigned i = 0; i < s->n && !r; i++)
		r = vmm__stream_write_rec(s->c[i].xp, VMM_REC_END, NULL, 0);
	if (!r)
		r = send_state(s);
	add_tx_stats(s, &rd, before);
	done.has_pages_total = 1, done.pages_total = s->st.pages;
	done.has_state_bytes = 1, done.state_bytes = s->st.state_bytes;
	if (!r)
		r = vmm__stream_write_msg(s->c[0].xp, VMM_REC_COMPLETE, &done.base);
	if (!r)
		r = wait_committed(s);
	if (r)
		return r;
	rd.duration_ns = vmm__now_ns() - s->round_t0;
	rd.bandwidth_mbps = (double)rd.wire_bytes / ((double)rd.duration_ns / 1e9) / 1e6;
	s->st.rounds++;
	s->st.downtime_ns = vmm__now_ns() - s->t_pause;
	s->st.wire_bytes = wire_bytes(s);
	if (s->o.progress)
		s->o.progress(s->o.progress_opaque, &rd, &s->st);
	return 0;
}

/* ---- connections and hello */

static int hello(struct sender *s)
{
	struct vmm__hello_buf hb;
	Vmm__Stream__HelloReply *rep;
	struct vmm__rec_hdr h;
	uint8_t *p;
	uint64_t feat = VMM_FEAT_RAM_BATCHES |
			(s->o.compress != VMM_MIGRATE_COMPRESS_OFF ? VMM_FEAT_ZSTD : 0);
	int r;

	vmm__hello_from_vm(s->vm, feat, &hb);
	hb.hello.has_connections = 1, hb.hello.connections = s->n;
	hb.hello.has_session_id = 1;
	hb.hello.session_id = (ProtobufCBinaryData){ sizeof(s->session), s->session };
	hb.hello.has_conn_index = 1, hb.hello.conn_index = 0;
	r = vmm__stream_write_preamble(s->c[0].xp);
	if (!r)
		r = vmm__stream_write_msg(s->c[0].xp, VMM_REC_HELLO, &hb.hello.base);
	if (!r)
		r = vmm__stream_read_rec(s->c[0].xp, VMM_REC_HELLO_REPLY, &h, &p);
	if (r)
		return r;
	rep = vmm__stream__hello_reply__unpack(NULL, h.len, p);
	free(p);
	if (!rep)
		return vmm__err(VMM_EPROTO, "unparsable hello reply");
	if (!rep->accepted)
		r = vmm__err(VMM_EREFUSED, "destination refused: %s (%s)",
			     rep->reason ? rep->reason : "", vmm_err_name(rep->error));
	s->state_cost_ns = rep->has_state_rehearsal_ns ? rep->state_rehearsal_ns : 0;
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	/* The extra connections introduce themselves with the session id. */
	for (unsigned i = 1; i < s->n && !r; i++) {
		Vmm__Stream__Hello j = VMM__STREAM__HELLO__INIT;

		j.has_session_id = 1;
		j.session_id = hb.hello.session_id;
		j.has_conn_index = 1, j.conn_index = i;
		r = vmm__stream_write_preamble(s->c[i].xp);
		if (!r)
			r = vmm__stream_write_msg(s->c[i].xp, VMM_REC_HELLO, &j.base);
	}
	return r;
}

static int setup(struct sender *s, struct vmm_vm *vm, const int *fds)
{
	enum vmm__compress mode = s->o.compress == VMM_MIGRATE_COMPRESS_ZSTD ? VMM_COMPRESS_ZSTD
				  : s->o.compress == VMM_MIGRATE_COMPRESS_AUTO ? VMM_COMPRESS_AUTO
									 : VMM_COMPRESS_OFF;
	struct vmm__xport_opts xo = { .timeout_ms = s->o.timeout_ms, .cancel = &vm->migrate_cancel };
	int r = 0;

	s->vm = vm;
	s->npages = vm->mem.size / VMM_PAGE_SIZE;
	s->pages = calloc(vmm__bitmap_words(s->npages), 8);
	if (!s->pages)
		return vmm__err(VMM_ENOMEM, "dirty bitmap");
	if (getrandom(s->session, sizeof(s->session), 0) != sizeof(s->session))
		return vmm__err_sys(VMM_ESYS, "getrandom");
	for (unsigned i = 0; i < s->n && !r; i++) {
		s->c[i].s = s;
		s->c[i].idx = i;
		r = vmm__xport_new(fds[i], &xo, &s->c[i].xp);
		if (!r)
			r = vmm__ram_tx_new(vm->mem.host, s->npages, mode, 1, &s->c[i].tx);
	}
	return r;
}

static void teardown(struct sender *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		vmm__ram_tx_free(s->c[i].tx);
		vmm__xport_free(s->c[i].xp);
	}
	free(s->pages);
	pthread_mutex_destroy(&s->clear_lock);
}

static int migrate(struct sender *s)
{
	int done = 0, r = hello(s);

	if (r)
		return r;
	if (!vmm__dirty_backend(&s->vm->dirty)) {
		r = vmm__dirty_start(&s->vm->dirty);
		if (r)
			return r;
		s->tracking = 1;
	}
	/* Round 0: every page ever written (never-touched pages are holes, never read). */
	if (s->vm->mem.memfd < 0)
		vmm__bitmap_set_range(s->pages, 0, s->npages);
	else
		r = vmm__memory_populated(&s->vm->mem, s->pages);
	for (uint32_t round = 0; !r && !done; round++)
		r = precopy_round(s, round, &done);
	if (!r)
		r = sync_destination(s);
	if (!r)
		r = stop_and_copy(s);
	return r;
}

/* Tells the destination why, briefly: a dead or stalled peer must not hold up the
 * source's recovery, and the first cause stays the one reported. */
static void notify_failure(struct sender *s, int r)
{
	char cause[512];

	if (!s->c[0].xp || r == VMM_EPEER || r == VMM_EREFUSED)
		return;
	snprintf(cause, sizeof(cause), "%s", vmm_last_error());
	vmm__xport_set_opts(s->c[0].xp, 500, NULL);
	vmm__stream_send_error(s->c[0].xp, r, cause);
	vmm__err(r, "%s", cause);
}

static int send_fds(struct vmm_vm *vm, const int *fds, unsigned nfds,
		    const struct vmm_migrate_opts *opts, struct vmm_migrate_stats *stats)
{
	struct sender *s;
	enum vmm_vm_run_state st;
	int r;

	if (!vm || !fds)
		return vmm__err(VMM_EINVAL, "NULL argument");
	s = calloc(1, sizeof(*s));
	if (!s)
		return vmm__err(VMM_ENOMEM, "migration");
	vmm_migrate_opts_init(&s->o);
	r = VMM__OPTS_COPY(&s->o, opts, "vmm_migrate_opts_init");
	if (r) {
		free(s);
		return r;
	}
	s->n = s->o.connections;
	pthread_mutex_init(&s->clear_lock, NULL);
	s->t0 = vmm__now_ns();
	st = vmm_vm_run_state(vm);
	if (s->n < 1 || s->n > VMM_MIGRATE_MAX_CONNS || nfds != s->n)
		r = vmm__err(VMM_EINVAL, "%u connections for %u sockets (1..%d)", s->n, nfds,
			     VMM_MIGRATE_MAX_CONNS);
	else if ((st != VMM_VM_RUNNING && st != VMM_VM_PAUSED) || vmm_vm_migrated(vm))
		r = vmm__err(VMM_ESTATE, "migrate: the VM is %s", vmm_vm_run_state_name(st));
	else
		r = 0;
	if (!r)
		r = setup(s, vm, fds);
	if (!r)
		r = migrate(s);
	vmm__vm_set_throttle(vm, 0);
	if (s->tracking)
		vmm__dirty_stop(&vm->dirty);
	if (!r) {
		pthread_mutex_lock(&vm->lock);
		vm->migrated = 1;
		pthread_mutex_unlock(&vm->lock);
	} else {
		/* Tell the destination why, if it still listens, and run on as before. */
		notify_failure(s, r);
		if (s->paused)
			vmm_vm_resume(vm);
	}
	s->st.total_ns = vmm__now_ns() - s->t0;
	s->st.compression_ratio = s->st.wire_bytes ? (double)s->st.raw_bytes /
						       (double)(s->st.wire_bytes ? s->st.wire_bytes : 1)
						   : 1.0;
	if (stats)
		*stats = s->st;
	teardown(s);
	free(s);
	return r;
}

int vmm_migrate_send(struct vmm_vm *vm, const int *fds, unsigned nfds,
		     const struct vmm_migrate_opts *opts, struct vmm_migrate_stats *stats)
{
	if (vm)
		__atomic_store_n(&vm->migrate_cancel, 0, __ATOMIC_RELEASE);
	return send_fds(vm, fds, nfds, opts, stats);
}

/* ---- connecting */

static int dial(const char *host, uint16_t port, int timeout_ms, int *fd)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char portstr[8];
	int e, one = 1;

	snprintf(portstr, sizeof(portstr), "%u", port);
	e = getaddrinfo(host, portstr, &hints, &res);
	if (e)
		return vmm__err(VMM_EINVAL, "%s: %s", host, gai_strerror(e));
	*fd = -1;
	for (ai = res; ai && *fd < 0; ai = ai->ai_next) {
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

		*fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (*fd < 0)
			continue;
		/* A connect timeout via SO_SNDTIMEO, then back to blocking for io_uring. */
		setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(*fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			e = errno;
			close(*fd);
			*fd = -1;
			errno = e;
			continue;
		}
		tv = (struct timeval){ 0, 0 };
		setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	freeaddrinfo(res);
	if (*fd < 0)
		return vmm__err_sys(VMM_EPEER, "connect");
	return 0;
}

int vmm_migrate_send_to(struct vmm_vm *vm, const char *host, uint16_t port,
			const struct vmm_migrate_opts *opts, struct vmm_migrate_stats *stats)
{
	struct vmm_migrate_opts o;
	int fds[VMM_MIGRATE_MAX_CONNS];
	unsigned n = 0;
	int r = 0;

	vmm_migrate_opts_init(&o);
	r = VMM__OPTS_COPY(&o, opts, "vmm_migrate_opts_init");
	if (r)
		return r;
	if (!vm || !host || o.connections < 1 || o.connections > VMM_MIGRATE_MAX_CONNS)
		return vmm__err(VMM_EINVAL, "host or connection count");
	/* Cleared before connecting, so a cancel during the connect is not lost. */
	__atomic_store_n(&vm->migrate_cancel, 0, __ATOMIC_RELEASE);
	/* The control connection first: the destination accepts the rest after its hello
	 * reply, but the kernel's backlog holds them until then. */
	for (; n < o.connections && !r; n++)
		r = dial(host, port, o.timeout_ms, &fds[n]);
	if (r)
		n--;
	if (!r && __atomic_load_n(&vm->migrate_cancel, __ATOMIC_ACQUIRE))
		r = vmm__err(VMM_ECANCELED, "migration canceled");
	if (!r)
		r = send_fds(vm, fds, n, &o, stats);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	return r;
}
