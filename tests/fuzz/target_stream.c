/* Fuzz target: a migration stream as the destination reads it after the hello: records of
 * any type, RAM batches applied into a small guest RAM. Must never crash or write outside
 * RAM, whatever the bytes. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/xport.h"

#define NPAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	struct vmm__xport_opts o = { .is_file = 1 };
	struct vmm__xport *xp;
	struct vmm__ram_rx *rx;
	struct vmm__rec_hdr h;
	int fd = memfd_create("fuzz", 0);

	if (!ram)
		ram = mmap(NULL, NPAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size || vmm__xport_new(fd, &o, &xp)) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (!vmm__ram_rx_new(ram, NPAGES, size & 1, &rx)) {
		while (!vmm__stream_read_hdr(xp, &h)) {
			uint8_t *p;

			if (h.type == VMM_REC_RAM) {
				if (vmm__ram_rx_apply(rx, xp, h.len))
					break;
				continue;
			}
			if (h.type == VMM_REC_END)
				break;
			vmm__xport_seek(xp, vmm__xport_offset(xp) - sizeof(h));
			if (vmm__stream_read_rec(xp, 0, &h, &p))
				break;
			free(p);
		}
		vmm__ram_rx_free(rx);
	}
	vmm__xport_free(xp);
	close(fd);
	return 0;
}
