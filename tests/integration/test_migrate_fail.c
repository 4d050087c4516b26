/* Live-migration failure injection: destinations that refuse, vanish, fall silent, die or talk
 * garbage at each phase, a hostile source against a real receiver, and cancel. Before the source
 * lets go (GO, protocol.h) its VM must run on untouched, its guest's self-check pass, and a retry
 * succeed; after GO without STARTED it must stay paused, in doubt, until resolved. (Every step of
 * the hand-over on both sides: tests/unit/test_handover.c.) */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"
#include "migrate_util.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "stream.pb-c.h"
#include "migrate/xport.h"

/* The source guest: memcheck rewrites 64 MiB at 200 MB/s, so every generation dirties the
 * whole working set (rounds never run out of work) and takes about a third of a second.
 * MC_GENS leaves the guest running well past the failed attempt and the retry. In the
 * emulated KVM host, where the link is about ten times slower, half the working set (round
 * 0 still outlasts vanish_round0's 20 batches) at a fifth of the rate, so that pre-copy
 * still converges and the guest still outlasts it (set in main). */
#define VM_MIB 128
#define MC_GENS 14
static int mc_mem = 64, mc_rate = 200;

#define FAKE_TIMEOUT_MS 20000 /* a fake peer never waits forever, even if the test is broken */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Deterministic "random" bytes, so a failure reproduces. */
static void garbage(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		p[i] = (uint8_t)seed;
	}
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* ---- the source VM */

struct src {
	struct vmm_vm *vm;
	struct tu_output out;
};

static void src_start(struct src *s)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "mem=%d gens=%d rate=%d", mc_mem, MC_GENS, mc_rate);
	tu_output_init(&s->out);
	s->vm = tu_vm_new("memcheck.elf", cmd, VM_MIB, 1, &s->out);
	assert_int_equal(vmm_vm_start(s->vm), 0);
	tu_wait_lines(&s->out, s->vm, 3, 30); /* the banner and two generations */
}

/* The rule under test: the failed send left the VM running, not migrated, and the guest
 * still makes progress (a resumed-but-wedged guest would pass the state check alone). */
static void src_survived(struct src *s)
{
	size_t n = tu_output_lines(&s->out);

	assert_int_equal(vmm_vm_run_state(s->vm), VMM_VM_RUNNING);
	assert_int_equal(vmm_vm_migrated(s->vm), 0);
	tu_wait_lines(&s->out, s->vm, n + 1, 30);
}

static char *strip_cr(char *s)
{
	char *w = s;

	for (char *p = s; *p; p++)
		if (*p != '\r')
			*w++ = *p;
	*w = '\0';
	return s;
}

/* What memcheck prints when no page was lost: source and destination output together
 * must be exactly this, so nothing was repeated or skipped across the failed attempt. */
static char *expected_output(void)
{
	size_t cap = 64 * (MC_GENS + 2), len;
	char *s = malloc(cap);

	assert_non_null(s);
	len = (size_t)snprintf(s, cap, "memcheck mem %d gens %d\n", mc_mem, MC_GENS);
	for (int g = 1; g <= MC_GENS; g++)
		len += (size_t)snprintf(s + len, cap - len, "memcheck gen %d ok\n", g);
	snprintf(s + len, cap - len, "memcheck done ok\n");
	return s;
}

/* Migrates the survivor for real and checks the guest finishes intact on the destination. */
static void src_retry(struct src *s)
{
	struct vmm_migrate_opts o;
	struct mu_dest d;
	char *before, *after, *all, *want = expected_output();
	int r, status;

	mu_dest_start(&d, 0);
	vmm_migrate_opts_init(&o);
	print_message("    retry at generation %zu of %d\n", tu_output_lines(&s->out) - 1, MC_GENS);
	r = mu_send(s->vm, &d, &o, NULL);
	if (r) {
		kill(d.pid, SIGKILL);
		fail_msg("retry: %s (%s), guest %s", vmm_strerror(r), vmm_last_error(),
			 vmm_vm_run_state_name(vmm_vm_run_state(s->vm)));
	}
	assert_int_equal(vmm_vm_run_state(s->vm), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_migrated(s->vm), 1);
	before = strip_cr(tu_output_copy(&s->out));
	vmm_vm_destroy(s->vm);
	tu_output_free(&s->out);
	after = strip_cr(mu_dest_finish(&d, &status));
	all = malloc(strlen(before) + strlen(after) + 1);
	assert_non_null(all);
	strcpy(all, before);
	strcat(all, after);
	if (status != 0 || strstr(all, "CORRUPT") || strcmp(tu_last_line(after), "memcheck done ok") ||
	    strcmp(all, want))
		fail_msg("retry: destination exit %d\n--- source:\n%s--- destination:\n%s", status,
			 before, after);
	free(before), free(after), free(all), free(want);
}

/* ---- a fake destination: a thread speaking the protocol through the internal stream API */

enum fake_act {
	FAKE_CLOSE_AFTER_RAM,     /* close after `arg` RAM records (round 0) */
	FAKE_CLOSE_AT_ROUND,      /* close on the ROUND marker numbered `arg` */
	FAKE_CLOSE_AT_FINAL,      /* close on the final ROUND marker (stop-and-copy) */
	FAKE_CLOSE_AT_COMPLETE,   /* read through COMPLETE, close without READY */
	FAKE_SILENT_AT_COMPLETE,  /* read through COMPLETE, then neither answer nor close */
	FAKE_CLOSE_AFTER_GO,      /* answer COMPLETE with READY, read GO, close without STARTED */
	FAKE_START_FAILS,         /* READY, GO, then STARTED {VMM_ESYS}: its start failed */
	FAKE_REPLY_RAW_GARBAGE,   /* answer HELLO with random bytes */
	FAKE_REPLY_UNPARSABLE,    /* answer HELLO with a HELLO_REPLY record that does not parse */
	FAKE_GARBAGE_BACK,        /* accept, then write garbage back while the source sends */
	FAKE_DRAIN,               /* accept and read whatever comes (cancel) */
};

