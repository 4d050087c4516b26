/* virtio-rng from getrandom(): each request gets as many random bytes as its buffers
 * hold, up to 64 KiB (the spec lets the device write less than offered). */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "vmm/devices.h"
#include "libvmm/devices/virtio_mmio.h"
#include "libvmm/devices/virtio_rng.h"
#include "libvmm/error_internal.h"

#define RNG_CHUNK 65536

struct rng {
	struct vmm__virtio_req req; /* the transport's lock covers all of it */
	uint8_t buf[RNG_CHUNK];
	uint64_t requests, bytes; /* vmm_device_info's counters */
};

/* Fills buf; the bytes it got (getrandom may stop early on a signal past 256 bytes). */
static size_t fill(uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void rng_notify(void *model, struct vmm__virtio *t, uint32_t q)
{
	struct rng *r = model;
	int got;

	while ((got = vmm__virtio_pop(t, q, &r->req)) == 1) {
		size_t n = r->req.wlen < RNG_CHUNK ? (size_t)r->req.wlen : RNG_CHUNK;

		n = fill(r->buf, n);
		if (vmm__virtio_scatter(t, &r->req, 0, r->buf, n))
			return;
		vmm__virtio_push(t, q, &r->req, (uint32_t)n);
		r->requests++;
		r->bytes += n;
	}
}

static void rng_info(void *model, struct vmm_device_info *info)
{
	const struct rng *r = model;

	info->requests = r->requests;
	info->bytes_read = r->bytes;
}

static void rng_destroy(void *model)
{
	free(model);
}

static const struct vmm__virtio_model rng_model = {
	.kind = "rng",
	.device_id = 4,
	.nqueues = 1,
	.notify = rng_notify,
	.destroy = rng_destroy,
	.info = rng_info,
};

int vmm__virtio_rng_create(const struct vmm__device_host *host, uint32_t slot)
{
	struct rng *r = calloc(1, sizeof(*r));

	if (!r)
		return vmm__err(VMM_ENOMEM, "virtio-rng");
	return vmm__virtio_create(host, slot, &rng_model, r);
}
