/* Serverless fast-start: restore N VMs lazily from one snapshot. Each maps the snapshot's
 * RAM copy-on-write, so a clone costs only the pages it changes; all run side by side.
 * Reports the time each restore took and the memory each clone added.
 *
 *   cc clone.c $(pkg-config --cflags --libs libvmm) -o clone
 *   ./clone counter.snap 10
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmm/vmm.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* This process's resident memory that no other process shares with it (kB). */
static long private_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kb = 0, v;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Private_Clean: %ld", &v) == 1 ||
		    sscanf(line, "Private_Dirty: %ld", &v) == 1)
			kb += v;
	if (f)
		fclose(f);
	return kb;
}

struct clone {
	struct vmm_vm *vm;
	size_t out_bytes;
};

static void count_output(void *opaque, const uint8_t *buf, size_t len)
{
	((struct clone *)opaque)->out_bytes += len;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 10, ok = 0;
	struct clone *c;
	double total = 0;
	long kb0;

	if (argc < 2 || n < 1) {
		fprintf(stderr, "usage: %s SNAPSHOT [N]\n", argv[0]);
		return 2;
	}
	c = calloc((size_t)n, sizeof(*c));
	kb0 = private_kb();
	for (int i = 0; i < n; i++) {
		struct vmm_restore_opts o;
		double t0 = now_ms();
		int r;

		vmm_restore_opts_init(&o);
		o.mode = VMM_RESTORE_LAZY; /* map, don't copy */
		o.serial_out = count_output;
		o.serial_opaque = &c[i];
		r = vmm_snapshot_restore(argv[1], &o, &c[i].vm);
		if (!r)
			r = vmm_vm_start(c[i].vm);
		if (r) {
			fprintf(stderr, "clone %d: %s (%s)\n", i, vmm_strerror(r), vmm_last_error());
			break;
		}
		total += now_ms() - t0;
	}
	for (int i = 0; i < n && c[i].vm; i++) {
		struct vmm_exit ex;

		if (!vmm_vm_wait(c[i].vm, -1, &ex) && ex.reason == VMM_EXIT_GUEST && !ex.status)
			ok++;
	}
	printf("clones: %d started, %d finished ok\n", n, ok);
	printf("restore to running: %.3f ms per clone\n", total / n);
	printf("memory added: %.1f kB per clone\n", (double)(private_kb() - kb0) / n);
	for (int i = 0; i < n; i++)
		vmm_vm_destroy(c[i].vm);
	free(c);
	return ok == n ? 0 : 1;
}