struct fake {
	enum fake_act act;
	unsigned arg;
	struct vmm_vm *vm; /* the source VM, watched from the peer's side */
	int lfd;
	uint16_t port;
	pthread_t thread;
	int release;       /* FAKE_SILENT_AT_COMPLETE: the test is done waiting (atomic) */
	/* what the fake saw */
	unsigned ram_recs, rounds, last_round;
	int reached;       /* the scenario's trigger fired */
	enum vmm_vm_run_state state_at_trigger;
	uint64_t t_trigger;
	int peer_code;     /* code of the ERROR record the source sent at the end, 0: none */
	char peer_msg[256];
	char err[256];     /* the fake's own complaint (assertions belong to the main thread) */
	uint8_t buf[64 << 10];
};

static int fake_fail(struct fake *f, const char *what, int r)
{
	if (!f->err[0])
		snprintf(f->err, sizeof(f->err), "%s: %s (%s)", what, vmm_strerror(r),
			 vmm_last_error());
	return r ? r : -1;
}

static int skip_payload(struct fake *f, struct vmm__xport *xp, uint32_t len)
{
	while (len) {
		uint32_t n = len < sizeof(f->buf) ? len : sizeof(f->buf);
		int r = vmm__xport_read(xp, f->buf, n);

		if (r)
			return r;
		len -= n;
	}
	return 0;
}

static int send_reply(struct vmm__xport *xp)
{
	Vmm__Stream__HelloReply m = VMM__STREAM__HELLO_REPLY__INIT;

	m.has_accepted = 1, m.accepted = 1;
	m.has_version_major = 1, m.version_major = VMM_STREAM_MAJOR;
	m.has_version_minor = 1, m.version_minor = VMM_STREAM_MINOR;
	return vmm__stream_write_msg(xp, VMM_REC_HELLO_REPLY, &m.base);
}

/* Reads the ERROR record a failing source sends before it lets go, if any. */
static void read_peer_error(struct fake *f, struct vmm__xport *xp)
{
	struct vmm__rec_hdr h;
	uint8_t *p;
	Vmm__Stream__Error *e;

	for (;;) {
		if (vmm__stream_read_hdr(xp, &h))
			return;
		if (h.type == VMM_REC_ERROR)
			break;
		if (skip_payload(f, xp, h.len))
			return;
	}
	p = malloc(h.len ? h.len : 1);
	if (p && !vmm__xport_read(xp, p, h.len) && (e = vmm__stream__error__unpack(NULL, h.len, p))) {
		f->peer_code = e->code;
		snprintf(f->peer_msg, sizeof(f->peer_msg), "%s", e->message ? e->message : "");
		vmm__stream__error__free_unpacked(e, NULL);
	}
	free(p);
}

static void trigger(struct fake *f)
{
	f->reached = 1;
	f->t_trigger = now_ns();
	f->state_at_trigger = vmm_vm_run_state(f->vm);
}

