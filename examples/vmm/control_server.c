/* The control API server of `vmm run --control PATH`: a routing table of endpoints, each a
 * short handler that calls one libvmm function and turns its result into an HTTP status
 * and a JSON body. libmicrohttpd does the HTTP, json-c the JSON; a migration runs on a
 * worker thread of its own (control_migrate.c). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cli.h"
#include "control_migrate.h"
#include "control_server.h"

/* How long control_server_stop() lets a finished handler's response reach its client. */
#define DRAIN_SEC 2

struct control_server {
	struct MHD_Daemon *mhd;
	struct vmm_vm *vm;
	struct control_migration *mig;
	char *path;
	uint64_t mem_size;    /* read once here: mem_size is not on vm.h's any-thread list */
	struct timespec started;
	pthread_mutex_t lock; /* inflight and busy, read by control_server_stop */
	pthread_cond_t idle;
	unsigned inflight;    /* requests begun and not yet completed (response sent or failed) */
	int busy;             /* a handler is running */
	int own_socket;       /* bound here, so closed and removed here */
};

struct reply {
	unsigned status;
	struct json_object *json; /* NULL: empty body */
	const char *allow;        /* 405: the method the endpoint takes */
};

typedef void (*handler_fn)(struct control_server *srv, struct json_object *body,
			   struct reply *rep);

enum { ROUTE_BODY = 1 }; /* the endpoint takes a JSON object body */

struct route {
	const char *name; /* after CONTROL_API_PREFIX */
	const char *method;
	unsigned flags;
	handler_fn fn;
};

/* One request's upload, collected across the access handler's calls. */
struct request {
	const struct route *route; /* NULL: rep holds the 404 or 405 */
	struct reply rep;
	char *body;
	size_t len;
	int too_big;
};

static void handle_info(struct control_server *srv, struct json_object *body, struct reply *rep);
static void handle_pause(struct control_server *srv, struct json_object *body, struct reply *rep);
static void handle_resume(struct control_server *srv, struct json_object *body, struct reply *rep);
static void handle_snapshot(struct control_server *srv, struct json_object *body,
			    struct reply *rep);
static void handle_shutdown(struct control_server *srv, struct json_object *body,
			    struct reply *rep);
static void handle_migrate(struct control_server *srv, struct json_object *body,
			   struct reply *rep);
static void handle_migration(struct control_server *srv, struct json_object *body,
			     struct reply *rep);
static void handle_migrate_cancel(struct control_server *srv, struct json_object *body,
				  struct reply *rep);
static void handle_migrate_resolve(struct control_server *srv, struct json_object *body,
				   struct reply *rep);

static const struct route routes[] = {
	{ "vm.info", MHD_HTTP_METHOD_GET, 0, handle_info },
	{ "vm.pause", MHD_HTTP_METHOD_PUT, 0, handle_pause },
	{ "vm.resume", MHD_HTTP_METHOD_PUT, 0, handle_resume },
	{ "vm.snapshot", MHD_HTTP_METHOD_PUT, ROUTE_BODY, handle_snapshot },
	{ "vm.shutdown", MHD_HTTP_METHOD_PUT, 0, handle_shutdown },
	{ "vm.migrate", MHD_HTTP_METHOD_PUT, ROUTE_BODY, handle_migrate },
	{ "vm.migration", MHD_HTTP_METHOD_GET, 0, handle_migration },
	{ "vm.migrate-cancel", MHD_HTTP_METHOD_PUT, 0, handle_migrate_cancel },
	{ "vm.migrate-resolve", MHD_HTTP_METHOD_PUT, ROUTE_BODY, handle_migrate_resolve },
};

/* --- replies */

