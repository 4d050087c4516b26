/* The sending side of a live migration (protocol.h): connections and hello, pre-copy
 * rounds while the guest runs, convergence (expected downtime under the limit, a round or
 * time cap, auto-converge throttling), stop-and-copy, and the hand-over (READY, GO,
 * STARTED). All of one migration's state lives in struct sender; nothing is global. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libvmm/bitmap.h"
#include "libvmm/dirty.h"
#include "libvmm/clock.h"
#include "libvmm/sandbox.h"
#include "libvmm/error_internal.h"
#include "libvmm/opts.h"
#include "libvmm/memory.h"
#include "migrate/disk_stream.h"
#include "migrate/policy.h"
#include "migrate/protocol.h"
#include "migrate/ram.h"
#include "migrate/rounds.h"
#include "migrate/stream.h"
#include "migrate/tls.h"
#include "stream.pb-c.h"
#include "libvmm/vm_move.h"
#include "migrate/vm_shape.h"
#include "vmm/migrate.h"

/* A round's chunks are the protocol's unit of spreading pages over connections. */
_Static_assert(VMM_ROUNDS_CHUNK_PAGES == VMM_MIGRATE_CHUNK_PAGES, "chunk sizes differ");

struct conn {
	struct sender *s;
	unsigned idx;
	int fd;
	struct vmm__xport *xp;
	struct vmm__ram_tx *tx;
	pthread_t thread;
	int err;
	uint64_t share_start; /* bytes sent before this round's share, for the rate limit */
};

struct sender {
	struct vmm_vm *vm;
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	unsigned n;
	struct conn c[VMM_MIGRATE_MAX_CONNS];
	struct vmm__rounds *rs;  /* the round being sent */
	struct vmm__rounds_result res;
	int tracking;            /* we started the tracker (and stop it) */
	int final;               /* the round being sent is the last: the guest is paused */
	int let_go;              /* GO may be on the wire: an unclear end leaves us in doubt */
	uint64_t before[4];      /* tx counters as the round began (snapshot_tx_stats) */
	uint64_t t0, round_t0;
	uint64_t state_cost_ns;  /* the destination's rehearsal of the state (hello reply) */
	uint8_t session[16];
	struct vmm__tls *tls;    /* NULL: plain TCP */
	struct vmm__disk_tx *disks; /* copy mode: the images go on connection 0 */
	uint32_t round;
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
		vmm__move_cancel(vm, 1);
}

int vmm_vm_migrated(const struct vmm_vm *vm)
{
	return vm ? vmm__move_migrated(vm) && !vmm__move_in_doubt(vm) : 0;
}

/* ---- the rounds' sink: pages over every connection at once */

static uint64_t wire_bytes(const struct sender *s)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < s->n; i++)
		b += vmm__xport_bytes(s->c[i].xp);
	return b;
}

/* Keeps a connection under its share of max_bandwidth, measured over the round. The cap
 * is for the live rounds, where the migration shares the link with the running guest's
 * own traffic; once the guest is paused every millisecond is downtime, so the final round
 * goes as fast as the link allows (QEMU lifts its limit at switchover too). */
static void rate_limit(struct conn *c, uint64_t sent)
{
	const struct sender *s = c->s;
	uint64_t limit = s->o.max_bandwidth / s->n, elapsed, due;

	if (!limit || s->final)
		return;
	elapsed = vmm__now_ns() - s->round_t0;
	due = (uint64_t)((double)sent * 1e9 / (double)limit);
	if (due > elapsed) {
		struct timespec ts = { (time_t)((due - elapsed) / 1000000000ull),
				       (long)((due - elapsed) % 1000000000ull) };

		nanosleep(&ts, NULL);
	}
}

static int send_chunk(void *arg, const uint64_t *pages, uint64_t first, uint64_t n)
{
	struct conn *c = arg;
	int r = 0;

	for (uint64_t p = first; p < first + n && !r; p++)
		if (vmm__bitmap_test(pages, p))
			r = vmm__ram_tx_add(c->tx, c->xp, p);
	if (!r)
		rate_limit(c, vmm__xport_bytes(c->xp) - c->share_start);
	return r;
}