/* The exchange after an accepted hello; returns when the fake is done with the socket. */
static void fake_records(struct fake *f, struct vmm__xport *xp)
{
	struct vmm__rec_hdr h;
	Vmm__Stream__Round *m;
	int r;

	for (;;) {
		r = vmm__stream_read_hdr(xp, &h);
		if (r) {
			/* A draining fake learns here that the source let go without a word. */
			if (f->act != FAKE_DRAIN)
				fake_fail(f, "record header", r);
			return;
		}
		switch (h.type) {
		case VMM_REC_RAM:
			r = skip_payload(f, xp, h.len);
			if (!r && ++f->ram_recs == f->arg && f->act == FAKE_CLOSE_AFTER_RAM) {
				trigger(f);
				return;
			}
			break;
		case VMM_REC_ROUND:
			r = vmm__xport_read(xp, f->buf, h.len);
			if (r)
				break;
			m = vmm__stream__round__unpack(NULL, h.len, f->buf);
			if (!m) {
				fake_fail(f, "unparsable round marker", 0);
				return;
			}
			f->rounds++;
			f->last_round = m->round;
			if ((f->act == FAKE_CLOSE_AT_ROUND && m->round == f->arg && !m->final) ||
			    (f->act == FAKE_CLOSE_AT_FINAL && m->final)) {
				vmm__stream__round__free_unpacked(m, NULL);
				trigger(f);
				return;
			}
			vmm__stream__round__free_unpacked(m, NULL);
			break;
		case VMM_REC_END:
		case VMM_REC_STATE:
			r = skip_payload(f, xp, h.len);
			break;
		case VMM_REC_SYNC: /* the barrier before stop-and-copy: echo it */
			if (f->act == FAKE_GARBAGE_BACK) {
				/* The source reads our garbage where it waits for the echo. */
				f->reached = 1;
				read_peer_error(f, xp);
				return;
			}
			r = vmm__stream_write_rec(xp, VMM_REC_SYNC, NULL, 0);
			break;
		case VMM_REC_COMPLETE:
			r = skip_payload(f, xp, h.len);
			if (r)
				break;
			if (f->act == FAKE_CLOSE_AT_COMPLETE) {
				trigger(f);
				return;
			}
			if (f->act == FAKE_CLOSE_AFTER_GO || f->act == FAKE_START_FAILS) {
				Vmm__Stream__Ready ok = VMM__STREAM__READY__INIT;
				Vmm__Stream__Started st = VMM__STREAM__STARTED__INIT;
				uint8_t *p = NULL;

				r = vmm__stream_write_msg(xp, VMM_REC_READY, &ok.base);
				if (!r)
					r = vmm__stream_read_rec(xp, VMM_REC_GO, &h, &p);
				free(p);
				st.has_error = 1, st.error = VMM_ESYS;
				st.message = "no vCPU threads here";
				if (!r && f->act == FAKE_START_FAILS)
					r = vmm__stream_write_msg(xp, VMM_REC_STARTED, &st.base);
				if (r) {
					fake_fail(f, "ready/go", r);
					return;
				}
				trigger(f);
				return;
			}
			if (f->act == FAKE_SILENT_AT_COMPLETE) {
				trigger(f);
				for (int i = 0; i < FAKE_TIMEOUT_MS / 10 &&
						!__atomic_load_n(&f->release, __ATOMIC_ACQUIRE); i++)
					tu_sleep_us(10000);
				read_peer_error(f, xp);
				return;
			}
			if (f->act == FAKE_GARBAGE_BACK) {
				/* No READY ever comes: the source must now read our garbage. */
				f->reached = 1;
				read_peer_error(f, xp);
				return;
			}
			fake_fail(f, "the source completed before the trigger", 0);
			return;
		case VMM_REC_ERROR:
			r = vmm__xport_read(xp, f->buf, h.len);
			if (!r) {
				Vmm__Stream__Error *e = vmm__stream__error__unpack(NULL, h.len, f->buf);

				if (e) {
					f->peer_code = e->code;
					snprintf(f->peer_msg, sizeof(f->peer_msg), "%s",
						 e->message ? e->message : "");
					vmm__stream__error__free_unpacked(e, NULL);
				}
			}
			return;
		default:
			fake_fail(f, "unexpected record", 0);
			return;
		}
		if (r) {
			if (f->act != FAKE_DRAIN)
				fake_fail(f, vmm__rec_name(h.type), r);
			return;
		}
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct vmm__xport_opts xo = { .timeout_ms = FAKE_TIMEOUT_MS };
	struct vmm__xport *xp = NULL;
	struct pollfd pf = { .fd = f->lfd, .events = POLLIN };
	struct vmm__rec_hdr h;
	Vmm__Stream__Hello *hello = NULL;
	uint32_t maj, min;
	uint8_t *p = NULL, junk[64];
	int fd, r;

	if (poll(&pf, 1, FAKE_TIMEOUT_MS) != 1 || (fd = accept(f->lfd, NULL, NULL)) < 0) {
		fake_fail(f, "no connection", 0);
		return NULL;
	}
	r = vmm__xport_new(fd, &xo, &xp);
	if (!r)
		r = vmm__stream_read_preamble(xp, &maj, &min);
	if (!r)
		r = vmm__stream_read_rec(xp, VMM_REC_HELLO, &h, &p);
	if (!r && !(hello = vmm__stream__hello__unpack(NULL, h.len, p)))
		r = fake_fail(f, "unparsable hello", 0);
	if (!r && (!hello->shape || hello->shape->mem_size != (uint64_t)VM_MIB << 20 ||
		   hello->connections != 1))
		r = fake_fail(f, "unexpected hello", 0);
	vmm__stream__hello__free_unpacked(hello, NULL);
	free(p);
	if (r) {
		fake_fail(f, "hello", r);
		goto out;
	}
	switch (f->act) {
	case FAKE_REPLY_RAW_GARBAGE:
		/* Garbage the size of one record header: the source reads all of it, so its
		 * close is a FIN, not an RST that would discard its ERROR record in flight. */
		garbage(junk, sizeof(struct vmm__rec_hdr), 0x5eed);
		r = vmm__xport_write(xp, junk, sizeof(struct vmm__rec_hdr));
		f->reached = 1;
		break;
	case FAKE_REPLY_UNPARSABLE:
		/* 0xff...: field 31 with wire type 7, which protobuf does not have */
		memset(junk, 0xff, sizeof(junk));
		r = vmm__stream_write_rec(xp, VMM_REC_HELLO_REPLY, junk, 16);
		f->reached = 1;
		break;
	case FAKE_GARBAGE_BACK:
		r = send_reply(xp);
		garbage(junk, sizeof(struct vmm__rec_hdr), 0xbad); /* as above */
		if (!r)
			r = vmm__xport_write(xp, junk, sizeof(struct vmm__rec_hdr));
		break;
	default:
		r = send_reply(xp);
		break;
	}
	if (r)
		fake_fail(f, "reply", r);
	else if (f->act == FAKE_REPLY_RAW_GARBAGE || f->act == FAKE_REPLY_UNPARSABLE)
		read_peer_error(f, xp);
	else
		fake_records(f, xp);
out:
	vmm__xport_free(xp);
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_act act, unsigned arg, struct vmm_vm *vm)
{
	memset(f, 0, sizeof(*f));
	f->act = act;
	f->arg = arg;
	f->vm = vm;
	f->lfd = mu_listen(&f->port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_finish(struct fake *f)
{
	__atomic_store_n(&f->release, 1, __ATOMIC_RELEASE);
	pthread_join(f->thread, NULL);
	close(f->lfd);
	if (f->err[0])
		fail_msg("fake destination: %s", f->err);
	assert_true(f->reached || f->act == FAKE_DRAIN);
}

/* Sends to the fake; returns the code and leaves its detail in `detail`. */
static int send_fake(struct src *s, struct fake *f, const struct vmm_migrate_opts *o, char *detail,
		     size_t len)
{
	int r = vmm_migrate_send_to(s->vm, "127.0.0.1", f->port, o, NULL);

	snprintf(detail, len, "%s", vmm_last_error());
	print_message("    -> %s: %s\n", vmm_err_name(r), detail);
	return r;
}

/* A fake scenario from start to retry: the send must fail with `want`. */
static void fake_case(enum fake_act act, unsigned arg, const struct vmm_migrate_opts *o, int want,
		      struct fake *f, char *detail, size_t dlen)
{
	struct src s;
	int r;

	src_start(&s);
	fake_start(f, act, arg, s.vm);
	r = send_fake(&s, f, o, detail, dlen);
	fake_finish(f);
	assert_int_equal(r, want);
	assert_true(detail[0]);
	src_survived(&s);
	src_retry(&s);
}

/* ---- scenarios against a fake destination */

static void vanish_round0(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_CLOSE_AFTER_RAM, 20, NULL, VMM_EPEER, &f, why, sizeof(why));
	assert_int_equal(f.rounds, 1);
}

static void vanish_round_k(void **state)
{
	struct vmm_migrate_opts o;
	struct fake f;
	char why[512];

	/* A 1 ms downtime limit and a capped link: the dirtying guest never converges, so
	 * round 2 comes. */
	vmm_migrate_opts_init(&o);
	o.downtime_limit_ns = 1000000;
	o.max_bandwidth = 400000000;
	fake_case(FAKE_CLOSE_AT_ROUND, 2, &o, VMM_EPEER, &f, why, sizeof(why));
	assert_int_equal(f.last_round, 2);
	assert_int_equal(f.rounds, 3);
}

static void vanish_stop_and_copy(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_CLOSE_AT_FINAL, 0, NULL, VMM_EPEER, &f, why, sizeof(why));
	/* The source was paused for stop-and-copy when the peer left (and runs again now,
	 * which fake_case checked). */
	assert_int_equal(f.state_at_trigger, VMM_VM_PAUSED);
}

/* The destination left before READY: it never held the guest, so the source takes it back
 * (1.0 resumed here after COMPLETE too, though the destination may have started). */
static void vanish_before_ready(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_CLOSE_AT_COMPLETE, 0, NULL, VMM_EPEER, &f, why, sizeof(why));
	assert_int_equal(f.state_at_trigger, VMM_VM_PAUSED);
}