static void reply_error(struct reply *rep, unsigned status, const char *name,
			const char *message, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void reply_error(struct reply *rep, unsigned status, const char *name,
			const char *message, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	rep->status = status;
	rep->json = json_object_new_object();
	json_object_object_add(rep->json, "error", json_object_new_string(name));
	json_object_object_add(rep->json, "message", json_object_new_string(message));
	json_object_object_add(rep->json, "detail", json_object_new_string(detail));
}

static unsigned http_status(int err)
{
	switch (err) {
	case VMM_EINVAL:
		return MHD_HTTP_BAD_REQUEST;
	case VMM_ESTATE:
	case VMM_EJOB: /* a migration or snapshot owns the VM: try again once it ends */
	case VMM_EINDOUBT: /* resume or start refused until vm.migrate-resolve */
		return MHD_HTTP_CONFLICT;
	case VMM_ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case VMM_ENOSPC:
		return MHD_HTTP_INSUFFICIENT_STORAGE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Must run on the thread that made the failed call: vmm_last_error() is per thread. */
static void reply_vmm_error(struct reply *rep, int err)
{
	reply_error(rep, http_status(err), vmm_err_name(err), vmm_strerror(err), "%s",
		    vmm_last_error());
}

static void reply_vmm(struct reply *rep, int err)
{
	if (err)
		reply_vmm_error(rep, err);
	else
		rep->status = MHD_HTTP_NO_CONTENT;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct reply *rep)
{
	const char *text = "";
	struct MHD_Response *resp;
	enum MHD_Result r;

	if (rep->json)
		text = json_object_to_json_string_ext(rep->json, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
	resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	json_object_put(rep->json);
	rep->json = NULL;
	if (!resp)
		return MHD_NO;
	if (rep->status != MHD_HTTP_NO_CONTENT)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (rep->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
	r = MHD_queue_response(conn, rep->status, resp);
	MHD_destroy_response(resp);
	return r;
}

/* --- endpoints */

/* The virtio devices with their counters, slot by slot. */
static struct json_object *devices_json(struct vmm_vm *vm)
{
	struct json_object *a = json_object_new_array();
	struct vmm_device_info d;

	for (uint32_t i = 0; i < vmm_vm_device_count(vm); i++) {
		struct json_object *o;

		vmm_device_info_init(&d);
		if (vmm_vm_device_info(vm, i, &d))
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "slot", json_object_new_int64(d.slot));
		json_object_object_add(o, "kind", json_object_new_string(d.kind));
		if (d.path) {
			json_object_object_add(o, "path", json_object_new_string(d.path));
			json_object_object_add(o, "read_only", json_object_new_boolean(d.read_only));
			json_object_object_add(o, "capacity_bytes", json_object_new_uint64(d.capacity));
			json_object_object_add(o, "serial", json_object_new_string(d.serial));
			json_object_object_add(o, "bytes_written",
					       json_object_new_uint64(d.bytes_written));
		}
		if (!strcmp(d.kind, "net")) {
			char mac[18];

			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", d.mac[0],
				 d.mac[1], d.mac[2], d.mac[3], d.mac[4], d.mac[5]);
			json_object_object_add(o, "mac", json_object_new_string(mac));
			json_object_object_add(o, "bytes_written",
					       json_object_new_uint64(d.bytes_written));
		}
		if (!strcmp(d.kind, "vsock"))
			json_object_object_add(o, "guest_cid", json_object_new_uint64(d.guest_cid));
		json_object_object_add(o, "driver_status", json_object_new_int64(d.status));
		json_object_object_add(o, "requests", json_object_new_uint64(d.requests));
		json_object_object_add(o, "errors", json_object_new_uint64(d.errors));
		json_object_object_add(o, "bytes_read", json_object_new_uint64(d.bytes_read));
		json_object_array_add(a, o);
	}
	return a;
}

static void handle_info(struct control_server *srv, struct json_object *body, struct reply *rep)
{
	char version[64];
	struct timespec now;
	int64_t up;

	clock_gettime(CLOCK_MONOTONIC, &now);
	up = (int64_t)(now.tv_sec - srv->started.tv_sec) * 1000 +
	     (now.tv_nsec - srv->started.tv_nsec) / 1000000;
	snprintf(version, sizeof(version), "libvmm %s", vmm_version_string());
	rep->status = MHD_HTTP_OK;
	rep->json = json_object_new_object();
	json_object_object_add(rep->json, "state",
			       json_object_new_string(vmm_vm_run_state_name(vmm_vm_run_state(srv->vm))));
	json_object_object_add(rep->json, "vcpus", json_object_new_int64(vmm_vm_vcpus(srv->vm)));
	json_object_object_add(rep->json, "memory_bytes", json_object_new_uint64(srv->mem_size));
	json_object_object_add(rep->json, "cmdline", json_object_new_string(vmm_vm_cmdline(srv->vm)));
	json_object_object_add(rep->json, "cpu_model",
			       json_object_new_string(vmm_vm_cpu_model(srv->vm)));
	json_object_object_add(rep->json, "uptime_ms", json_object_new_int64(up));
	json_object_object_add(rep->json, "in_doubt",
			       json_object_new_boolean(vmm_vm_in_doubt(srv->vm)));
	json_object_object_add(rep->json, "version", json_object_new_string(version));
	json_object_object_add(rep->json, "devices", devices_json(srv->vm));
}

/* While a migration runs the VM is its thread's, and once it has moved it must stay
 * paused: 409 for pause, resume and snapshot. */
static int migration_conflict(struct control_server *srv, struct reply *rep)
{
	const char *why = control_migrate_busy(srv->mig);

	if (!why)
		return 0;
	reply_error(rep, MHD_HTTP_CONFLICT, vmm_err_name(VMM_ESTATE), vmm_strerror(VMM_ESTATE),
		    "%s", why);
	return 1;
}

static void handle_pause(struct control_server *srv, struct json_object *body, struct reply *rep)
{
	if (!migration_conflict(srv, rep))
		reply_vmm(rep, vmm_vm_pause(srv->vm));
}

static void handle_resume(struct control_server *srv, struct json_object *body, struct reply *rep)
{
	if (!migration_conflict(srv, rep))
		reply_vmm(rep, vmm_vm_resume(srv->vm));
}

/* The response is sent after vmm_vm_stop(): the main thread, woken from vmm_vm_wait(),
 * lets it finish in control_server_stop() before the process exits. A migration in
 * progress is canceled first, so that the VM stays here and stops. */
static void handle_shutdown(struct control_server *srv, struct json_object *body,
			    struct reply *rep)
{
	control_migrate_cancel(srv->mig);
	reply_vmm(rep, vmm_vm_stop(srv->vm));
}

/* 202 at once: the migration runs on, GET vm.migration follows it. */
static void handle_migrate(struct control_server *srv, struct json_object *body,
			   struct reply *rep)
{
	struct control_migrate_req req;
	char why[400];
	int r;

	if (control_migrate_parse(body, &req, why, sizeof(why))) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "%s", why);
		return;
	}
	r = control_migrate_start(srv->mig, &req, why, sizeof(why));
	if (r) {
		reply_error(rep, http_status(r), vmm_err_name(r), vmm_strerror(r), "%s", why);
		return;
	}
	rep->status = MHD_HTTP_ACCEPTED;
	rep->json = control_migrate_status(srv->mig, 0);
}

static void handle_migration(struct control_server *srv, struct json_object *body,
			     struct reply *rep)
{
	rep->status = MHD_HTTP_OK;
	rep->json = control_migrate_status(srv->mig, 1);
}

static void handle_migrate_cancel(struct control_server *srv, struct json_object *body,
				  struct reply *rep)
{
	if (control_migrate_cancel(srv->mig)) {
		reply_error(rep, MHD_HTTP_CONFLICT, vmm_err_name(VMM_ESTATE),
			    vmm_strerror(VMM_ESTATE), "no migration in progress");
		return;
	}
	rep->status = MHD_HTTP_ACCEPTED;
	rep->json = control_migrate_status(srv->mig, 0);
}

/* {"action": "run" | "discard"}: ends an in-doubt migration on this side (migrate.h). After
 * DISCARD this copy never runs: a source VM is stopped, so its vmm exits 0 as after a
 * completed migration; a destination's vmm receive ends by itself. */
static void handle_migrate_resolve(struct control_server *srv, struct json_object *body,
				   struct reply *rep)
{
	struct json_object *v;
	enum vmm_resolve how;
	const char *a;
	int r;

	if (json_object_object_length(body) != 1 || !json_object_object_get_ex(body, "action", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "the body must be {\"action\": \"run\" or "
			    "\"discard\"}");
		return;
	}
	a = json_object_get_string(v);
	if (!strcmp(a, "run")) {
		how = VMM_RESOLVE_RUN;
	} else if (!strcmp(a, "discard")) {
		how = VMM_RESOLVE_DISCARD;
	} else {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "unknown action \"%s\" (run or discard)", a);
		return;
	}
	r = vmm_migrate_resolve(srv->vm, how);
	if (r) {
		reply_vmm_error(rep, r);
		return;
	}
	control_migrate_resolved(srv->mig, how);
	if (how == VMM_RESOLVE_DISCARD && vmm_vm_run_state(srv->vm) == VMM_VM_PAUSED)
		vmm_vm_stop(srv->vm);
	rep->status = MHD_HTTP_NO_CONTENT;
}

