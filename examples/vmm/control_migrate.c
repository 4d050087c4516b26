/* The worker behind PUT vm.migrate: vmm_migrate_send_to() on a thread of its own, its
 * progress callback recording every round under a mutex for GET vm.migration (read on the
 * server's thread), and the source VM stopped once it has moved and a client was told. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "control_migrate.h"
#include "control_server.h"

#define MAX_CONNECTIONS 16 /* vmm_migrate_opts.connections: 1..16 */

enum mig_state { MIG_IDLE, MIG_RUNNING, MIG_COMPLETED, MIG_FAILED, MIG_CANCELED, MIG_IN_DOUBT };

static const char *const state_names[] = {
	[MIG_IDLE] = "idle",
	[MIG_RUNNING] = "running",
	[MIG_COMPLETED] = "completed",
	[MIG_FAILED] = "failed",
	[MIG_CANCELED] = "canceled",
	/* GO went out, STARTED did not come back: paused until PUT vm.migrate-resolve. */
	[MIG_IN_DOUBT] = "in-doubt",
};

struct control_migration {
	struct vmm_vm *vm;
	pthread_mutex_t lock;   /* everything below */
	pthread_cond_t cond;    /* reported or closing: the completed worker's wait ends */
	pthread_t thread;
	int has_thread;         /* started and not joined yet */
	enum mig_state state;
	int cancel;             /* asked for: re-asserted after every round (see on_round) */
	int closing;
	int reported;           /* a client has been sent the completed document */
	const char *resolution; /* "run" or "discard" once an in-doubt outcome was resolved */
	struct control_migrate_req req; /* the current (or last) migration */
	struct timespec t0;
	struct vmm_migrate_round *rounds;
	size_t nrounds, cap;
	struct vmm_migrate_stats total; /* so far; the final figures once it ended */
	int err;
	char detail[512];
};

struct control_migration *control_migration_new(struct vmm_vm *vm)
{
	struct control_migration *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->vm = vm;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return m;
}

/* --- the worker */