/* GO went out and the destination vanished: it may run the guest, so the source stays paused
 * and in doubt, refuses to resume, and runs on only when resolved. */
static void vanish_after_go(void **state)
{
	struct src s;
	struct fake f;
	char why[512];
	int r;

	src_start(&s);
	fake_start(&f, FAKE_CLOSE_AFTER_GO, 0, s.vm);
	r = send_fake(&s, &f, NULL, why, sizeof(why));
	fake_finish(&f);
	assert_int_equal(r, VMM_EINDOUBT);
	assert_non_null(strstr(why, "STARTED"));
	assert_int_equal(vmm_vm_run_state(s.vm), VMM_VM_PAUSED);
	assert_int_equal(vmm_vm_in_doubt(s.vm), 1);
	assert_int_equal(vmm_vm_resume(s.vm), VMM_EINDOUBT);
	tu_sleep_us(200000);
	assert_int_equal(vmm_vm_run_state(s.vm), VMM_VM_PAUSED);
	/* The fake kept nothing: the guest is the source's. */
	assert_int_equal(vmm_migrate_resolve(s.vm, VMM_RESOLVE_RUN), 0);
	assert_int_equal(vmm_vm_in_doubt(s.vm), 0);
	src_survived(&s);
	src_retry(&s);
}

/* The destination got GO but could not start the guest; it says so and keeps nothing: the
 * source takes the guest back by itself. */
static void start_fails_after_go(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_START_FAILS, 0, NULL, VMM_ESYS, &f, why, sizeof(why));
	assert_non_null(strstr(why, "no vCPU threads here"));
}

static void silent_before_ready(void **state)
{
	struct vmm_migrate_opts o;
	struct src s;
	struct fake f;
	char why[512];
	uint64_t t_ret;
	int r;

	vmm_migrate_opts_init(&o);
	o.timeout_ms = 1000;
	src_start(&s);
	fake_start(&f, FAKE_SILENT_AT_COMPLETE, 0, s.vm);
	r = send_fake(&s, &f, &o, why, sizeof(why));
	t_ret = now_ns();
	fake_finish(&f);
	assert_int_equal(r, VMM_ETIMEDOUT);
	assert_non_null(strstr(why, "1000 ms"));
	/* Generous: the point is that 1 s, not the 10 s default or forever, applies. */
	assert_true(t_ret - f.t_trigger < 5000000000ull);
	/* The source told the silent peer why it gave up. */
	assert_int_equal(f.peer_code, VMM_ETIMEDOUT);
	src_survived(&s);
	src_retry(&s);
}

static void garbage_hello_reply(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_REPLY_RAW_GARBAGE, 0, NULL, VMM_EPROTO, &f, why, sizeof(why));
	assert_non_null(strstr(why, "bad record header"));
	assert_int_equal(f.peer_code, VMM_EPROTO);
}

static void unparsable_hello_reply(void **state)
{
	struct fake f;
	char why[512];

	fake_case(FAKE_REPLY_UNPARSABLE, 0, NULL, VMM_EPROTO, &f, why, sizeof(why));
	assert_non_null(strstr(why, "hello reply"));
	assert_int_equal(f.peer_code, VMM_EPROTO);
}

static void garbage_back(void **state)
{
	struct fake f;
	char why[512];

	/* The source reads its control connection only for the SYNC echo before
	 * stop-and-copy and for READY: the garbage must be caught there, never taken for
	 * either. */
	fake_case(FAKE_GARBAGE_BACK, 0, NULL, VMM_EPROTO, &f, why, sizeof(why));
	assert_int_equal(f.peer_code, VMM_EPROTO);
}

struct later {
	pthread_t thread;
	unsigned ms;
	struct vmm_vm *cancel; /* cancel this VM's migration ... */
	pid_t kill;            /* ... or SIGKILL this process */
};