static int json_flag(struct json_object *v, const char *key, uint32_t flag, uint32_t *flags,
		     struct reply *rep)
{
	if (!json_object_is_type(v, json_type_boolean)) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "\"%s\" must be true or false", key);
		return -1;
	}
	if (json_object_get_boolean(v))
		*flags |= flag;
	return 0;
}

/* Unknown keys are refused rather than ignored: a misspelt "compres" must not silently
 * write an uncompressed file. */
static int parse_snapshot_body(struct json_object *body, struct vmm_snapshot_opts *opts,
			       const char **path, uint8_t keybuf[32], struct reply *rep)
{
	static const struct {
		const char *key;
		uint32_t flag;
	} flags[] = {
		{ "live", VMM_SNAPSHOT_LIVE },
		{ "compress", VMM_SNAPSHOT_COMPRESS },
		{ "stop", VMM_SNAPSHOT_STOP },
		{ "track", VMM_SNAPSHOT_TRACK },
	};

	*path = NULL;
	json_object_object_foreach(body, key, v) {
		size_t i;

		if (!strcmp(key, "path")) {
			if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
				goto bad_path;
			*path = json_object_get_string(v);
			continue;
		}
		if (!strcmp(key, "key")) { /* encryption at rest: 64 hex digits */
			if (!json_object_is_type(v, json_type_string) ||
			    cli_parse_key_hex(json_object_get_string(v),
					      (size_t)json_object_get_string_len(v), keybuf)) {
				reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
					    vmm_strerror(VMM_EINVAL),
					    "\"key\" must be 64 hex digits (a 256-bit key)");
				return -1;
			}
			opts->key = keybuf;
			opts->key_len = 32;
			continue;
		}
		if (!strcmp(key, "with_disks")) { /* the disk images inside the file */
			if (!json_object_is_type(v, json_type_boolean)) {
				reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
					    vmm_strerror(VMM_EINVAL), "\"with_disks\" must be true or false");
				return -1;
			}
			opts->disks = (uint32_t)json_object_get_boolean(v);
			continue;
		}
		if (!strcmp(key, "incremental")) {
			if (json_object_is_type(v, json_type_null))
				continue;
			if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v)) {
				reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
					    vmm_strerror(VMM_EINVAL),
					    "\"incremental\" must be the parent's path or null");
				return -1;
			}
			opts->flags |= VMM_SNAPSHOT_INCREMENTAL;
			opts->parent = json_object_get_string(v);
			continue;
		}
		for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
			if (!strcmp(key, flags[i].key))
				break;
		if (i == sizeof(flags) / sizeof(flags[0])) {
			reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
				    vmm_strerror(VMM_EINVAL), "unknown key \"%s\"", key);
			return -1;
		}
		if (json_flag(v, key, flags[i].flag, &opts->flags, rep))
			return -1;
	}
	if (*path)
		return 0;