/* Sends this connection's share of the round's set: its 2 MiB chunks (protocol.h). */
static int send_share(struct conn *c)
{
	int r;

	c->share_start = vmm__xport_bytes(c->xp);
	r = vmm__rounds_walk(c->s->rs, c->idx, c->s->n, send_chunk, c);
	return r ? r : vmm__ram_tx_flush(c->tx, c->xp);
}

static void *share_thread(void *arg)
{
	struct conn *c = arg;

	c->err = vmm__sandbox_thread(VMM_THREAD_MIGRATION, "vmm-mig-send");
	if (!c->err)
		c->err = send_share(c);
	return NULL;
}

/* Sends the round's set over every connection at once. */
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
	if (vmm__move_cancelled(s->vm))
		return vmm__err(VMM_ECANCELED, "migration canceled");
	return 0;
}

static int sink_begin(void *ctx, uint32_t round, uint64_t npages, int final)
{
	struct sender *s = ctx;
	Vmm__Stream__Round m = VMM__STREAM__ROUND__INIT;

	snapshot_tx_stats(s, s->before);
	s->round_t0 = vmm__now_ns();
	s->final = final;
	s->round = round;
	m.has_round = 1, m.round = round;
	m.has_pages = 1, m.pages = npages;
	m.has_final = 1, m.final = final;
	return vmm__stream_write_msg(s->c[0].xp, VMM_REC_ROUND, &m.base);
}

static int sink_copy(void *ctx, struct vmm__rounds *rs)
{
	struct sender *s = ctx;
	int r;

	s->rs = rs;
	r = send_round_pages(s);
	/* The disks' blocks after the round's pages, on connection 0 (disk_stream.h). */
	if (!r && s->disks)
		r = vmm__disk_tx_round(s->disks, s->c[0].xp, s->round == 0);
	if (s->final) /* what is still queued goes with END, the state and COMPLETE */
		return r;
	/* Until the peer has it: otherwise the round's time is the time to fill socket
	 * buffers, the bandwidth looks higher than the link and the downtime estimate lies
	 * (and what is still queued would be paid for in the pause). */
	for (unsigned i = 0; i < s->n && !r; i++)
		r = vmm__xport_wait_sent(s->c[i].xp);
	return r ? r : cancelled(s);
}

static uint64_t sink_pass_bytes(void *ctx)
{
	struct sender *s = ctx;

	return wire_bytes(s) - s->before[3];
}

/* Besides the pages and the final sync, the pause pays for the state's capture and load
 * (rehearsed on the destination at hello) and the hand-over's two round trips
 * (COMPLETE -> READY, GO -> STARTED). */
static uint64_t sink_fixed_ns(void *ctx)
{
	struct sender *s = ctx;

	return 2 * vmm__xport_rtt_ns(s->c[0].xp) + s->state_cost_ns;
}

/* The disk blocks the guest dirtied count in the downtime estimate like its pages. */
static uint64_t sink_extra_bytes(void *ctx)
{
	struct sender *s = ctx;

	return vmm__disk_tx_pending_bytes(s->disks);
}

static void sink_report(void *ctx, const struct vmm__rounds_report *rep)
{
	struct sender *s = ctx;
	struct vmm_migrate_round rd = { .round = rep->round, .throttle_pct = rep->throttle_pct };

	add_tx_stats(s, &rd, s->before);
	rd.duration_ns = rep->m.duration_ns;
	rd.bandwidth_mbps = vmm__policy_bandwidth(&rep->m) / 1e6;
	rd.dirty_rate_mbps = vmm__policy_dirty_rate(&rep->m) / 1e6;
	rd.remaining_bytes = rep->m.remaining_bytes;
	rd.expected_downtime_ns = rep->expected_downtime_ns;
	s->st.rounds = rep->round + 1;
	s->st.expected_downtime_ns = rd.expected_downtime_ns;
	s->st.disk_bytes = vmm__disk_tx_bytes(s->disks);
	s->st.max_throttle_pct = rep->max_throttle_pct;
	if (s->o.progress)
		s->o.progress(s->o.progress_opaque, &rd, &s->st);
}

/* Waits until the destination has applied everything sent so far (protocol.h, SYNC), so
 * that the pause only pays for the last pages, not for a receive backlog. */
