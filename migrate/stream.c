/* Record framing over a transport. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/error_internal.h"
#include "migrate/stream.h"
#include "stream.pb-c.h"

const char *vmm__rec_name(unsigned type)
{
	static const char *const names[] = { "invalid", "hello", "hello-reply", "ram", "round",
					     "state", "complete", "committed", "error", "end",
					     "sync", "ready", "go", "started", "disk" };

	return type <= VMM_REC_MAX_TYPE ? names[type] : "unknown";
}

struct preamble {
	char magic[8];
	uint16_t major, minor;
	uint32_t reserved;
} __attribute__((packed));

int vmm__stream_write_preamble(struct vmm__xport *xp)
{
	struct preamble p = { .major = VMM_STREAM_MAJOR, .minor = VMM_STREAM_MINOR };

	memcpy(p.magic, VMM_STREAM_MAGIC, 8);
	return vmm__xport_write(xp, &p, sizeof(p));
}

int vmm__stream_read_preamble(struct vmm__xport *xp, uint32_t *major, uint32_t *minor)
{
	struct preamble p;
	int r = vmm__xport_read(xp, &p, sizeof(p));

	if (r)
		return r;
	if (memcmp(p.magic, VMM_STREAM_MAGIC, 8))
		return vmm__err(VMM_EMAGIC, "stream does not start with %s", VMM_STREAM_MAGIC);
	if (p.major > VMM_STREAM_MAJOR || p.major < VMM_STREAM_MAJOR_MIN)
		return vmm__err(VMM_EVERSION, "stream format %u.%u, this library reads %u.x to %u.x",
				p.major, p.minor, VMM_STREAM_MAJOR_MIN, VMM_STREAM_MAJOR);
	*major = p.major;
	*minor = p.minor;
	return 0;
}

int vmm__stream_write_rec(struct vmm__xport *xp, unsigned type, const void *payload, size_t len)
{
	struct vmm__rec_hdr h = { VMM_REC_HDR_MAGIC, (uint8_t)type, 0, (uint32_t)len };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, len } };

	if (len > VMM_REC_MAX_LEN)
		return vmm__err(VMM_EINVAL, "%s record of %zu bytes", vmm__rec_name(type), len);
	return vmm__xport_writev(xp, iov, len ? 2 : 1);
}

int vmm__stream_read_hdr(struct vmm__xport *xp, struct vmm__rec_hdr *h)
{
	int r = vmm__xport_read(xp, h, sizeof(*h));

	if (r)
		return r;
	if (h->magic != VMM_REC_HDR_MAGIC || h->type == VMM_REC_INVALID ||
	    h->type > VMM_REC_MAX_TYPE || h->flags != 0)
		return vmm__err(VMM_EPROTO, "bad record header (magic 0x%x, type %u) at byte %llu",
				h->magic, h->type,
				(unsigned long long)(vmm__xport_bytes(xp) - sizeof(*h)));
	if (h->len > VMM_REC_MAX_LEN ||
	    (h->type != VMM_REC_RAM && h->type != VMM_REC_STATE && h->len > VMM_REC_SMALL_MAX) ||
	    ((h->type == VMM_REC_END || h->type == VMM_REC_SYNC || h->type == VMM_REC_GO) &&
	     h->len))
		return vmm__err(VMM_EPROTO, "%s record claims %u bytes", vmm__rec_name(h->type),
				h->len);
	return 0;
}

static int peer_error(const uint8_t *p, size_t len)
{
	Vmm__Stream__Error *e = vmm__stream__error__unpack(NULL, len, p);
	int r;

	if (!e)
		return vmm__err(VMM_EPROTO, "unparsable error record from the peer");
	/* A peer that refuses for want of TLS (or of our credentials) says which: the caller
	 * gets that code, not a generic refusal. */
	r = vmm__err(e->code == VMM_ETLS || e->code == VMM_EAUTH ? e->code : VMM_EREFUSED,
		     "peer: %s (%s)", e->message ? e->message : "", vmm_err_name(e->code));
	vmm__stream__error__free_unpacked(e, NULL);
	return r;
}

int vmm__stream_read_rec(struct vmm__xport *xp, unsigned want, struct vmm__rec_hdr *h,
			 uint8_t **payload)
{
	int r = vmm__stream_read_hdr(xp, h);

	*payload = NULL;
	if (r)
		return r;
	*payload = malloc(h->len ? h->len : 1);
	if (!*payload)
		return vmm__err(VMM_ENOMEM, "%s record", vmm__rec_name(h->type));
	r = vmm__xport_read(xp, *payload, h->len);
	if (!r && h->type == VMM_REC_ERROR && want != VMM_REC_ERROR)
		r = peer_error(*payload, h->len);
	else if (!r && want && h->type != want)
		r = vmm__err(VMM_EPROTO, "expected a %s record, got %s", vmm__rec_name(want),
			     vmm__rec_name(h->type));
	if (r) {
		free(*payload);
		*payload = NULL;
	}
	return r;
}

void vmm__stream_send_error(struct vmm__xport *xp, int code, const char *msg)
{
	Vmm__Stream__Error e = VMM__STREAM__ERROR__INIT;
	char text[768];
	uint8_t buf[1024];
	size_t len;

	snprintf(text, sizeof(text), "%s", msg ? msg : "");
	e.has_code = 1;
	e.code = code;
	e.message = text;
	len = vmm__stream__error__get_packed_size(&e);
	if (len > sizeof(buf))
		return;
	vmm__stream__error__pack(&e, buf);
	vmm__stream_write_rec(xp, VMM_REC_ERROR, buf, len);
}

size_t vmm__stream_error_bytes(int code, const char *msg, uint8_t *buf, size_t cap)
{
	Vmm__Stream__Error e = VMM__STREAM__ERROR__INIT;
	struct vmm__rec_hdr h = { VMM_REC_HDR_MAGIC, VMM_REC_ERROR, 0, 0 };
	size_t len;

	e.has_code = 1;
	e.code = code;
	e.message = (char *)msg;
	len = vmm__stream__error__get_packed_size(&e);
	if (sizeof(h) + len > cap)
		return 0;
	h.len = (uint32_t)len;
	memcpy(buf, &h, sizeof(h));
	vmm__stream__error__pack(&e, buf + sizeof(h));
	return sizeof(h) + len;
}

int vmm__stream_write_msg(struct vmm__xport *xp, unsigned type, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	int r;

	if (!buf)
		return vmm__err(VMM_ENOMEM, "%s record", vmm__rec_name(type));
	protobuf_c_message_pack(m, buf);
	r = vmm__stream_write_rec(xp, type, buf, len);
	free(buf);
	return r;
}