static void *later_main(void *arg)
{
	struct later *l = arg;

	tu_sleep_us(l->ms * 1000);
	if (l->cancel)
		vmm_migrate_cancel(l->cancel);
	else
		kill(l->kill, SIGKILL);
	return NULL;
}

static void later_start(struct later *l)
{
	assert_int_equal(pthread_create(&l->thread, NULL, later_main, l), 0);
}

static void cancel_fake(void **state)
{
	struct vmm_migrate_opts o;
	struct later l = { .ms = 200 };
	struct src s;
	struct fake f;
	char why[512];
	int r;

	/* 40 MB/s: round 0 alone takes well over a second. */
	vmm_migrate_opts_init(&o);
	o.max_bandwidth = 40000000;
	src_start(&s);
	fake_start(&f, FAKE_DRAIN, 0, s.vm);
	l.cancel = s.vm;
	later_start(&l);
	r = send_fake(&s, &f, &o, why, sizeof(why));
	pthread_join(l.thread, NULL);
	fake_finish(&f);
	assert_int_equal(r, VMM_ECANCELED);
	assert_non_null(strstr(why, "cancel"));
	/* The stream just ends (a cancel does not wait on a courtesy ERROR record to a peer
	 * that may be the reason for the cancel); either way no COMPLETE came. */
	assert_true(f.peer_code == 0 || f.peer_code == VMM_ECANCELED);
	src_survived(&s);
	src_retry(&s);
}

/* ---- scenarios against a real destination process */

static void refused_hello(void **state)
{
	struct src s;
	struct mu_dest d;
	char *out;
	int r, status;

	src_start(&s);
	mu_dest_start(&d, 64);
	r = mu_send(s.vm, &d, NULL, NULL);
	print_message("    -> %s: %s\n", vmm_err_name(r), vmm_last_error());
	assert_int_equal(r, VMM_EREFUSED);
	assert_non_null(strstr(vmm_last_error(), "128 MiB"));
	assert_non_null(strstr(vmm_last_error(), "64 MiB"));
	out = mu_dest_finish(&d, &status);
	assert_int_equal(status, 100); /* mu_child_receive: vmm_migrate_receive failed */
	assert_string_equal(out, "");
	free(out);
	src_survived(&s);
	src_retry(&s);
}

/* ---- an embedder's device state: refused by a receiver that did not register the device,
 * carried to one that did (from its prepare callback), with a real guest */

struct devst {
	uint8_t bytes[3000];
	size_t got_len;
	int loads;
	uint8_t got[3000];
};

static int devst_save(void *opaque, uint8_t *buf, size_t cap, size_t *len)
{
	struct devst *d = opaque;

	*len = sizeof(d->bytes);
	if (cap >= sizeof(d->bytes))
		memcpy(buf, d->bytes, sizeof(d->bytes));
	return 0;
}

static int devst_load(void *opaque, const uint8_t *buf, size_t len)
{
	struct devst *d = opaque;

	d->loads++;
	if (len > sizeof(d->got))
		return VMM_ESTATEDATA;
	memcpy(d->got, buf, len);
	d->got_len = len;
	return 0;
}

static int devst_prepare(void *opaque, struct vmm_vm *vm)
{
	return vmm_vm_register_device_state(vm, "test-dev", devst_save, devst_load, opaque);
}

struct inrx {
	int lfd;
	uint16_t port;
	pthread_t thread;
	struct vmm_receive_opts o;
	struct tu_output out;
	int r;
	struct vmm_vm *vm;
};

static void *inrx_main(void *arg)
{
	struct inrx *x = arg;

	x->r = vmm_migrate_receive(x->lfd, &x->o, &x->vm);
	return NULL;
}

/* Migrates s to a receiver thread in this process (prepare may be NULL); returns the send's
 * result, the receive's in *rr and the arrived VM (not started) in x. */
static int inrx_migrate(struct src *s, struct inrx *x, vmm_prepare_fn prepare, void *opaque,
			int *rr)
{
	int r;

	memset(x, 0, sizeof(*x));
	tu_output_init(&x->out);
	vmm_receive_opts_init(&x->o);
	x->o.no_start = 1;
	x->o.serial_out = tu_output_sink, x->o.serial_opaque = &x->out;
	x->o.prepare = prepare, x->o.prepare_opaque = opaque;
	x->lfd = mu_listen(&x->port);
	assert_int_equal(pthread_create(&x->thread, NULL, inrx_main, x), 0);
	r = vmm_migrate_send_to(s->vm, "127.0.0.1", x->port, NULL, NULL);
	print_message("    send -> %s: %s\n", vmm_err_name(r), vmm_last_error());
	pthread_join(x->thread, NULL);
	close(x->lfd);
	*rr = x->r;
	return r;
}