static int sync_destination(void *ctx)
{
	struct sender *s = ctx;
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

static void sink_stable(void *ctx)
{
	struct sender *s = ctx;

	for (unsigned i = 0; i < s->n; i++)
		vmm__ram_tx_set_stable(s->c[i].tx, 1);
}

/* ---- after the last pages: the state and the commit */

static int send_state(struct sender *s)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t t0 = vmm__now_ns();
	int r = vmm__move_state_encode(s->vm, &buf, &len);

	s->st.capture_ns = vmm__now_ns() - t0;
	if (!r)
		r = vmm__stream_write_rec(s->c[0].xp, VMM_REC_STATE, buf, len);
	s->st.state_bytes = len;
	free(buf);
	return r;
}

/* Reads the destination's READY: it holds the whole guest, loaded and paused. Until then
 * the source owns the guest and any failure resumes it. */
static int wait_ready(struct sender *s)
{
	Vmm__Stream__Ready *ok;
	struct vmm__rec_hdr h;
	uint8_t *p;
	int r = vmm__stream_read_rec(s->c[0].xp, VMM_REC_READY, &h, &p);

	if (r)
		return r;
	ok = vmm__stream__ready__unpack(NULL, h.len, p);
	free(p);
	if (!ok)
		return vmm__err(VMM_EPROTO, "unparsable ready record");
	s->st.apply_ns = ok->has_apply_ns ? ok->apply_ns : 0;
	vmm__stream__ready__free_unpacked(ok, NULL);
	return 0;
}

/* After GO: STARTED says where the guest is. Anything else (no answer in time, the link
 * reset, garbage) leaves it unknown: the destination may have got GO and started. */
static int wait_started(struct sender *s)
{
	Vmm__Stream__Started *st;
	struct vmm__rec_hdr h;
	uint8_t *p;
	char why[512];
	int r = vmm__stream_read_rec(s->c[0].xp, VMM_REC_STARTED, &h, &p);

	if (r) {
		snprintf(why, sizeof(why), "%s", vmm_last_error());
		return vmm__err(VMM_EINDOUBT, "GO sent, no STARTED from the destination (%s: %s): "
				"the guest may run there", vmm_err_name(r), why);
	}
	st = vmm__stream__started__unpack(NULL, h.len, p);
	free(p);
	if (!st)
		return vmm__err(VMM_EINDOUBT, "GO sent, unparsable started record");
	r = st->has_error ? st->error : 0;
	if (r > 0 || r < -1000) /* not a VMM_E* code, but still a failed start */
		r = VMM_EPROTO;
	if (r) {
		/* The destination's start failed and it discarded its copy (protocol.h): the
		 * guest is ours again. */
		r = vmm__err(r, "destination could not start the guest: %s",
			     st->message ? st->message : "");
		vmm__move_let_go(s->vm, 0);
	}
	vmm__stream__started__free_unpacked(st, NULL);
	return r;
}

/* The hand-over (protocol.h): the destination said READY; GO is the source's last word.
 * From the moment GO may be on the wire the source never resumes by itself, and cancels are
 * ignored (vmm__move_let_go). */
static int hand_over(struct sender *s)
{
	int r = cancelled(s);

	if (!r)
		r = vmm__move_let_go(s->vm, 1);
	if (r)
		return r;
	/* The guest's disks, flushed, let go with it: the destination takes their locks
	 * before it starts (shared storage). A failed flush keeps the guest here. Copied
	 * disks are two files: each side keeps its own lock. */
	r = s->disks ? 0 : vmm__move_devices_release(s->vm);
	if (r) {
		vmm__move_let_go(s->vm, 0);
		return r;
	}
	s->let_go = 1;
	/* The cancel flag cannot rise any more; the transport stops watching it anyway. */
	vmm__xport_set_opts(s->c[0].xp, s->o.timeout_ms, NULL);
	r = vmm__stream_write_rec(s->c[0].xp, VMM_REC_GO, NULL, 0);
	if (r) {
		char why[512];

		snprintf(why, sizeof(why), "%s", vmm_last_error());
		return vmm__err(VMM_EINDOUBT, "writing GO failed (%s: %s): it may have arrived",
				vmm_err_name(r), why);
	}
	return wait_started(s);
}

