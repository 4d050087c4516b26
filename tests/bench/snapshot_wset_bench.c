/* Restore to first access, cold, with and without working-set prefetch (issue 13): a VM on
 * the fake kernel (RAM is real memory, only the KVM calls are faked) whose RAM holds
 * pseudo-random bytes is saved; a "first run" restored with VMM_RESTORE_UFFD reads a
 * scattered set of pages (its working set: every stride-th page, as a guest's kernel,
 * stacks and page tables are spread over RAM) with wset_record_ms on, which writes
 * <snapshot>.wset. Then each mode is timed from a cold page cache (posix_fadvise
 * DONTNEED on the snapshot and the set file, after they were synced): from the restore
 * call to the first page read, and to the whole set read, through vmm_vm_mem_read (the
 * same pager path a vCPU's faults take). Modes: eager, lazy (mmap), uffd, uffd+prefetch.
 *   snapshot_wset_bench [MiB (512)] [set pages (2048)] [runs (3)] [DIR (/var/tmp)]
 * Prints a markdown table (medians). Figures only, never pass/fail. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_mem.h"
#include "fake_vm.h"
#include "libvmm/clock.h"

static void die(const char *what, int r)
{
	fprintf(stderr, "snapshot_wset_bench: %s: %s (%s)\n", what, vmm_err_name(r),
		vmm_last_error());
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static const char *fell_back;

static void on_log(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level <= VMM_LOG_WARN) {
		fprintf(stderr, "log: %s\n", msg);
		if (strstr(msg, "unavailable"))
			fell_back = "uffd unavailable";
	}
}

/* One cold restore in mode; times in ns: to the first page read, to the whole set. */
static void one(const char *snap, const char *wset, enum vmm_restore_mode mode, int prefetch,
		uint32_t record_ms, const uint64_t *set, size_t nset, uint64_t *first_ns,
		uint64_t *all_ns)
{
	struct vmm_restore_opts o;
	struct vmm_vm *vm;
	uint8_t page[4096];
	uint64_t t0;
	int r;

	bench_drop_cache(snap);
	bench_drop_cache(wset);
	vmm_restore_opts_init(&o);
	o.mode = mode;
	o.wset_prefetch = (uint32_t)prefetch;
	o.wset_record_ms = record_ms;
	o.log = on_log;
	t0 = vmm__now_ns();
	if ((r = vmm_snapshot_restore(snap, &o, &vm)))
		die("restore", r);
	if ((r = vmm_vm_start(vm)))
		die("start", r);
	for (size_t i = 0; i < nset; i++) {
		if ((r = vmm_vm_mem_read(vm, set[i] * 4096, page, sizeof(page))))
			die("read", r);
		if (!i && first_ns)
			*first_ns = vmm__now_ns() - t0;
	}
	if (all_ns)
		*all_ns = vmm__now_ns() - t0;
	vmm_vm_destroy(vm); /* inside a recording's window: writes the set */
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 512;
	size_t nset = argc > 2 ? strtoull(argv[2], NULL, 10) : 2048;
	int runs = argc > 3 ? atoi(argv[3]) : 3;
	const char *dir = argc > 4 ? argv[4] : "/var/tmp";
	uint64_t bytes = mib << 20, npages = bytes / 4096, x = 0x9e3779b97f4a7c15ull;
	uint8_t *buf = malloc(8 << 20);
	uint64_t *set = malloc(nset * sizeof(*set)), first[16], all[16];
	static const struct {
		const char *name;
		enum vmm_restore_mode mode;
		int prefetch;
	} modes[] = {
		{ "eager", VMM_RESTORE_EAGER, 0 },
		{ "lazy (mmap)", VMM_RESTORE_LAZY, 0 },
		{ "uffd", VMM_RESTORE_UFFD, 0 },
		{ "uffd + prefetch", VMM_RESTORE_UFFD, 1 },
	};
	struct vmm_snapshot_opts so;
	char snap[512], wset[520];
	struct vmm_vm *vm;
	int r;

	if (!buf || !set || !nset || nset > npages / 2 || runs < 1 || runs > 16) {
		fprintf(stderr, "usage: snapshot_wset_bench [MiB] [set pages] [runs<=16] [DIR]\n");
		return 2;
	}
	fake_kvm_install();
	vm = fake_vm_new_loaded(mib, 1, NULL, NULL);
	if (!vm)
		die("VM", -1);
	for (uint64_t off = 0; off < bytes; off += 8 << 20) {
		for (size_t i = 0; i < (8 << 20); i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, 8);
		}
		if ((r = vmm_vm_mem_write(vm, off, buf, 8 << 20)))
			die("fill", r);
	}
	if ((r = vmm_vm_start(vm)))
		die("start", r);
	snprintf(snap, sizeof(snap), "%s/wset-bench-%d.snap", dir, (int)getpid());
	snprintf(wset, sizeof(wset), "%s.wset", snap);
	vmm_snapshot_opts_init(&so);
	so.flags = VMM_SNAPSHOT_STOP;
	if ((r = vmm_snapshot_save(vm, snap, &so, NULL)))
		die("save", r);
	vmm_vm_destroy(vm);
	/* The set: every stride-th page from 1 MiB, the order a guest might touch them in. */
	for (size_t i = 0; i < nset; i++)
		set[i] = 256 + i * ((npages - 256) / nset);

	/* The first run records the set (its window outlasts the run: destroy ends it). */
	one(snap, wset, VMM_RESTORE_UFFD, 0, 600000, set, nset, NULL, NULL);
	if (fell_back || access(wset, F_OK)) {
		fprintf(stderr, "snapshot_wset_bench: no working set recorded (%s)\n",
			fell_back ? fell_back : "no file");
		unlink(snap);
		return 1;
	}
	printf("RAM %llu MiB, working set %zu pages (%.1f MiB), %d cold runs each, file in %s\n\n",
	       (unsigned long long)mib, nset, nset * 4096.0 / (1 << 20), runs, dir);
	printf("| restore mode | to first access (ms) | to working set read (ms) |\n");
	printf("|---|---:|---:|\n");
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		for (int i = 0; i < runs; i++)
			one(snap, wset, modes[m].mode, modes[m].prefetch, 0, set, nset, &first[i],
			    &all[i]);
		qsort(first, (size_t)runs, 8, cmp_u64);
		qsort(all, (size_t)runs, 8, cmp_u64);
		printf("| %s | %.2f | %.2f |\n", modes[m].name, first[runs / 2] / 1e6,
		       all[runs / 2] / 1e6);
		fflush(stdout);
	}
	unlink(wset);
	unlink(snap);
	free(buf);
	free(set);
	return 0;
}
