/* The control API of a running vmm: HTTP/1.1 with JSON bodies on a UNIX socket, in the
 * style of Cloud Hypervisor's API socket (PUT /api/v1/vm.pause, GET /api/v1/vm.info, ...).
 * libmicrohttpd serves it from one internal thread; json-c builds and parses the bodies. */
#ifndef VMM_CONTROL_SERVER_H
#define VMM_CONTROL_SERVER_H

#include <stdint.h>

#include <json-c/json.h>

#include "vmm/vmm.h"

#define CONTROL_API_PREFIX "/api/v1/"
#define CONTROL_BODY_MAX (64 * 1024)

struct control_server;

/* Binds a UNIX socket at path (mode 0600, owned by this user; a stale socket nobody
 * listens on is replaced) and listens. Returns the fd, or -1 after printing why. A jailed
 * vmm binds before it enters the jail, where the caller asked (cli_jail.h). */
int control_server_listen(const char *path);

/* Serves on listen_fd, one from control_server_listen(path) that stays the caller's (not
 * closed, not removed, by control_server_stop()), or with listen_fd -1 binds path now
 * (mode 0600; a stale socket nobody listens on is replaced) and serves the API for vm until control_server_stop(). Requests are handled one at a
 * time on the server's thread, which calls the vmm API itself: pause, resume, stop and
 * get_state are any-thread calls, and snapshot is only ever made from that thread. A
 * migration (vm.migrate) runs on a worker thread of the server's; while it does, pause,
 * resume and snapshot are refused (409). Once it has completed, the worker stops the VM
 * (see control_migrate.h), so the vmm exits 0.
 * Returns 0 and *out, or -1 after printing why to stderr. */
int control_server_start(struct vmm_vm *vm, const char *path, int listen_fd,
			 struct control_server **out);

/* Stops accepting, cancels a migration in progress, lets requests in flight finish sending
 * their response (so that the answer to vm.shutdown reaches the client), stops and joins
 * the threads and removes the socket file (if it bound it). The VM may be destroyed afterwards, not
 * before. NULL is a no-op. */
void control_server_stop(struct control_server *srv);

/* The JSON encoding of snapshot statistics, shared by every endpoint that reports them
 * (vm.snapshot; vm.migration has figures of its own, control_migrate.c). Returns a new
 * object. */
struct json_object *control_json_snapshot_stats(const struct vmm_snapshot_stats *st);
/* A duration in ns as a JSON number of milliseconds with 3 decimals. */
struct json_object *control_json_ms(uint64_t ns);

#endif