/* The final round's pages are on their way: END, the state, COMPLETE, then the hand-over. */
static int commit(struct sender *s, uint64_t t_pause)
{
	struct vmm_migrate_round rd = { .final = 1, .round = s->st.rounds };
	Vmm__Stream__Complete done = VMM__STREAM__COMPLETE__INIT;
	int r = 0;

	for (unsigned i = 0; i < s->n && !r; i++)
		r = vmm__stream_write_rec(s->c[i].xp, VMM_REC_END, NULL, 0);
	if (!r)
		r = send_state(s);
	add_tx_stats(s, &rd, s->before);
	done.has_pages_total = 1, done.pages_total = s->st.pages;
	done.has_state_bytes = 1, done.state_bytes = s->st.state_bytes;
	if (!r)
		r = vmm__stream_write_msg(s->c[0].xp, VMM_REC_COMPLETE, &done.base);
	if (!r)
		r = wait_ready(s);
	if (!r)
		r = hand_over(s);
	if (r)
		return r;
	rd.duration_ns = vmm__now_ns() - s->round_t0;
	rd.bandwidth_mbps = (double)rd.wire_bytes / ((double)rd.duration_ns / 1e9) / 1e6;
	s->st.rounds++;
	s->st.downtime_ns = vmm__now_ns() - t_pause;
	s->st.wire_bytes = wire_bytes(s);
	if (s->o.progress)
		s->o.progress(s->o.progress_opaque, &rd, &s->st);
	return 0;
}

/* ---- connections and hello */

/* With TLS: the handshake on c's socket, under the transport's timeout and the cancel
 * flag; from then on c's transport encrypts, on whichever thread writes to it (each extra
 * connection's own). A peer that does not authenticate ends the migration before any
 * byte of the stream is sent. */
static int secure(struct sender *s, struct conn *c)
{
	struct vmm__tls_conn *t;
	int r;

	if (!s->tls)
		return 0;
	r = vmm__tls_conn_new(s->tls, c->fd, &t);
	if (r)
		return r;
	r = vmm__tls_handshake(t, s->o.timeout_ms, vmm__move_cancel_flag(s->vm));
	if (r) {
		char why[512];

		snprintf(why, sizeof(why), "%s", vmm_last_error());
		vmm__tls_conn_free(t);
		return vmm__err(r, "connection %u: %s", c->idx, why);
	}
	s->st.tls_connections++;
	s->st.ktls_connections += (uint32_t)vmm__tls_conn_ktls_send(t);
	return vmm__xport_set_tls(c->xp, t);
}

static int hello(struct sender *s)
{
	struct vmm__hello_buf hb;
	Vmm__Stream__HelloReply *rep;
	struct vmm__rec_hdr h;
	uint8_t *p;
	uint64_t feat = VMM_FEAT_RAM_BATCHES | VMM_FEAT_HANDOVER |
			(s->o.compress != VMM_MIGRATE_COMPRESS_OFF ? VMM_FEAT_ZSTD : 0) |
			(s->o.disks == VMM_MIGRATE_DISKS_COPY ? VMM_FEAT_DISKS : 0);
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
	/* The extra connections introduce themselves with the session id; with TLS, each
	 * authenticates first (only now: the destination takes them after its reply). */
	for (unsigned i = 1; i < s->n && !r; i++) {
		Vmm__Stream__Hello j = VMM__STREAM__HELLO__INIT;

		r = secure(s, &s->c[i]);
		if (r)
			break;
		j.has_session_id = 1;
		j.session_id = hb.hello.session_id;
		j.has_conn_index = 1, j.conn_index = i;
		r = vmm__stream_write_preamble(s->c[i].xp);
		if (!r)
			r = vmm__stream_write_msg(s->c[i].xp, VMM_REC_HELLO, &j.base);
	}
	return r;
}

