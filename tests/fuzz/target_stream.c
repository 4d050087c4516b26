/* Fuzz target: a migration stream as the destination reads it after the hello: records of
 * any type, RAM batches applied into a small guest RAM with a guard page on each side.
 * Must never crash or write outside RAM, whatever the bytes.
 *
 * What each input runs is the receiver's code (vmm__stream_read_hdr, vmm__ram_rx_apply,
 * vmm__stream_read_rec through an io_uring transport on a file). What it does not redo per
 * input is the setup, which perf showed was 90% of the time at 165 inputs/s: the io_uring
 * ring (set up and torn down per input: mmap/munmap and TLB shootdowns), the receiver's
 * 2 MiB of staging buffers (ASan maps, poisons and unmaps each large allocation) and the
 * memfd. They are made once; per input the file is rewritten, the transport rewound and
 * the receivers reset (vmm__ram_rx_reset), RAM zeroed. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/xport.h"

#define NPAGES 64

static struct {
	int fd;
	uint8_t *ram;
	struct vmm__xport *xp;
	struct vmm__ram_rx *rx[2]; /* [fresh]: RAM known zero, or not */
} S;

static int setup(void)
{
	struct vmm__xport_opts o = { .is_file = 1 };

	S.fd = memfd_create("fuzz-stream", 0);
	S.ram = fuzz_guarded_map(NPAGES * 4096);
	return S.fd < 0 || !S.ram || vmm__xport_new(S.fd, &o, &S.xp) ||
	       vmm__ram_rx_new(S.ram, NPAGES, 0, &S.rx[0]) ||
	       vmm__ram_rx_new(S.ram, NPAGES, 1, &S.rx[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct vmm__ram_rx *rx;
	struct vmm__rec_hdr h;

	if (!ready) {
		if (setup())
			abort();
		ready = 1;
	}
	if (ftruncate(S.fd, 0) || pwrite(S.fd, data, size, 0) != (ssize_t)size)
		abort();
	vmm__xport_seek(S.xp, 0);
	memset(S.ram, 0, NPAGES * 4096);
	rx = S.rx[size & 1];
	vmm__ram_rx_reset(rx);
	while (!vmm__stream_read_hdr(S.xp, &h)) {
		uint8_t *p;

		if (h.type == VMM_REC_RAM) {
			if (vmm__ram_rx_apply(rx, S.xp, h.len))
				break;
			continue;
		}
		if (h.type == VMM_REC_END)
			break;
		vmm__xport_seek(S.xp, vmm__xport_offset(S.xp) - sizeof(h));
		if (vmm__stream_read_rec(S.xp, 0, &h, &p))
			break;
		free(p);
	}
	vmm__xport_drain(S.xp);
	return 0;
}