static void device_state_prepare(void **state)
{
	struct devst src_dev, dst_dev;
	struct inrx x;
	struct src s;
	struct vmm_exit ex;
	char cmd[96], *before, *after, *all, *want = expected_output();
	int rr;

	memset(&dst_dev, 0, sizeof(dst_dev));
	for (size_t i = 0; i < sizeof(src_dev.bytes); i++)
		src_dev.bytes[i] = (uint8_t)(i * 13 + 1);
	snprintf(cmd, sizeof(cmd), "mem=%d gens=%d rate=%d", mc_mem, MC_GENS, mc_rate);
	tu_output_init(&s.out);
	s.vm = tu_vm_new("memcheck.elf", cmd, VM_MIB, 1, &s.out);
	assert_int_equal(vmm_vm_register_device_state(s.vm, "test-dev", devst_save, devst_load,
						      &src_dev), 0);
	assert_int_equal(vmm_vm_start(s.vm), 0);
	tu_wait_lines(&s.out, s.vm, 3, 30);

	/* No prepare: the destination refuses the state, naming the device, before the
	 * commit; the source runs on. */
	assert_int_equal(inrx_migrate(&s, &x, NULL, NULL, &rr), VMM_EREFUSED);
	assert_int_equal(rr, VMM_ESTATEDATA);
	assert_non_null(strstr(vmm_last_error(), "test-dev"));
	assert_null(x.vm);
	tu_output_free(&x.out);
	src_survived(&s);

	/* With it: the device gets its bytes, the guest carries on there, nothing lost. */
	assert_int_equal(inrx_migrate(&s, &x, devst_prepare, &dst_dev, &rr), 0);
	assert_int_equal(rr, 0);
	assert_int_equal(dst_dev.loads, 1);
	assert_int_equal(dst_dev.got_len, sizeof(src_dev.bytes));
	assert_memory_equal(dst_dev.got, src_dev.bytes, sizeof(src_dev.bytes));
	assert_int_equal(vmm_vm_migrated(s.vm), 1);
	before = strip_cr(tu_output_copy(&s.out));
	vmm_vm_destroy(s.vm);
	tu_output_free(&s.out);
	assert_int_equal(vmm_vm_start(x.vm), 0);
	assert_int_equal(vmm_vm_wait(x.vm, 120000 * (int)tu_slowdown(), &ex), 0);
	after = strip_cr(tu_output_copy(&x.out));
	all = malloc(strlen(before) + strlen(after) + 1);
	assert_non_null(all);
	strcpy(all, before);
	strcat(all, after);
	if (ex.reason != VMM_EXIT_GUEST || ex.status != 0 || strcmp(all, want))
		fail_msg("destination: %s status %d\n--- source:\n%s--- destination:\n%s",
			 ex.detail, ex.status, before, after);
	vmm_vm_destroy(x.vm);
	tu_output_free(&x.out);
	free(before), free(after), free(all), free(want);
}

static void dest_killed(void **state)
{
	struct vmm_migrate_opts o;
	struct later l = { .ms = 300 };
	struct src s;
	struct mu_dest d;
	char *out;
	int r, status;

	vmm_migrate_opts_init(&o);
	o.max_bandwidth = 40000000; /* > 1 s of transfer */
	src_start(&s);
	mu_dest_start(&d, 0);
	l.kill = d.pid;
	later_start(&l);
	r = mu_send(s.vm, &d, &o, NULL);
	print_message("    -> %s: %s\n", vmm_err_name(r), vmm_last_error());
	pthread_join(l.thread, NULL);
	assert_int_equal(r, VMM_EPEER);
	out = mu_dest_finish(&d, &status);
	assert_int_equal(status, 128 + SIGKILL);
	free(out);
	src_survived(&s);
	src_retry(&s);
}

static void cancel_real(void **state)
{
	struct vmm_migrate_opts o;
	struct later l = { .ms = 200 };
	struct src s;
	struct mu_dest d;
	char *out;
	int r, status;

	vmm_migrate_opts_init(&o);
	o.max_bandwidth = 40000000;
	src_start(&s);
	mu_dest_start(&d, 0);
	l.cancel = s.vm;
	later_start(&l);
	r = mu_send(s.vm, &d, &o, NULL);
	print_message("    -> %s: %s\n", vmm_err_name(r), vmm_last_error());
	pthread_join(l.thread, NULL);
	assert_int_equal(r, VMM_ECANCELED);
	/* The destination discarded its half-built VM: receive failed, no guest ran. */
	out = mu_dest_finish(&d, &status);
	assert_int_equal(status, 100);
	assert_string_equal(out, "");
	free(out);
	src_survived(&s);
	src_retry(&s);
}

/* ---- a fake source against a real receiver in this process */

#define RX_MIB 8
#define RX_PAGES ((RX_MIB << 20) / 4096)

struct rx {
	int lfd, fd, fds_before;
	uint16_t port;
	pthread_t thread;
	struct vmm__xport *xp;
	int r;              /* vmm_migrate_receive's result */
	struct vmm_vm *vm;  /* and its *out */
	char detail[512];
};

static void *rx_main(void *arg)
{
	struct rx *x = arg;
	struct vmm_receive_opts o;

	vmm_receive_opts_init(&o);
	o.timeout_ms = 5000;
	o.no_start = 1;
	x->vm = (struct vmm_vm *)1; /* must be overwritten with NULL on failure */
	x->r = vmm_migrate_receive(x->lfd, &o, &x->vm);
	snprintf(x->detail, sizeof(x->detail), "%s", vmm_last_error());
	return NULL;
}

