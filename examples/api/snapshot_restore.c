/* Pause a running guest, snapshot it to a file, then restore that file into a new VM and
 * let the guest finish there.
 *
 *   cc snapshot_restore.c $(pkg-config --cflags --libs libvmm) -o snapshot_restore
 *   ./snapshot_restore counter.elf /tmp/counter.snap
 */
#include <stdio.h>
#include <unistd.h>

#include <vmm/vmm.h>

static void on_serial(void *opaque, const uint8_t *buf, size_t len)
{
	fwrite(buf, 1, len, stdout);
	fflush(stdout);
}

static int fail(const char *what, int r)
{
	fprintf(stderr, "%s: %s (%s)\n", what, vmm_strerror(r), vmm_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	struct vmm_vm_config cfg;
	struct vmm_snapshot_opts so;
	struct vmm_snapshot_stats st;
	struct vmm_restore_opts ro;
	struct vmm_vm *vm, *copy;
	struct vmm_exit ex;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: %s KERNEL SNAPSHOT-FILE\n", argv[0]);
		return 2;
	}
	vmm_vm_config_init(&cfg);
	cfg.cmdline = "count=20 interval=50000";
	cfg.serial_out = on_serial;
	r = vmm_vm_create(&cfg, &vm);
	if (!r)
		r = vmm_vm_load_kernel(vm, argv[1], NULL);
	if (!r)
		r = vmm_vm_start(vm);
	if (r)
		return fail("boot", r);
	usleep(300000); /* let it print a few lines */

	/* Paused for the save, then stopped: the guest lives on in the file. */
	vmm_snapshot_opts_init(&so);
	so.flags = VMM_SNAPSHOT_STOP;
	r = vmm_snapshot_save(vm, argv[2], &so, &st);
	vmm_vm_destroy(vm);
	if (r)
		return fail("snapshot", r);
	fprintf(stderr, "-- saved %llu pages (%.1f MB file) in %.2f ms, guest paused %.2f ms\n",
		(unsigned long long)st.pages_written, st.file_bytes / 1e6, st.total_ns / 1e6,
		st.pause_ns / 1e6);

	/* A new VM from the file continues where the old one stopped. */
	vmm_restore_opts_init(&ro);
	ro.serial_out = on_serial;
	r = vmm_snapshot_restore(argv[2], &ro, &copy);
	if (r)
		return fail("restore", r);
	fprintf(stderr, "-- restored; resuming\n");
	r = vmm_vm_start(copy);
	if (!r)
		r = vmm_vm_wait(copy, -1, &ex);
	vmm_vm_destroy(copy);
	if (r)
		return fail("run", r);
	return ex.reason == VMM_EXIT_GUEST ? ex.status : 1;
}
