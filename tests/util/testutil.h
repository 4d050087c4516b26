/* Shared test helpers: skip without /dev/kvm, guest paths, capturing guest serial output. */
#ifndef VMM_TESTUTIL_H
#define VMM_TESTUTIL_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/vmm.h"

/* Exits 77 with a reason if /dev/kvm cannot be opened read-write. Call first in main().
 * VMM_TEST_FILTER (a cmocka pattern, `*` wildcards) then runs only the matching cases. */
void tu_require_kvm(void);
/* The sum of len bytes modulo 256: 0 for a whole MP or ACPI table with a right checksum
 * (computed here, not with the library's vmm__fw_checksum, so a test checks it). */
uint8_t tu_byte_sum(const uint8_t *p, size_t len);
/* "<build>/tests/guests/<name>" in a static buffer. */
const char *tu_guest(const char *name);

/* A growable, thread-safe byte buffer that a VM's serial sink appends to. */
struct tu_output {
	pthread_mutex_t lock;
	char *buf;
	size_t len, cap;
};
void tu_output_init(struct tu_output *o);
void tu_output_free(struct tu_output *o);
/* vmm_serial_fn that appends to the struct tu_output passed as opaque. */
void tu_output_sink(void *opaque, const uint8_t *buf, size_t len);
/* A NUL-terminated copy of what was captured so far (malloc'd). */
char *tu_output_copy(struct tu_output *o);
/* Number of complete lines captured so far. */
size_t tu_output_lines(struct tu_output *o);

/* How much longer than on native KVM things may take here: 10 in the emulated KVM host
 * (tests/vmhost sets VMM_TEST_EMULATED=1), else 1. Deadlines and sizes scale with it; what
 * a test checks never does. */
unsigned tu_slowdown(void);
/* Waits until out holds n complete lines. Fails the test, showing what the guest printed,
 * if vm (may be NULL) stops first or timeout_s (times tu_slowdown()) passes. */
void tu_wait_lines(struct tu_output *out, struct vmm_vm *vm, size_t n, unsigned timeout_s);

/* Creates a VM with mem_mib MiB and vcpus, loads guest `name` with cmdline, capturing
 * serial into out. Asserts on failure. */
struct vmm_vm *tu_vm_new(const char *name, const char *cmdline, uint64_t mem_mib,
			 uint32_t vcpus, struct tu_output *out);
/* The same with a dirty ring of ring entries (0: KVM's dirty bitmap). */
struct vmm_vm *tu_vm_new_ring(const char *name, const char *cmdline, uint64_t mem_mib,
			      uint32_t vcpus, uint32_t ring, struct tu_output *out);
/* Runs a guest to completion; returns its output (malloc'd) and the exit in *ex. */
char *tu_run_guest(const char *name, const char *cmdline, uint64_t mem_mib, uint32_t vcpus,
		   struct vmm_exit *ex);
/* A whole file, NUL-terminated, malloc'd; *len (may be NULL) gets its size. Asserts that
 * it can be read. */
char *tu_read_file(const char *path, size_t *len);
/* Returns the last non-empty line of s in a static buffer. */
const char *tu_last_line(const char *s);
void tu_sleep_us(unsigned us);

#endif
