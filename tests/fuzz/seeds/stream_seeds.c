/* Writes small seeds for the stream target: in each compression mode, RAM records for a
 * few pages (zero, patterned, random, out of order across batches), a SYNC and an END,
 * as vmm__ram_tx sends them. Small on purpose: libFuzzer copies every input, and the old
 * 45-176 KiB seeds made that copy most of the cost of a run.
 *   stream_seeds DIR      (writes DIR/seed-small-mode0..3) */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/xport.h"

#define NPAGES 64

int main(int argc, char **argv)
{
	static uint8_t ram[NPAGES * 4096];
	static const uint64_t pages[][2] = { { 0, 3 }, { 3, 2 }, { 20, 2 } }; /* first, count */
	uint32_t x = 12345;

	if (argc != 2)
		return 2;
	for (size_t i = 0; i < sizeof(ram); i++) { /* zero, text-like, random: per page */
		uint64_t p = i / 4096;

		x = x * 1103515245 + 12345;
		ram[i] = p % 3 == 0 ? 0 : p % 3 == 1 ? (uint8_t)('a' + i % 7) : (uint8_t)(x >> 16);
	}
	for (int mode = 0; mode < 4; mode++) {
		char path[4096];
		struct vmm__xport_opts o = { .is_file = 1 };
		struct vmm__xport *xp;
		struct vmm__ram_tx *tx;
		int fd;

		snprintf(path, sizeof(path), "%s/seed-small-mode%d", argv[1], mode);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || vmm__xport_new(fd, &o, &xp) ||
		    vmm__ram_tx_new(ram, NPAGES, (enum vmm__compress)mode, 1, &tx))
			return 1;
		vmm__ram_tx_set_stable(tx, mode == 1);
		for (size_t b = 0; b < sizeof(pages) / sizeof(pages[0]); b++) {
			for (uint64_t p = pages[b][0]; p < pages[b][0] + pages[b][1]; p++)
				if (vmm__ram_tx_add(tx, xp, p))
					return 1;
			if (vmm__ram_tx_flush(tx, xp))
				return 1;
		}
		if (vmm__stream_write_rec(xp, VMM_REC_SYNC, NULL, 0) ||
		    vmm__stream_write_rec(xp, VMM_REC_END, NULL, 0))
			return 1;
		vmm__ram_tx_free(tx);
		vmm__xport_free(xp);
		close(fd);
	}
	return 0;
}