static int setup(struct sender *s, struct vmm_vm *vm, const int *fds, const char *host)
{
	enum vmm__compress mode = s->o.compress == VMM_MIGRATE_COMPRESS_ZSTD ? VMM_COMPRESS_ZSTD
				  : s->o.compress == VMM_MIGRATE_COMPRESS_AUTO ? VMM_COMPRESS_AUTO
									 : VMM_COMPRESS_OFF;
	struct vmm__xport_opts xo = { .timeout_ms = s->o.timeout_ms,
				      .cancel = vmm__move_cancel_flag(vm) };
	struct vmm__memory *mem = vmm__move_ram(vm);
	int r = 0;

	s->vm = vm;
	if (getrandom(s->session, sizeof(s->session), 0) != sizeof(s->session))
		return vmm__err_sys(VMM_ESYS, "getrandom");
	/* Credentials are loaded and checked before anything is sent. */
	if (s->o.tls && (r = vmm__tls_new(s->o.tls, 0, host, &s->tls)))
		return r;
	for (unsigned i = 0; i < s->n && !r; i++) {
		s->c[i].s = s;
		s->c[i].idx = i;
		s->c[i].fd = fds[i];
		r = vmm__xport_new(fds[i], &xo, &s->c[i].xp);
		if (!r)
			r = vmm__ram_tx_new(mem->host, mem->size / VMM_PAGE_SIZE, mode, 1,
					    &s->c[i].tx);
	}
	return r;
}

static void teardown(struct sender *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		vmm__ram_tx_free(s->c[i].tx);
		vmm__xport_free(s->c[i].xp);
	}
	vmm__tls_free(s->tls);
	vmm__disk_tx_free(s->disks);
}

static int migrate(struct sender *s)
{
	const struct vmm__rounds_sink sink = {
		.ctx = s,
		.begin = sink_begin,
		.copy = sink_copy,
		.pass_bytes = sink_pass_bytes,
		.fixed_ns = sink_fixed_ns,
		.report = sink_report,
		.extra_bytes = sink_extra_bytes,
		.before_pause = sync_destination,
		.stable = sink_stable,
	};
	const struct vmm__rounds_opts ro = {
		.live = 1,
		.downtime_limit_ns = s->o.downtime_limit_ns,
		.max_rounds = s->o.max_rounds,
		.max_time_ns = s->o.max_time_ns,
		.t0 = s->t0,
		.auto_converge = s->o.auto_converge,
		.stopped_why = "migrate: the VM stopped during pre-copy",
	};
	int r = secure(s, &s->c[0]);

	if (!r)
		r = hello(s);
	if (r)
		return r;
	if (!vmm__dirty_backend(vmm__move_dirty(s->vm))) {
		r = vmm__dirty_start(vmm__move_dirty(s->vm));
		if (r)
			return r;
		s->tracking = 1;
	}
	/* Tracking starts before the layout and round 0 read anything. */
	if (s->o.disks == VMM_MIGRATE_DISKS_COPY) {
		r = vmm__disk_tx_new(s->vm, &s->disks);
		if (!r)
			r = vmm__disk_tx_layout(s->disks, s->c[0].xp);
		if (r)
			return r;
	}
	/* A guest that exited during pre-copy (STOPPED, not PAUSED) fails the pause: sending
	 * it anyway would make the destination start vCPUs past the guest's exit, where it
	 * hangs, while the exit itself is reported nowhere. The caller keeps its stopped VM,
	 * whose vmm_vm_wait() still tells how the guest ended. */
	r = vmm__rounds_run(s->vm, &ro, &sink, &s->res);
	s->st.pause_ns = s->res.pause_ns;
	s->st.final_sync_ns = s->res.final_sync_ns;
	if (s->res.max_throttle_pct > s->st.max_throttle_pct)
		s->st.max_throttle_pct = s->res.max_throttle_pct;
	return r ? r : commit(s, s->res.t_pause);
}

/* Tells the destination why, briefly: a dead or stalled peer must not hold up the
 * source's recovery, and the first cause stays the one reported. */
static void notify_failure(struct sender *s, int r)
{
	char cause[512];

	if (!s->c[0].xp || r == VMM_EPEER || r == VMM_EREFUSED || r == VMM_EINDOUBT ||
	    r == VMM_EAUTH || r == VMM_ETLS)
		return;
	/* Never a clear-text record on a connection that was to be encrypted. */
	if (s->tls && !vmm__xport_tls(s->c[0].xp))
		return;
	snprintf(cause, sizeof(cause), "%s", vmm_last_error());
	vmm__xport_set_opts(s->c[0].xp, 500, NULL);
	vmm__stream_send_error(s->c[0].xp, r, cause);
	vmm__err(r, "%s", cause);
}