bad_path:
	reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL), vmm_strerror(VMM_EINVAL),
		    "\"path\" must be a non-empty string");
	return -1;
}

static void handle_snapshot(struct control_server *srv, struct json_object *body,
			    struct reply *rep)
{
	struct vmm_snapshot_opts opts;
	struct vmm_snapshot_stats stats;
	uint8_t key[32];
	const char *path;
	int r;

	vmm_snapshot_opts_init(&opts);
	if (parse_snapshot_body(body, &opts, &path, key, rep) || migration_conflict(srv, rep))
		return;
	memset(&stats, 0, sizeof(stats));
	r = vmm_snapshot_save(srv->vm, path, &opts, &stats);
	memset(key, 0, sizeof(key));
	if (r) {
		reply_vmm_error(rep, r);
		return;
	}
	rep->status = MHD_HTTP_OK;
	rep->json = control_json_snapshot_stats(&stats);
}

struct json_object *control_json_ms(uint64_t ns)
{
	char s[32];

	snprintf(s, sizeof(s), "%.3f", (double)ns / 1e6);
	return json_object_new_double_s((double)ns / 1e6, s);
}

struct json_object *control_json_snapshot_stats(const struct vmm_snapshot_stats *st)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "total_ms", control_json_ms(st->total_ns));
	json_object_object_add(o, "pause_ms", control_json_ms(st->pause_ns));
	json_object_object_add(o, "file_bytes", json_object_new_uint64(st->file_bytes));
	json_object_object_add(o, "ram_bytes", json_object_new_uint64(st->ram_bytes));
	json_object_object_add(o, "pages_written", json_object_new_uint64(st->pages_written));
	json_object_object_add(o, "zero_pages", json_object_new_uint64(st->zero_pages));
	json_object_object_add(o, "rounds", json_object_new_int64(st->rounds));
	return o;
}