static void rx_open(struct rx *x)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct vmm__xport_opts xo = { .timeout_ms = 5000 };

	memset(x, 0, sizeof(*x));
	x->fds_before = count_fds();
	x->lfd = mu_listen(&x->port);
	assert_int_equal(pthread_create(&x->thread, NULL, rx_main, x), 0);
	a.sin_port = htons(x->port);
	x->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(x->fd >= 0);
	assert_int_equal(connect(x->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(vmm__xport_new(x->fd, &xo, &x->xp), 0);
}

struct preamble {
	char magic[8];
	uint16_t major, minor;
	uint32_t reserved;
} __attribute__((packed));

static void rx_preamble(struct rx *x, const char *magic, uint16_t major)
{
	struct preamble p = { .major = major };

	memcpy(p.magic, magic, 8);
	assert_int_equal(vmm__xport_write(x->xp, &p, sizeof(p)), 0);
}

/* A valid preamble and HELLO for a small VM (with `features` required); returns the
 * receiver's answer. */
static Vmm__Stream__HelloReply *rx_hello(struct rx *x, uint64_t features)
{
	Vmm__Stream__Hello h = VMM__STREAM__HELLO__INIT;
	Vmm__Stream__VmShape shape = VMM__STREAM__VM_SHAPE__INIT;
	Vmm__Stream__HelloReply *rep;
	uint8_t session[16], *p;
	struct vmm__rec_hdr rh;

	garbage(session, sizeof(session), 42);
	shape.has_mem_size = 1, shape.mem_size = (uint64_t)RX_MIB << 20;
	shape.has_vcpus = 1, shape.vcpus = 1;
	shape.has_page_size = 1, shape.page_size = 4096;
	h.has_version_major = 1, h.version_major = VMM_STREAM_MAJOR;
	h.has_version_minor = 1, h.version_minor = VMM_STREAM_MINOR;
	h.has_required_features = 1, h.required_features = features;
	h.shape = &shape;
	h.has_connections = 1, h.connections = 1;
	h.has_session_id = 1, h.session_id = (ProtobufCBinaryData){ sizeof(session), session };
	h.has_conn_index = 1, h.conn_index = 0;
	assert_int_equal(vmm__stream_write_preamble(x->xp), 0);
	assert_int_equal(vmm__stream_write_msg(x->xp, VMM_REC_HELLO, &h.base), 0);
	assert_int_equal(vmm__stream_read_rec(x->xp, VMM_REC_HELLO_REPLY, &rh, &p), 0);
	rep = vmm__stream__hello_reply__unpack(NULL, rh.len, p);
	free(p);
	assert_non_null(rep);
	return rep;
}

static void rx_accepted(struct rx *x)
{
	Vmm__Stream__HelloReply *rep = rx_hello(x, VMM_FEAT_RAM_BATCHES | VMM_FEAT_HANDOVER);

	assert_true(rep->accepted);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
}

static void rx_round0(struct rx *x)
{
	Vmm__Stream__Round m = VMM__STREAM__ROUND__INIT;

	m.has_round = 1, m.round = 0;
	assert_int_equal(vmm__stream_write_msg(x->xp, VMM_REC_ROUND, &m.base), 0);
}

/* A one-page RAM batch by hand (ram.h): record header claiming rec_len (0: the true length),
 * batch header with the right checksum xor `corrupt`, LEB128 page number, bitmap, and of a
 * non-zero page's 4096 bytes the first `send`. */
static void rx_ram(struct rx *x, uint64_t page, int zero, uint64_t corrupt, uint32_t rec_len,
		   uint32_t send)
{
	struct vmm__batch_hdr bh = { .count = 1 };
	uint8_t idx[11], bm = zero ? 1 : 0, data[4096];
	struct vmm__rec_hdr rh = { VMM_REC_HDR_MAGIC, VMM_REC_RAM, 0, 0 };
	uint32_t n = 0;

	do {
		idx[n++] = (uint8_t)((page & 0x7f) | (page > 0x7f ? 0x80 : 0));
		page >>= 7;
	} while (page);
	bh.idx_len = n;
	bh.data_len = zero ? 0 : sizeof(data);
	idx[n] = bm; /* the checksum covers the page numbers and the bitmap */
	bh.checksum = XXH3_64bits(idx, n + 1) ^ corrupt;
	rh.len = rec_len ? rec_len : (uint32_t)(sizeof(bh) + n + 1 + bh.data_len);
	garbage(data, sizeof(data), 7);
	assert_int_equal(vmm__xport_write(x->xp, &rh, sizeof(rh)), 0);
	assert_int_equal(vmm__xport_write(x->xp, &bh, sizeof(bh)), 0);
	assert_int_equal(vmm__xport_write(x->xp, idx, n), 0);
	assert_int_equal(vmm__xport_write(x->xp, &bm, 1), 0);
	if (send)
		assert_int_equal(vmm__xport_write(x->xp, data, send), 0);
}

/* Waits for the receiver, checks how it failed, that it told the source why, and that it
 * left nothing behind (no VM, no fd; ASan builds check memory). */
static void rx_close(struct rx *x, int want, const char *detail_has)
{
	struct vmm__rec_hdr h;
	Vmm__Stream__Error *e;
	uint8_t *p;

	pthread_join(x->thread, NULL);
	print_message("    -> %s: %s\n", vmm_err_name(x->r), x->detail);
	assert_int_equal(x->r, want);
	assert_null(x->vm);
	if (detail_has)
		assert_non_null(strstr(x->detail, detail_has));
	if (want != VMM_EPEER) {
		assert_int_equal(vmm__stream_read_rec(x->xp, VMM_REC_ERROR, &h, &p), 0);
		e = vmm__stream__error__unpack(NULL, h.len, p);
		free(p);
		assert_non_null(e);
		assert_int_equal(e->code, want);
		vmm__stream__error__free_unpacked(e, NULL);
	}
	vmm__xport_free(x->xp);
	close(x->fd);
	close(x->lfd);
	assert_int_equal(count_fds(), x->fds_before);
}

/* Not a libvmm stream: a stray connection, dropped without a word while the receiver goes
 * on listening; the source connecting next is heard (here refused for a feature, which
 * ends the receive). */
static void rx_bad_magic(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct vmm__xport_opts xo = { .timeout_ms = 5000 };
	Vmm__Stream__HelloReply *rep;
	struct rx x;
	char c;

	rx_open(&x);
	rx_preamble(&x, "NOTVMMST", VMM_STREAM_MAJOR);
	assert_true(recv(x.fd, &c, 1, 0) <= 0);
	vmm__xport_free(x.xp);
	close(x.fd);
	a.sin_port = htons(x.port);
	x.fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(x.fd >= 0);
	assert_int_equal(connect(x.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(vmm__xport_new(x.fd, &xo, &x.xp), 0);
	rep = rx_hello(&x, VMM_FEAT_RAM_BATCHES | (1ull << 40));
	assert_false(rep->accepted);
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	rx_close(&x, VMM_EFEATURE, "0x10000000000");
}

static void rx_future_major(void **state)
{
	struct rx x;
	char v[16];

	rx_open(&x);
	rx_preamble(&x, VMM_STREAM_MAGIC, VMM_STREAM_MAJOR + 1);
	snprintf(v, sizeof(v), "%u.0", VMM_STREAM_MAJOR + 1);
	rx_close(&x, VMM_EVERSION, v);
}

static void rx_unknown_feature(void **state)
{
	Vmm__Stream__HelloReply *rep;
	struct rx x;

	rx_open(&x);
	rep = rx_hello(&x, VMM_FEAT_RAM_BATCHES | (1ull << 40));
	assert_false(rep->accepted);
	assert_int_equal(rep->error, VMM_EFEATURE);
	assert_non_null(rep->reason);
	print_message("    reply: %s\n", rep->reason);
	assert_non_null(strstr(rep->reason, "0x10000000000"));
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	rx_close(&x, VMM_EFEATURE, "0x10000000000");
}

/* A 1.0 source would resume if COMMITTED were late: the destination refuses it. */
static void rx_no_handover(void **state)
{
	Vmm__Stream__HelloReply *rep;
	struct rx x;

	rx_open(&x);
	rep = rx_hello(&x, VMM_FEAT_RAM_BATCHES);
	assert_false(rep->accepted);
	assert_int_equal(rep->error, VMM_EFEATURE);
	assert_non_null(strstr(rep->reason, "hand-over"));
	vmm__stream__hello_reply__free_unpacked(rep, NULL);
	rx_close(&x, VMM_EFEATURE, "hand-over");
}

static void rx_garbage(void **state)
{
	uint8_t junk[256];
	struct rx x;

	rx_open(&x);
	rx_accepted(&x);
	garbage(junk, sizeof(junk), 0xdead);
	assert_int_equal(vmm__xport_write(x.xp, junk, sizeof(junk)), 0);
	rx_close(&x, VMM_EPROTO, "record header");
}

static void rx_page_beyond_ram(void **state)
{
	struct rx x;

	rx_open(&x);
	rx_accepted(&x);
	rx_round0(&x);
	rx_ram(&x, RX_PAGES, 1, 0, 0, 0);
	rx_close(&x, VMM_EPROTO, "beyond RAM");
}

static void rx_bad_checksum(void **state)
{
	struct rx x;

	rx_open(&x);
	rx_accepted(&x);
	rx_round0(&x);
	rx_ram(&x, 5, 0, 0x1234, 0, 4096);
	rx_close(&x, VMM_ECORRUPT, "checksum");
}

static void rx_truncated_record(void **state)
{
	struct rx x;

	/* The record is shorter than the batch inside it says. */
	rx_open(&x);
	rx_accepted(&x);
	rx_round0(&x);
	rx_ram(&x, 5, 0, 0, sizeof(struct vmm__batch_hdr) + 2, 0);
	rx_close(&x, VMM_EPROTO, "inconsistent");
}

static void rx_cut_off(void **state)
{
	struct rx x;

	/* Half a record, then the source is gone: nothing to tell it, nothing kept. */
	rx_open(&x);
	rx_accepted(&x);
	rx_round0(&x);
	rx_ram(&x, 5, 0, 0, 0, 100);
	shutdown(x.fd, SHUT_WR);
	rx_close(&x, VMM_EPEER, "closed");
}

static void rx_bad_state(void **state)
{
	uint8_t junk[32];
	struct rx x;

	rx_open(&x);
	rx_accepted(&x);
	rx_round0(&x);
	rx_ram(&x, 3, 1, 0, 0, 0); /* a zero page: a valid batch is fine */
	assert_int_equal(vmm__stream_write_rec(x.xp, VMM_REC_END, NULL, 0), 0);
	memset(junk, 0xff, sizeof(junk));
	assert_int_equal(vmm__stream_write_rec(x.xp, VMM_REC_STATE, junk, sizeof(junk)), 0);
	rx_close(&x, VMM_ESTATEDATA, "machine state");
}

int main(int argc, char **argv)
{
	if (tu_slowdown() > 1)
		mc_mem = 32, mc_rate = 40;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rx_bad_magic),
		cmocka_unit_test(rx_future_major),
		cmocka_unit_test(rx_unknown_feature),
		cmocka_unit_test(rx_no_handover),
		cmocka_unit_test(rx_garbage),
		cmocka_unit_test(rx_page_beyond_ram),
		cmocka_unit_test(rx_bad_checksum),
		cmocka_unit_test(rx_truncated_record),
		cmocka_unit_test(rx_cut_off),
		cmocka_unit_test(rx_bad_state),
		cmocka_unit_test(refused_hello),
		cmocka_unit_test(device_state_prepare),
		cmocka_unit_test(vanish_round0),
		cmocka_unit_test(vanish_round_k),
		cmocka_unit_test(vanish_stop_and_copy),
		cmocka_unit_test(vanish_before_ready),
		cmocka_unit_test(vanish_after_go),
		cmocka_unit_test(start_fails_after_go),
		cmocka_unit_test(silent_before_ready),
		cmocka_unit_test(dest_killed),
		cmocka_unit_test(garbage_hello_reply),
		cmocka_unit_test(unparsable_hello_reply),
		cmocka_unit_test(garbage_back),
		cmocka_unit_test(cancel_real),
		cmocka_unit_test(cancel_fake),
	};

	if (argc >= 3 && !strcmp(argv[1], "receive"))
		return mu_child_receive(argc, argv);
	tu_require_kvm();
	return cmocka_run_group_tests_name("migrate_fail", tests, NULL, NULL);
}
