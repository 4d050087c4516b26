/* The stream: a preamble, then typed, length-prefixed records over a transport. Control
 * and state records carry protobuf messages (proto/stream.proto); RAM records carry page
 * batches (ram.h). The same records make a live migration over TCP and the RAM section of
 * compressed and incremental snapshot files. A record that does not parse ends the stream
 * with VMM_EPROTO; lengths are bounded before anything is allocated. */
#ifndef VMM_STREAM_H
#define VMM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/xport.h"

#define VMM_STREAM_MAGIC "LIBVMMST"
/* Format versions of the stream and of snapshot files. A reader accepts its own major
 * and the one before; minor versions only add optional things. */
#define VMM_STREAM_MAJOR 1
#define VMM_STREAM_MINOR 1 /* 1.1: the READY/GO/STARTED hand-over (VMM_FEAT_HANDOVER) */
#define VMM_STREAM_MAJOR_MIN 1

/* Required feature bits: a reader that does not know one refuses, naming it. */
#define VMM_FEAT_RAM_IMAGE (1ull << 0)   /* snapshot RAM as a page-aligned image */
#define VMM_FEAT_RAM_BATCHES (1ull << 1) /* RAM as batch records */
#define VMM_FEAT_ZSTD (1ull << 2)        /* batches may be zstd-compressed */
#define VMM_FEAT_INCREMENTAL (1ull << 3) /* only pages dirtied since a parent */
/* Live migration ends with READY, GO, STARTED (protocol.h), not 1.0's COMMITTED. A source
 * requires it, so a 1.0 destination refuses by name instead of starting the guest while
 * the source may still resume; a destination refuses a source without it. */
#define VMM_FEAT_HANDOVER (1ull << 4)
/* The guest's disk images travel in the stream (DISK records, migrate/disk_stream.h). */
#define VMM_FEAT_DISKS (1ull << 5)
#define VMM_FEAT_KNOWN (VMM_FEAT_RAM_IMAGE | VMM_FEAT_RAM_BATCHES | VMM_FEAT_ZSTD | \
			VMM_FEAT_INCREMENTAL | VMM_FEAT_HANDOVER | VMM_FEAT_DISKS)

enum vmm__rec_type {
	VMM_REC_INVALID = 0, /* never sent: a zeroed header is an error */
	VMM_REC_HELLO = 1,
	VMM_REC_HELLO_REPLY = 2,
	VMM_REC_RAM = 3,
	VMM_REC_ROUND = 4,
	VMM_REC_STATE = 5,
	VMM_REC_COMPLETE = 6,
	VMM_REC_COMMITTED = 7, /* retired with stream 1.1 (never sent, never reused) */
	VMM_REC_ERROR = 8,
	VMM_REC_END = 9,  /* end of a RAM section */
	VMM_REC_SYNC = 10, /* echoed by the receiver once everything before it is applied */
	VMM_REC_READY = 11,   /* destination: I hold the whole guest, paused */
	VMM_REC_GO = 12,      /* source: yours; its last word (empty) */
	VMM_REC_STARTED = 13, /* destination: the outcome of the start after GO */
	VMM_REC_DISK = 14,    /* disk images' layout or blocks (disk_stream.h) */
	VMM_REC_MAX_TYPE = 14,
};

#define VMM_REC_MAX_LEN (64u << 20)
/* Every record but RAM and STATE is a small message (the largest, HELLO, is a few KiB):
 * a header claiming more is refused before anything is allocated for it. */
#define VMM_REC_SMALL_MAX (1u << 20)
#define VMM_REC_HDR_MAGIC 0x564du /* "MV" */

struct vmm__rec_hdr {
	uint16_t magic;
	uint8_t type;
	uint8_t flags; /* reserved, 0 */
	uint32_t len;  /* payload bytes after this header */
} __attribute__((packed));

const char *vmm__rec_name(unsigned type);

/* Preamble: 8 magic bytes, major, minor (u16 each), 4 reserved. */
int vmm__stream_write_preamble(struct vmm__xport *xp);
/* Reads and checks it: VMM_EMAGIC, VMM_EVERSION naming both versions. */
int vmm__stream_read_preamble(struct vmm__xport *xp, uint32_t *major, uint32_t *minor);

/* Writes one record with a payload from a buffer. */
int vmm__stream_write_rec(struct vmm__xport *xp, unsigned type, const void *payload, size_t len);
/* Reads a record header and checks magic, type and length. */
int vmm__stream_read_hdr(struct vmm__xport *xp, struct vmm__rec_hdr *h);
/* Reads a whole record whose type must be `want` (0: any) into a malloc'd buffer. A
 * VMM_REC_ERROR from the peer is returned as VMM_EREFUSED with its message as detail. */
int vmm__stream_read_rec(struct vmm__xport *xp, unsigned want, struct vmm__rec_hdr *h,
			 uint8_t **payload);
struct ProtobufCMessage;
/* Packs a protobuf message and writes it as one record. */
int vmm__stream_write_msg(struct vmm__xport *xp, unsigned type, const struct ProtobufCMessage *m);

/* Sends VMM_REC_ERROR carrying code and the current thread's error detail. */
void vmm__stream_send_error(struct vmm__xport *xp, int code, const char *msg);

/* One ERROR record (code, msg) in buf, for a connection that gets no transport (a peer
 * dropped at the door: it reads it where it waits for the HELLO_REPLY): its length, 0 if
 * cap is too small. */
size_t vmm__stream_error_bytes(int code, const char *msg, uint8_t *buf, size_t cap);

#endif
