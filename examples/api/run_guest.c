/* Runs a guest and captures its serial output through a callback.
 *
 *   cc run_guest.c $(pkg-config --cflags --libs libvmm) -o run_guest
 *   ./run_guest hello.elf ["guest command line"]
 */
#include <stdio.h>
#include <string.h>

#include <vmm/vmm.h>

/* Called on a vCPU thread for each chunk the guest writes to COM1. */
static void on_serial(void *opaque, const uint8_t *buf, size_t len)
{
	size_t *total = opaque;

	*total += len;
	fwrite(buf, 1, len, stdout);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct vmm_vm_config cfg;
	struct vmm_vm *vm;
	struct vmm_exit ex;
	size_t total = 0;
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s KERNEL [CMDLINE]\n", argv[0]);
		return 2;
	}
	vmm_vm_config_init(&cfg); /* defaults: 128 MiB, 1 vCPU */
	cfg.cmdline = argc > 2 ? argv[2] : "";
	cfg.serial_out = on_serial;
	cfg.serial_opaque = &total;

	r = vmm_vm_create(&cfg, &vm);
	if (!r)
		r = vmm_vm_load_kernel(vm, argv[1], NULL);
	if (!r)
		r = vmm_vm_start(vm);
	if (!r)
		r = vmm_vm_wait(vm, -1, &ex);
	if (r) {
		fprintf(stderr, "libvmm: %s (%s)\n", vmm_strerror(r), vmm_last_error());
		vmm_vm_destroy(vm);
		return 1;
	}
	vmm_vm_destroy(vm);
	fprintf(stderr, "guest wrote %zu bytes and exited with status %d (libvmm %s)\n", total,
		ex.status, vmm_version_string());
	return ex.reason == VMM_EXIT_GUEST ? ex.status : 1;
}