/* After every round, on the migration thread. */
static void on_round(void *opaque, const struct vmm_migrate_round *rd,
		     const struct vmm_migrate_stats *total)
{
	struct control_migration *m = opaque;

	pthread_mutex_lock(&m->lock);
	if (m->nrounds == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 32;
		struct vmm_migrate_round *p = realloc(m->rounds, cap * sizeof(*p));

		if (p)
			m->rounds = p, m->cap = cap;
	}
	if (m->nrounds < m->cap)
		m->rounds[m->nrounds++] = *rd;
	m->total = *total;
	/* vmm_migrate_send_to() clears the VM's cancel flag once it has connected: a cancel
	 * that came while it was connecting would be lost without this. */
	if (m->cancel)
		vmm_migrate_cancel(m->vm);
	pthread_mutex_unlock(&m->lock);
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *worker(void *opaque)
{
	struct control_migration *m = opaque;
	struct vmm_migrate_opts o;
	struct vmm_migrate_stats st;
	struct timespec deadline;
	int r;

	/* m->req is written by control_migrate_start() before this thread exists and not
	 * again until it has been joined. */
	o = m->req.opts;
	o.tls = cli_tls_opts(&m->req.tls);
	o.progress = on_round;
	o.progress_opaque = m;
	memset(&st, 0, sizeof(st));
	r = vmm_migrate_send_to(m->vm, m->req.host, m->req.port, &o, &st);
	pthread_mutex_lock(&m->lock);
	m->total = st;
	if (r) {
		/* vmm_last_error() is this thread's: take it now. */
		m->err = r;
		snprintf(m->detail, sizeof(m->detail), "%s", vmm_last_error());
		m->state = r == VMM_ECANCELED ? MIG_CANCELED
			   : r == VMM_EINDOUBT ? MIG_IN_DOUBT : MIG_FAILED;
		pthread_mutex_unlock(&m->lock);
		if (r == VMM_EINDOUBT)
			fprintf(stderr, "vmm: migration to %s in doubt: the guest is paused here; "
					"`vmm migrate-resolve` decides (%s)\n", m->req.destination,
				m->detail);
		return NULL;
	}
	m->state = MIG_COMPLETED;
	/* The VM is paused for good. Its vmm ends once a client knows how the migration went
	 * (a vmm gone before that would leave `vmm migrate` unable to tell success from a
	 * crash), or after CONTROL_MIGRATE_LINGER_MS if nobody asks. */
	deadline_in(&deadline, CONTROL_MIGRATE_LINGER_MS);
	while (!m->reported && !m->closing)
		if (pthread_cond_timedwait(&m->cond, &m->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&m->lock);
	fprintf(stderr, "vmm: VM migrated to %s\n", m->req.destination);
	/* cli_run_foreground() wakes up with VMM_EXIT_HOST: exit status 0. */
	vmm_vm_stop(m->vm);
	return NULL;
}

/* Under m->lock. */
static void join_worker(struct control_migration *m)
{
	if (!m->has_thread)
		return;
	/* Called only once the worker has set a final state, or with closing set and the
	 * migration canceled: it ends without needing the lock for long. */
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_mutex_lock(&m->lock);
	m->has_thread = 0;
}

int control_migrate_start(struct control_migration *m, const struct control_migrate_req *req,
			  char *why, size_t len)
{
	sigset_t block, old;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	if (m->closing) {
		snprintf(why, len, "the control server is shutting down");
		r = VMM_ESTATE;
	} else if (m->state == MIG_RUNNING) {
		snprintf(why, len, "a migration to %s is in progress", m->req.destination);
		r = VMM_ESTATE;
	} else if (m->state == MIG_COMPLETED) {
		snprintf(why, len, "the VM has been migrated to %s", m->req.destination);
		r = VMM_ESTATE;
	} else if (m->state == MIG_IN_DOUBT) {
		snprintf(why, len, "the migration to %s is in doubt: resolve it first",
			 m->req.destination);
		r = VMM_ESTATE;
	}
	if (r) {
		pthread_mutex_unlock(&m->lock);
		return r;
	}
	join_worker(m); /* the last one, failed or canceled: finished already */
	m->req = *req;
	m->state = MIG_RUNNING;
	m->cancel = m->reported = 0;
	m->resolution = NULL;
	m->nrounds = 0;
	memset(&m->total, 0, sizeof(m->total));
	m->err = 0;
	m->detail[0] = 0;
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
	/* SIGINT/SIGTERM belong to the main thread, which stops the VM on them. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = pthread_create(&m->thread, NULL, worker, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		m->state = MIG_IDLE;
		snprintf(why, len, "cannot start the migration thread: %s", strerror(r));
		pthread_mutex_unlock(&m->lock);
		return VMM_ESYS;
	}
	m->has_thread = 1;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int control_migrate_cancel(struct control_migration *m)
{
	int r = VMM_ESTATE;

	pthread_mutex_lock(&m->lock);
	if (m->state == MIG_RUNNING) {
		m->cancel = 1;
		vmm_migrate_cancel(m->vm);
		r = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

const char *control_migrate_busy(struct control_migration *m)
{
	const char *why = NULL;

	pthread_mutex_lock(&m->lock);
	if (m->state == MIG_RUNNING)
		why = "a migration is in progress";
	else if (m->state == MIG_COMPLETED)
		why = "the VM has been migrated away";
	else if (m->state == MIG_IN_DOUBT)
		why = "the migration's outcome is in doubt (PUT vm.migrate-resolve decides)";
	pthread_mutex_unlock(&m->lock);
	return why;
}

void control_migrate_resolved(struct control_migration *m, enum vmm_resolve how)
{
	pthread_mutex_lock(&m->lock);
	if (m->state == MIG_IN_DOUBT) {
		/* RUN: the guest stayed here, as after a failure; DISCARD: it runs at the
		 * destination, as after a completed migration (the server then stops the VM). */
		m->state = how == VMM_RESOLVE_RUN ? MIG_FAILED : MIG_COMPLETED;
		m->reported = 1;
	}
	m->resolution = how == VMM_RESOLVE_RUN ? "run" : "discard";
	pthread_mutex_unlock(&m->lock);
}

void control_migration_close(struct control_migration *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->closing = 1;
	if (m->state == MIG_RUNNING) {
		m->cancel = 1;
		vmm_migrate_cancel(m->vm);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void control_migration_free(struct control_migration *m)
{
	if (!m)
		return;
	control_migration_close(m);
	pthread_mutex_lock(&m->lock);
	join_worker(m);
	pthread_mutex_unlock(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m->rounds);
	free(m);
}

/* --- the request body */

static int get_int(struct json_object *v, const char *key, int64_t min, int64_t max,
		   int64_t *out, char *why, size_t len)
{
	int64_t n;

	if (!json_object_is_type(v, json_type_int)) {
		snprintf(why, len, "\"%s\" must be an integer", key);
		return -1;
	}
	errno = 0;
	n = json_object_get_int64(v);
	if (errno || n < min || n > max) {
		snprintf(why, len, "\"%s\" must be in %lld..%lld", key, (long long)min,
			 (long long)max);
		return -1;
	}
	*out = n;
	return 0;
}

static int parse_destination(struct json_object *v, struct control_migrate_req *req, char *why,
			     size_t len)
{
	const char *s = json_object_get_string(v);

	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= sizeof(req->destination) ||
	    cli_parse_hostport(s, req->host, sizeof(req->host), &req->port)) {
		snprintf(why, len, "\"destination\" must be \"HOST:PORT\" (\"[ADDR]:PORT\" for IPv6)");
		return -1;
	}
	strcpy(req->destination, s);
	return 0;
}

static int parse_compress(struct json_object *v, enum vmm_migrate_compress *out, char *why,
			  size_t len)
{
	static const char *const names[] = {
		[VMM_MIGRATE_COMPRESS_OFF] = "off",
		[VMM_MIGRATE_COMPRESS_ZSTD] = "zstd",
		[VMM_MIGRATE_COMPRESS_AUTO] = "auto",
	};

	if (json_object_is_type(v, json_type_string))
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(json_object_get_string(v), names[i])) {
				*out = (enum vmm_migrate_compress)i;
				return 0;
			}
	snprintf(why, len, "\"compress\" must be \"off\", \"zstd\" or \"auto\"");
	return -1;
}

/* Unknown keys are refused rather than ignored, as vm.snapshot does: a misspelt
 * "bandwith_mbps" must not silently migrate at full speed. */
int control_migrate_parse(struct json_object *body, struct control_migrate_req *req,
			  char *why, size_t len)
{
	struct vmm_migrate_opts *o = &req->opts;
	int64_t n;

	memset(req, 0, sizeof(*req));
	vmm_migrate_opts_init(o);
	json_object_object_foreach(body, key, v) {
		if (!strcmp(key, "destination")) {
			if (parse_destination(v, req, why, len))
				return -1;
		} else if (!strcmp(key, "downtime_ms")) {
			if (get_int(v, key, 1, 3600000, &n, why, len))
				return -1;
			o->downtime_limit_ns = (uint64_t)n * 1000000;
		} else if (!strcmp(key, "bandwidth_mbps")) {
			double mbps = json_object_get_double(v);

			if ((!json_object_is_type(v, json_type_int) &&
			     !json_object_is_type(v, json_type_double)) || !(mbps >= 0 && mbps <= 1e6)) {
				snprintf(why, len, "\"bandwidth_mbps\" must be a number of MB/s in "
						   "0..1000000 (0: unlimited)");
				return -1;
			}
			o->max_bandwidth = (uint64_t)(mbps * 1e6);
		} else if (!strcmp(key, "compress")) {
			if (parse_compress(v, &o->compress, why, len))
				return -1;
		} else if (!strcmp(key, "connections")) {
			if (get_int(v, key, 1, MAX_CONNECTIONS, &n, why, len))
				return -1;
			o->connections = (uint32_t)n;
		} else if (!strcmp(key, "auto_converge")) {
			if (!json_object_is_type(v, json_type_boolean)) {
				snprintf(why, len, "\"auto_converge\" must be true or false");
				return -1;
			}
			o->auto_converge = json_object_get_boolean(v);
		} else if (!strcmp(key, "copy_disks")) {
			if (!json_object_is_type(v, json_type_boolean)) {
				snprintf(why, len, "\"copy_disks\" must be true or false");
				return -1;
			}
			o->disks = json_object_get_boolean(v) ? VMM_MIGRATE_DISKS_COPY
							      : VMM_MIGRATE_DISKS_SHARED;
		} else if (!strcmp(key, "tls_dir") || !strcmp(key, "psk_file") ||
			   !strcmp(key, "tls_peer")) {
			const char *sv = json_object_get_string(v);
			int bad;

			if (!json_object_is_type(v, json_type_string)) {
				snprintf(why, len, "\"%s\" must be a string", key);
				return -1;
			}
			bad = key[0] == 'p' ? cli_tls_psk_file(&req->tls, sv, why, len)
			      : key[4] == 'd' ? cli_tls_dir(&req->tls, sv, why, len)
					      : cli_tls_peer(&req->tls, sv, why, len);
			if (bad)
				return -1;
		} else if (!strcmp(key, "max_rounds")) {
			if (get_int(v, key, 1, 100000, &n, why, len))
				return -1;
			o->max_rounds = (uint32_t)n;
		} else {
			snprintf(why, len, "unknown key \"%s\"", key);
			return -1;
		}
	}
	if (!req->destination[0]) {
		snprintf(why, len, "\"destination\" (\"HOST:PORT\") is required");
		return -1;
	}
	return 0;
}

/* --- the status document */

/* A double with a fixed number of decimals in the JSON text (NaN/inf: 0). */
static struct json_object *json_fixed(double v, int decimals)
{
	char s[48];

	if (!isfinite(v))
		v = 0;
	snprintf(s, sizeof(s), "%.*f", decimals, v);
	return json_object_new_double_s(v, s);
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static struct json_object *round_json(const struct vmm_migrate_round *rd)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "round", rd->round);
	json_object_object_add(o, "final", json_object_new_boolean(rd->final));
	add_u64(o, "pages", rd->pages);
	add_u64(o, "zero_pages", rd->zero_pages);
	add_u64(o, "wire_bytes", rd->wire_bytes);
	json_object_object_add(o, "duration_ms", control_json_ms(rd->duration_ns));
	json_object_object_add(o, "bandwidth_mbps", json_fixed(rd->bandwidth_mbps, 1));
	json_object_object_add(o, "dirty_rate_mbps", json_fixed(rd->dirty_rate_mbps, 1));
	add_u64(o, "remaining_bytes", rd->remaining_bytes);
	json_object_object_add(o, "expected_downtime_ms", control_json_ms(rd->expected_downtime_ns));
	add_u64(o, "throttle_pct", rd->throttle_pct);
	return o;
}

