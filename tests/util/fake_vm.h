/* VMs on the fake kernel (fake_kvm.h), and the smallest kernel images the loaders take. */
#ifndef VMM_FAKE_VM_H
#define VMM_FAKE_VM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vmm.h"
#include "fake_kvm.h"

/* Installs the fake kernel (if not yet) and creates a VM on it; NULL on failure (see
 * vmm_last_error()). serial may be NULL. */
struct vmm_vm *fake_vm_new(uint64_t mem_mib, uint32_t vcpus, uint32_t ring_entries,
			   vmm_serial_fn serial, void *opaque);
/* The same, with a small ELF64 kernel loaded: ready for vmm_vm_start(). */
struct vmm_vm *fake_vm_new_loaded(uint64_t mem_mib, uint32_t vcpus, vmm_serial_fn serial,
				  void *opaque);

/* A cmocka setup: installs the fake kernel before each test. */
int fake_vm_setup(void **state);

/* An ELF64 x86-64 executable with one PT_LOAD segment of `code` at paddr `load`, entered
 * at `entry`. Returns its length (buf needs 4096 + len bytes). */
size_t fake_elf64(uint8_t *buf, uint64_t load, uint64_t entry, const void *code, size_t len);
/* A multiboot v1 image using the a.out kludge: `code` loaded at `load`, entered at entry. */
size_t fake_multiboot(uint8_t *buf, uint32_t load, uint32_t entry, const void *code, size_t len);
/* A bzImage (boot protocol 2.15, 64-bit entry) with 4 setup sectors and `code` as its
 * protected-mode part. */
size_t fake_bzimage(uint8_t *buf, const void *code, size_t len);

#endif