/* --- HTTP plumbing */

/* Finds the endpoint, or fills rep with 404 or 405. */
static const struct route *find_route(const char *url, const char *method, struct reply *rep)
{
	size_t plen = strlen(CONTROL_API_PREFIX);

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strncmp(url, CONTROL_API_PREFIX, plen) || strcmp(url + plen, routes[i].name))
			continue;
		if (!strcmp(method, routes[i].method))
			return &routes[i];
		rep->allow = routes[i].method;
		reply_error(rep, MHD_HTTP_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED",
			    "method not allowed", "%s takes %s, not %s", url, routes[i].method,
			    method);
		return NULL;
	}
	reply_error(rep, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint", "%s %s", method, url);
	return NULL;
}

/* Parses the whole body as one JSON object; trailing garbage counts as malformed. */
static struct json_object *parse_body(const struct request *req, struct reply *rep)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;

	if (!req->len) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "%s needs a JSON object body",
			    req->route->name);
		return NULL;
	}
	tok = json_tokener_new();
	if (!tok) {
		reply_error(rep, MHD_HTTP_INTERNAL_SERVER_ERROR, vmm_err_name(VMM_ENOMEM),
			    vmm_strerror(VMM_ENOMEM), "JSON parser");
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, req->body, (int)req->len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (obj && end < req->len && strchr(" \t\r\n", req->body[end]))
		end++;
	if (!obj || jerr != json_tokener_success || end != req->len) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "malformed JSON body at offset %zu: %s", end,
			    jerr == json_tokener_success ? "trailing data"
			    : jerr == json_tokener_continue ? "unexpected end"
							    : json_tokener_error_desc(jerr));
		json_object_put(obj);
		return NULL;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		reply_error(rep, MHD_HTTP_BAD_REQUEST, vmm_err_name(VMM_EINVAL),
			    vmm_strerror(VMM_EINVAL), "the body must be a JSON object");
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

static void request_begin(struct control_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->inflight++;
	pthread_mutex_unlock(&srv->lock);
}

static void set_busy(struct control_server *srv, int busy)
{
	pthread_mutex_lock(&srv->lock);
	srv->busy = busy;
	pthread_cond_broadcast(&srv->idle);
	pthread_mutex_unlock(&srv->lock);
}

/* MHD calls this once per request: on the first call it has only the headers, then once
 * per chunk of body, then once more with *upload_len == 0 when the body is complete.
 * Every answer, errors included, waits for that last call: a response queued earlier
 * makes MHD close the connection while the client may still be sending, and the client
 * then sees a reset instead of the answer. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **ctx)
{
	struct control_server *srv = cls;
	struct request *req = *ctx;
	struct json_object *body = NULL;

	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*ctx = req;
		request_begin(srv);
		req->route = find_route(url, method, &req->rep);
		return MHD_YES;
	}
	if (*upload_len) {
		/* Past the limit the rest is read and dropped, and the answer is 413. */
		if (req->len + *upload_len > CONTROL_BODY_MAX) {
			req->too_big = 1;
		} else if (req->route && (req->route->flags & ROUTE_BODY)) {
			char *p = realloc(req->body, req->len + *upload_len + 1);

			if (!p)
				return MHD_NO;
			memcpy(p + req->len, upload, *upload_len);
			req->body = p;
			req->body[req->len + *upload_len] = 0;
		}
		req->len += *upload_len;
		*upload_len = 0;
		return MHD_YES;
	}
	if (!req->route)
		return send_reply(conn, &req->rep);
	if (req->too_big) {
		reply_error(&req->rep, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE",
			    "request body too large", "the limit is %d bytes", CONTROL_BODY_MAX);
		return send_reply(conn, &req->rep);
	}
	if ((req->route->flags & ROUTE_BODY) && !(body = parse_body(req, &req->rep)))
		return send_reply(conn, &req->rep);
	set_busy(srv, 1);
	req->route->fn(srv, body, &req->rep);
	set_busy(srv, 0);
	json_object_put(body);
	return send_reply(conn, &req->rep);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
			 enum MHD_RequestTerminationCode code)
{
	struct control_server *srv = cls;
	struct request *req = *ctx;

