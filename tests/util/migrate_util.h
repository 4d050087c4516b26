/* Migration test helpers: a destination process (the test binary re-executed with
 * "receive FD ..."), sending to it, and VMs with a chosen dirty-tracking backend. */
#ifndef VMM_MIGRATE_UTIL_H
#define VMM_MIGRATE_UTIL_H

#include <sys/types.h>

#include "testutil.h"

struct mu_dest {
	int lfd;        /* listening socket, inherited by the child */
	uint16_t port;
	pid_t pid;
	char outpath[256];
};

/* Listens on 127.0.0.1:(ephemeral) and spawns the receiving child. max_mem_mib: the
 * child refuses VMs larger than this (0: no limit). */
void mu_dest_start(struct mu_dest *d, uint64_t max_mem_mib);
/* Waits for the child; returns its guest output (malloc'd) and its exit status. */
char *mu_dest_finish(struct mu_dest *d, int *status);
/* The child's main: receive on the inherited fd, run, print the guest's output. */
int mu_child_receive(int argc, char **argv);
/* Connects opts->connections sockets to the destination and sends. */
int mu_send(struct vmm_vm *vm, struct mu_dest *d, const struct vmm_migrate_opts *o,
	    struct vmm_migrate_stats *st);
/* A listening socket on 127.0.0.1:(ephemeral); *port gets the port. */
int mu_listen(uint16_t *port);

#endif
