/* Populate-ahead for a migration's receiver (issue 14): the destination's first write to
 * fresh shared memory (page fault, allocation, zeroing) costs more than the copy from the
 * socket, so a thread of the receiver faults guest RAM in with MADV_POPULATE_WRITE ahead
 * of the receiving threads, in the order pages arrive (each connection's 2 MiB chunks,
 * ascending: protocol.h), and they only copy. It never goes more than a window ahead, and
 * not at all on a connection whose last batch was mostly zero pages (those stay unallocated
 * at the destination); whatever it populated that no page ever landed in (zero pages, the
 * source's holes) is given back when it stops. Without MADV_POPULATE_WRITE (Linux < 5.14)
 * the thread ends at once and nothing changes. */
#ifndef VMM_RX_POPULATE_H
#define VMM_RX_POPULATE_H

#include <stdint.h>

struct vmm__rx_populate;

/* How far ahead of a connection the thread goes, in that connection's 2 MiB chunks past
 * the one it is in: enough to ride out a scheduling hiccup, small enough that what a run
 * of zero pages costs stays small. */
#define VMM__RX_POPULATE_AHEAD 16

/* Process-wide switch, for benchmarks and tests that compare: OFF, AUTO (the default: on
 * for VMs of 64 MiB and more) or ON (any size). Any thread. */
enum { VMM__RX_POPULATE_OFF = 0, VMM__RX_POPULATE_AUTO = 1, VMM__RX_POPULATE_ON = 2 };
void vmm__rx_populate_enable(int mode);

/* Starts the thread on ram (npages pages, the memfd's shared mapping) for nconns
 * connections. *out NULL (and 0) when switched off or the thread cannot start: the
 * receive goes on without it. */
int vmm__rx_populate_start(uint8_t *ram, uint64_t npages, unsigned nconns,
			   struct vmm__rx_populate **out);
/* Connection conn applied a batch ending at page `last`, of which `zeros` of `count`
 * pages were zero. Called by that connection's thread after each batch. */
void vmm__rx_populate_progress(struct vmm__rx_populate *p, unsigned conn, uint64_t last,
			       uint32_t count, uint32_t zeros);
/* Stops and joins the thread (p may be NULL). When written is not NULL, the pages it
 * populated for which written(opaque, page) is 0 are released (MADV_REMOVE): zero pages
 * and pages never sent stay unallocated, as without populate-ahead. Returns the pages
 * populated ahead, and in *released (may be NULL) those given back. */
uint64_t vmm__rx_populate_stop(struct vmm__rx_populate *p,
			       int (*written)(void *opaque, uint64_t page), void *opaque,
			       uint64_t *released);

#endif