	if (!req)
		return;
	json_object_put(req->rep.json); /* never sent: the connection failed first */
	free(req->body);
	free(req);
	*ctx = NULL;
	pthread_mutex_lock(&srv->lock);
	if (!--srv->inflight)
		pthread_cond_broadcast(&srv->idle);
	pthread_mutex_unlock(&srv->lock);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	fputs("vmm: control: ", stderr);
	vfprintf(stderr, fmt, ap);
}

int control_server_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmm: control socket %s: path longer than %zu bytes\n", path,
			sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EADDRINUSE && cli_socket_is_stale(path) && !unlink(path))
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0)
		goto fail;
	/* Whoever can connect can pause the VM and write files as this user. Nobody can
	 * connect before listen(), so there is no window with the default mode. */
	if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		r = errno;
		unlink(path);
		errno = r;
		goto fail;
	}
	return fd;
fail:
	fprintf(stderr, "vmm: control socket %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void server_free(struct control_server *srv)
{
	control_migration_free(srv->mig); /* joins the worker */
	pthread_cond_destroy(&srv->idle);
	pthread_mutex_destroy(&srv->lock);
	free(srv->path);
	free(srv);
}

int control_server_start(struct vmm_vm *vm, const char *path, int listen_fd,
			 struct control_server **out)
{
	struct control_server *srv = calloc(1, sizeof(*srv));
	int fd;

	*out = NULL;
	if (!srv || !(srv->path = strdup(path))) {
		fprintf(stderr, "vmm: control socket: out of memory\n");
		free(srv);
		return -1;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->idle, NULL);
	srv->vm = vm;
	srv->mem_size = vmm_vm_mem_size(vm);
	srv->mig = control_migration_new(vm);
	if (!srv->mig) {
		fprintf(stderr, "vmm: control socket: out of memory\n");
		server_free(srv);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &srv->started);
	srv->own_socket = listen_fd < 0;
	fd = srv->own_socket ? control_server_listen(path) : listen_fd;
	if (fd < 0) {
		server_free(srv);
		return -1;
	}
	/* One internal thread: requests are handled in turn, so a snapshot never runs
	 * concurrently with another call on the VM. MHD_USE_ITC for MHD_quiesce_daemon. */
	srv->mhd = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
					    MHD_USE_ERROR_LOG,
				    0, NULL, NULL, on_request, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				    MHD_OPTION_LISTEN_SOCKET, fd,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				    MHD_OPTION_CONNECTION_TIMEOUT, 60u,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		fprintf(stderr, "vmm: control socket %s: cannot start the HTTP server\n", path);
		if (srv->own_socket) {
			close(fd);
			unlink(path);
		}
		server_free(srv);
		return -1;
	}
	*out = srv;
	return 0;
}

void control_server_stop(struct control_server *srv)
{
	struct timespec deadline;
	MHD_socket fd;

	if (!srv)
		return;
	/* A migration still running is canceled (its worker is joined in server_free());
	 * one that has completed stops waiting for a client to read its result. */
	control_migration_close(srv->mig);
	fd = MHD_quiesce_daemon(srv->mhd);
	/* A handler still running (a snapshot with "stop" stops the VM before it returns) is
	 * waited for however long it takes; after that, its response gets DRAIN_SEC to reach
	 * a client that reads it, so a client that does not cannot hold the exit up. */
	pthread_mutex_lock(&srv->lock);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += DRAIN_SEC;
	while (srv->inflight) {
		if (srv->busy) {
			pthread_cond_wait(&srv->idle, &srv->lock);
			clock_gettime(CLOCK_REALTIME, &deadline);
			deadline.tv_sec += DRAIN_SEC;
		} else if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	MHD_stop_daemon(srv->mhd);
	/* A socket bound by the caller stays the caller's, open and in place, for the next
	 * server (a received VM served while in doubt, then while it runs). */
	if (srv->own_socket) {
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
		unlink(srv->path);
	}
	server_free(srv);
}
