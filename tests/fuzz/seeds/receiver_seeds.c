/* Writes seeds for the receiver target: what a source sends after its HELLO for a 2 MiB,
 * 1-vCPU VM on the fake kernel: a ROUND marker, RAM batches (raw, and zstd in the second
 * seed), a SYNC, END, the machine STATE, COMPLETE with the page count, GO.
 *   receiver_seeds DIR      (writes DIR/seed-raw and DIR/seed-zstd) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fake_vm.h"
#include "libvmm/vm_move.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/xport.h"
#include "stream.pb-c.h"

static int seed(const char *path, enum vmm__compress mode)
{
	static const char text[] = "guest data a migration must carry";
	struct vmm__xport_opts o = { .is_file = 1 };
	Vmm__Stream__Round round = VMM__STREAM__ROUND__INIT;
	Vmm__Stream__Complete done = VMM__STREAM__COMPLETE__INIT;
	struct vmm_vm *vm = fake_vm_new_loaded(2, 1, NULL, NULL);
	struct vmm__memory *mem;
	struct vmm__xport *xp;
	struct vmm__ram_tx *tx;
	uint8_t *state;
	size_t state_len;
	uint64_t sent = 0;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (!vm || fd < 0 || vmm__xport_new(fd, &o, &xp))
		return -1;
	for (uint64_t gpa = 0x1f0000; gpa < 0x1f4000; gpa += 4096)
		vmm_vm_mem_write(vm, gpa, text, sizeof(text));
	if (vmm_vm_start(vm) || vmm_vm_pause(vm) || vmm__move_state_encode(vm, &state, &state_len))
		return -1;
	mem = vmm__move_ram(vm);
	if (vmm__ram_tx_new(mem->host, mem->size / 4096, mode, 1, &tx))
		return -1;
	vmm__ram_tx_set_stable(tx, 1);
	round.has_round = 1, round.round = 0;
	round.has_final = 1, round.final = 1;
	if (vmm__stream_write_msg(xp, VMM_REC_ROUND, &round.base))
		return -1;
	/* the kernel image (0x100000) and the written pages, plus two zero pages */
	for (uint64_t p = 0x100; p < 0x102; p++, sent++)
		if (vmm__ram_tx_add(tx, xp, p))
			return -1;
	for (uint64_t p = 0x1ee; p < 0x1f4; p++, sent++)
		if (vmm__ram_tx_add(tx, xp, p))
			return -1;
	if (vmm__ram_tx_flush(tx, xp) || vmm__stream_write_rec(xp, VMM_REC_SYNC, NULL, 0) ||
	    vmm__stream_write_rec(xp, VMM_REC_END, NULL, 0) ||
	    vmm__stream_write_rec(xp, VMM_REC_STATE, state, state_len))
		return -1;
	done.has_pages_total = 1, done.pages_total = sent;
	done.has_state_bytes = 1, done.state_bytes = state_len;
	if (vmm__stream_write_msg(xp, VMM_REC_COMPLETE, &done.base) ||
	    vmm__stream_write_rec(xp, VMM_REC_GO, NULL, 0))
		return -1;
	free(state);
	vmm__ram_tx_free(tx);
	vmm__xport_free(xp);
	close(fd);
	vmm_vm_destroy(vm);
	return 0;
}

int main(int argc, char **argv)
{
	char path[4096];

	if (argc != 2)
		return 2;
	fake_kvm_install();
	snprintf(path, sizeof(path), "%s/seed-raw", argv[1]);
	if (seed(path, VMM_COMPRESS_OFF)) {
		fprintf(stderr, "receiver_seeds: %s\n", vmm_last_error());
		return 1;
	}
	snprintf(path, sizeof(path), "%s/seed-zstd", argv[1]);
	if (seed(path, VMM_COMPRESS_ZSTD)) {
		fprintf(stderr, "receiver_seeds: %s\n", vmm_last_error());
		return 1;
	}
	return 0;
}
