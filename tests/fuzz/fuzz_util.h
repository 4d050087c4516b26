/* Helpers the fuzz targets share. */
#ifndef VMM_FUZZ_UTIL_H
#define VMM_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* bytes (a multiple of 4096) of zeroed read-write memory with an inaccessible page on each
 * side, so that a write just outside it faults even when the kernel does it (io_uring
 * reads, where ASan sees nothing). Never freed; NULL on failure. */
uint8_t *fuzz_guarded_map(size_t bytes);

/* A file holding data, for targets whose code under test reads a path. Reuses one file per
 * process (truncated and rewritten). Returns the path, NULL on failure. */
const char *fuzz_write_file(const uint8_t *data, size_t size);

/* The same, leaving every all-zero 4 KiB page of data a hole, as the snapshot writer leaves
 * RAM the guest never touched. */
const char *fuzz_write_sparse(const uint8_t *data, size_t size);

struct vmm_vm;
/* Moves vm's guest RAM (its memfd mapping) between two inaccessible pages, so that a
 * loader or restore writing past either end faults. Call fuzz_vm_destroy() instead of
 * vmm_vm_destroy() for it. Returns 0, -1 on failure (vm unchanged). */
int fuzz_guard_vm_ram(struct vmm_vm *vm);
void fuzz_vm_destroy(struct vmm_vm *vm);

#endif
