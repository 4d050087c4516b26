/* vm.migrate for the control server: one live migration at a time, run on a worker thread
 * the server owns, its per-round progress kept for GET vm.migration, cancel, and the end
 * of the source VM once it has moved. */
#ifndef VMM_CONTROL_MIGRATE_H
#define VMM_CONTROL_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vmm/vmm.h"

#include "cli_tls.h"

/* After a completed migration the source VM is stopped (and its vmm exits) as soon as a
 * GET vm.migration has returned the completed document, or this long after completion
 * if no client asks. */
#define CONTROL_MIGRATE_LINGER_MS 3000

struct control_migration;

/* What a vm.migrate body asks for. */
struct control_migrate_req {
	char destination[300]; /* as given: HOST:PORT or [V6]:PORT */
	char host[256];
	uint16_t port;
	struct vmm_migrate_opts opts; /* opts.tls is set from tls by the worker */
	struct cli_tls tls;
};

/* The migration side of vm's control server. NULL when out of memory. */
struct control_migration *control_migration_new(struct vmm_vm *vm);
/* Refuses new migrations from now on, cancels a running one and cuts short the wait of a
 * completed one (control_migrate.c stops the VM then). Any thread. */
void control_migration_close(struct control_migration *m);
/* Closes, joins the worker thread and frees. NULL is a no-op. */
void control_migration_free(struct control_migration *m);

/* Fills req from a vm.migrate body. Unknown keys, wrong types and values out of range are
 * refused: -1 with the reason in why. */
int control_migrate_parse(struct json_object *body, struct control_migrate_req *req,
			  char *why, size_t len);
/* Starts the worker. 0, or VMM_ESTATE (a migration runs, the VM has moved, the server
 * is closing) or VMM_ESYS (no thread), with the reason in why. */
int control_migrate_start(struct control_migration *m, const struct control_migrate_req *req,
			  char *why, size_t len);
/* Asks the running migration to stop (it fails with VMM_ECANCELED, the VM runs on).
 * 0, or VMM_ESTATE if none is running. */
int control_migrate_cancel(struct control_migration *m);
/* Records that vmm_migrate_resolve(how) ended an in-doubt outcome on this VM (the source's
 * migration, if one was in doubt, then reads failed for RUN and completed for DISCARD, with
 * the resolution). */
void control_migrate_resolved(struct control_migration *m, enum vmm_resolve how);
/* Why pause, resume and snapshot are refused now (a migration runs, or the VM has moved),
 * or NULL when they are not. */
const char *control_migrate_busy(struct control_migration *m);
/* The vm.migration document: state, rounds so far, totals, error. reported: the caller
 * sends it to a client, so a completed migration may let its VM go. */
struct json_object *control_migrate_status(struct control_migration *m, int reported);

#endif
