/* A proxy for migration tests: sits between a source and a destination on 127.0.0.1,
 * forwards the stream record by record (one connection), and breaks the link just before
 * one chosen record: cut (both sides see the other gone, as a killed peer or a reset), stall
 * (nothing more passes, sockets stay open: a partition, both sides wait out their timeout),
 * mangle COMPLETE, or cancel the source's send and stall; or just call a hook of the
 * test's before forwarding it. */
#ifndef VMM_HANDOVER_PROXY_H
#define VMM_HANDOVER_PROXY_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/vmm.h"

enum hp_fault {
	HP_NONE,
	HP_CUT,
	HP_STALL,
	HP_MANGLE, /* COMPLETE's pages_total off by one, then forwarded */
	HP_CANCEL, /* vmm_migrate_cancel(src), then stall */
	HP_CALL,   /* hook(hook_opaque), then forwarded */
};

enum { HP_TO_DST = 0, HP_TO_SRC = 1 };

struct hp_pump {
	struct hp_proxy *p;
	int dir;
	pthread_t th;
};

struct hp_proxy {
	int lfd, up, down;  /* listening for the source; to the destination; from the source */
	uint16_t port;      /* where the source connects */
	uint16_t dst_port;
	enum hp_fault fault;
	int dir;            /* the fault fires before forwarding the first `type` going `dir` */
	unsigned type;      /* enum vmm__rec_type */
	struct vmm_vm *src; /* HP_CANCEL */
	void (*hook)(void *opaque); /* HP_CALL */
	void *hook_opaque;
	int fired, stalled, done; /* atomics */
	pthread_t th;
	struct hp_pump pumps[2];
};

/* Listens and starts forwarding to 127.0.0.1:dst_port once the source connects. */
void hp_start(struct hp_proxy *p, uint16_t dst_port, enum hp_fault fault, int dir,
	      unsigned type, struct vmm_vm *src);
/* HP_CALL: hook(opaque) runs on the proxy's thread before the first `type` going `dir`
 * is forwarded. */
void hp_start_call(struct hp_proxy *p, uint16_t dst_port, int dir, unsigned type,
		   void (*hook)(void *opaque), void *opaque);
/* 1 once the fault fired. */
int hp_fired(struct hp_proxy *p);
/* Ends a stall, closes everything, joins the threads. */
void hp_stop(struct hp_proxy *p);

#endif
