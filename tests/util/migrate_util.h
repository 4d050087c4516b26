/* Migration test helpers: a destination process (the test binary re-executed with
 * "receive FD ..." or "receive-at ADDR PORT ...") and sending to it. VMs with a chosen
 * dirty-tracking backend are testutil.h's tu_vm_new_ring(). */
#ifndef VMM_MIGRATE_UTIL_H
#define VMM_MIGRATE_UTIL_H

#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>

#include "vmm/migrate.h"

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
 * inherits) or "receive-at ADDR PORT TIMEOUT_MS [WAIT_MS]" (listens itself); runs the VM that
 * arrived and prints the guest's output. Exits 100 if nothing arrived, 103 if it ended in
 * doubt (then it discards its copy), 101 if the wait failed, 102 if the guest did not exit by itself, else the guest's status. */
int mu_child_receive(int argc, char **argv);
/* Pauses the VM and prints each vCPU's registers, run state and pending events: what a
 * test shows when a guest stops making progress. */
void mu_dump_vcpus(struct vmm_vm *vm, FILE *f);
/* Connects opts->connections sockets to the destination and sends. */
int mu_send(struct vmm_vm *vm, struct mu_dest *d, const struct vmm_migrate_opts *o,
	    struct vmm_migrate_stats *st);
/* A listening socket on 127.0.0.1:(ephemeral); *port gets the port. */
int mu_listen(uint16_t *port);

/* A receiver on a thread of this process (the fake-kernel tests, where source and
 * destination share one fake kernel): vmm_migrate_receive on its own listening socket,
 * its outcome and the detail of a failure kept for the test. */
struct mu_rx {
	struct vmm_receive_opts o; /* vmm_receive_opts_init's by mu_rx_init: change before start */
	int lfd;
	uint16_t port;
	pthread_t thread;
	int r;
	struct vmm_vm *vm;         /* what arrived (NULL on most failures) */
	char detail[512];          /* vmm_last_error() of the receiving thread */
};
void mu_rx_init(struct mu_rx *x);
/* Listens and starts the receiving thread. */
void mu_rx_start(struct mu_rx *x);
/* Joins it, closes the listening socket; returns the receive's result. */
int mu_rx_join(struct mu_rx *x);

#endif
