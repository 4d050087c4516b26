/* virtio-rng (VIRTIO 1.2 section 5.4, device id 4): one queue the driver fills with
 * writable buffers, answered from getrandom(). No features, no configuration. */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include <stdint.h>

struct vmm__device_host;

int vmm__virtio_rng_create(const struct vmm__device_host *host, uint32_t slot);

#endif
