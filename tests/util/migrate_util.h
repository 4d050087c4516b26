/* Migration test helpers: a destination process (the test binary re-executed with
 * "receive FD ..." or "receive-at ADDR PORT ...") and sending to it. VMs with a chosen
 * dirty-tracking backend are testutil.h's tu_vm_new_ring(). */
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
/* A receiving child's main: "receive FD [MAX_MIB]" (the fd mu_dest_start's child
 * inherits) or "receive-at ADDR PORT TIMEOUT_MS" (listens itself); runs the VM that
 * arrived and prints the guest's output. Exits 100 if nothing arrived, 103 if it ended in
 * doubt (then it discards its copy), 101 if the wait failed, 102 if the guest did not exit by itself, else the guest's status. */
int mu_child_receive(int argc, char **argv);
/* Connects opts->connections sockets to the destination and sends. */
int mu_send(struct vmm_vm *vm, struct mu_dest *d, const struct vmm_migrate_opts *o,
	    struct vmm_migrate_stats *st);
/* A listening socket on 127.0.0.1:(ephemeral); *port gets the port. */
int mu_listen(uint16_t *port);

#endif