/* Under m->lock. While running, the library has not filled total_ns and
 * compression_ratio yet: they are worked out here. */
static struct json_object *total_json(const struct control_migration *m)
{
	struct json_object *o = json_object_new_object();
	const struct vmm_migrate_stats *st = &m->total;
	uint64_t total_ns = st->total_ns;
	double ratio = st->compression_ratio;

	if (m->state == MIG_RUNNING) {
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		total_ns = (uint64_t)(now.tv_sec - m->t0.tv_sec) * 1000000000u +
			   (uint64_t)now.tv_nsec - (uint64_t)m->t0.tv_nsec;
		ratio = st->wire_bytes ? (double)st->raw_bytes / (double)st->wire_bytes : 1.0;
	}
	add_u64(o, "rounds", st->rounds);
	json_object_object_add(o, "total_ms", control_json_ms(total_ns));
	json_object_object_add(o, "downtime_ms", control_json_ms(st->downtime_ns));
	json_object_object_add(o, "expected_downtime_ms", control_json_ms(st->expected_downtime_ns));
	json_object_object_add(o, "pause_ms", control_json_ms(st->pause_ns));
	json_object_object_add(o, "final_sync_ms", control_json_ms(st->final_sync_ns));
	json_object_object_add(o, "capture_ms", control_json_ms(st->capture_ns));
	json_object_object_add(o, "apply_ms", control_json_ms(st->apply_ns));
	add_u64(o, "pages", st->pages);
	add_u64(o, "zero_pages", st->zero_pages);
	add_u64(o, "raw_bytes", st->raw_bytes);
	add_u64(o, "wire_bytes", st->wire_bytes);
	json_object_object_add(o, "compression_ratio", json_fixed(ratio, 3));
	add_u64(o, "max_throttle_pct", st->max_throttle_pct);
	add_u64(o, "state_bytes", st->state_bytes);
	return o;
}