/* A failed send keeps the guest and runs on as before: its disk locks, let go just before
 * a GO whose start then failed, are taken back first. If another process took one
 * meanwhile the guest must not run here either: it stays paused, warned (resume refuses
 * with VMM_ELOCKED until the lock is free). The send's own error stays the one reported. */
static void keep_guest(struct sender *s, struct vmm_vm *vm, int r)
{
	char cause[512];

	snprintf(cause, sizeof(cause), "%s", vmm_last_error());
	if (vmm__move_devices_acquire(vm))
		vmm__move_warn(vm, vmm_last_error());
	else if (s->res.paused_by_us)
		vmm__move_resume(vm);
	vmm__err(r, "%s", cause);
}

static int send_fds(struct vmm_vm *vm, const int *fds, unsigned nfds, const char *host,
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
	s->t0 = vmm__now_ns();
	st = vmm_vm_run_state(vm);
	if (s->n < 1 || s->n > VMM_MIGRATE_MAX_CONNS || nfds != s->n)
		r = vmm__err(VMM_EINVAL, "%u connections for %u sockets (1..%d)", s->n, nfds,
			     VMM_MIGRATE_MAX_CONNS);
	else if (s->o.disks > VMM_MIGRATE_DISKS_COPY)
		r = vmm__err(VMM_EINVAL, "migrate: disks mode %u (0 shared, 1 copy)", s->o.disks);
	else if (vmm__move_in_doubt(vm))
		r = vmm__err(VMM_EINDOUBT, "migrate: the last migration's outcome is in doubt "
			     "(vmm_migrate_resolve decides)");
	else if ((st != VMM_VM_RUNNING && st != VMM_VM_PAUSED) || vmm_vm_migrated(vm))
		r = vmm__err(VMM_ESTATE, "migrate: the VM is %s", vmm_vm_run_state_name(st));
	else
		r = 0;
	if (!r)
		r = setup(s, vm, fds, host);
	if (!r)
		r = migrate(s);
	vmm__move_set_throttle(vm, 0);
	if (s->tracking)
		vmm__dirty_stop(vmm__move_dirty(vm));
	if (!r) {
		vmm__move_set_migrated(vm);
	} else if (r == VMM_EINDOUBT && s->let_go) {
		/* GO went out, STARTED did not come back: the guest stays paused here until
		 * vmm_migrate_resolve says which side keeps it (protocol.h). */
		vmm__move_set_in_doubt(vm, VMM__SIDE_SOURCE);
	} else {
		/* Tell the destination why, if it still listens, and run on as before. */
		notify_failure(s, r);
		keep_guest(s, vm, r);
	}
	s->st.total_ns = vmm__now_ns() - s->t0;
	s->st.disk_bytes = vmm__disk_tx_bytes(s->disks);
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
	int r;

	if (!vm)
		return vmm__err(VMM_EINVAL, "NULL argument");
	/* The VM is this send's until it returns (vm_move.h); the cancel flag is cleared only
	 * once it is, so a send refused here cannot clear another send's cancel. */
	r = vmm__job_begin(vm, VMM__JOB_MIGRATE);
	if (r)
		return r;
	vmm__move_cancel(vm, 0);
	r = send_fds(vm, fds, nfds, NULL, opts, stats);
	vmm__job_end(vm);
	return r;
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
	r = vmm__job_begin(vm, VMM__JOB_MIGRATE); /* from before the connect: see above */
	if (r)
		return r;
	/* Cleared before connecting, so a cancel during the connect is not lost. */
	vmm__move_cancel(vm, 0);
	/* The control connection first: the destination accepts the rest after its hello
	 * reply, but the kernel's backlog holds them until then. */
	for (; n < o.connections && !r; n++)
		r = dial(host, port, o.timeout_ms, &fds[n]);
	if (r)
		n--;
	if (!r && vmm__move_cancelled(vm))
		r = vmm__err(VMM_ECANCELED, "migration canceled");
	if (!r)
		r = send_fds(vm, fds, n, host, &o, stats);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	vmm__job_end(vm);
	return r;
}