struct json_object *control_migrate_status(struct control_migration *m, int reported)
{
	struct json_object *o = json_object_new_object(), *rounds = json_object_new_array();
	const struct vmm_migrate_round *last;

	pthread_mutex_lock(&m->lock);
	last = m->nrounds ? &m->rounds[m->nrounds - 1] : NULL;
	json_object_object_add(o, "state", json_object_new_string(state_names[m->state]));
	json_object_object_add(o, "destination", m->state == MIG_IDLE ? NULL
					: json_object_new_string(m->req.destination));
	json_object_object_add(o, "round", last ? json_object_new_uint64(last->round) : NULL);
	json_object_object_add(o, "final", json_object_new_boolean(last && last->final));
	for (size_t i = 0; i < m->nrounds; i++)
		json_object_array_add(rounds, round_json(&m->rounds[i]));
	json_object_object_add(o, "rounds", rounds);
	json_object_object_add(o, "total", m->state == MIG_IDLE ? NULL : total_json(m));
	if (m->resolution)
		json_object_object_add(o, "resolution", json_object_new_string(m->resolution));
	if (m->state == MIG_FAILED || m->state == MIG_CANCELED || m->state == MIG_IN_DOUBT) {
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "error", json_object_new_string(vmm_err_name(m->err)));
		json_object_object_add(e, "message", json_object_new_string(vmm_strerror(m->err)));
		json_object_object_add(e, "detail", json_object_new_string(m->detail));
		json_object_object_add(o, "error", e);
	}
	if (reported && m->state == MIG_COMPLETED) {
		m->reported = 1;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return o;
}
