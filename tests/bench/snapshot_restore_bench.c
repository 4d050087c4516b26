/* snapshot_restore_bench: eager restore against the physical limits (issue 14), on the
 * fake kernel (tests/util/fake_kvm.h: guest RAM is real memory, only the KVM calls are
 * faked), so it runs on any machine. A VM holding random, text or half-zero memory is
 * saved once; each run evicts the file from the page cache and times
 * vmm_snapshot_restore(VMM_RESTORE_EAGER) to the VM being ready, then compares the
 * restored RAM with the source's page by page (a wrong copy fails the bench, exit 1).
 * Beside it, in the same run: an O_DIRECT read of the same file from a cold cache into a
 * reused buffer (the disk alone) and the first write to a fresh memfd of the size the
 * file holds data for (by stores, and by MADV_POPULATE_WRITE); the ratio is
 * max(disk, populate) / restore: 1.0 is the physical limit.
 *
 *   snapshot_restore_bench [--mem MiB (1024)] [--runs N (3)] [--dir DIR (/var/tmp)]
 *                          [--patterns random,text,halfzero]
 * Prints a markdown table on stdout (medians). Figures only, never pass/fail on time. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_mem.h"
#include "fake_vm.h"
#include "libvmm/clock.h"

#define CHUNK (8u << 20)
#define RUNS_MAX 15

/* The source VM of mib MiB filled with pattern, started (a save takes a running VM). */
static struct vmm_vm *source(uint64_t mib, const char *pattern, uint64_t *nonzero)
{
	uint8_t *buf = malloc(CHUNK);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	struct vmm_vm *vm = fake_vm_new_loaded(mib, 1, NULL, NULL);

	if (!vm || !buf)
		bench_fail("source VM");
	*nonzero = 0;
	for (uint64_t off = 0; off < mib << 20; off += CHUNK) {
		bench_fill(buf, CHUNK, off / 4096, pattern, &x);
		for (size_t p = 0; p < CHUNK; p += 4096)
			*nonzero += buf[p] || memcmp(buf + p, buf + p + 1, 4095);
		if (vmm_vm_mem_write(vm, off, buf, CHUNK))
			bench_fail("fill the source's RAM");
	}
	if (vmm_vm_start(vm))
		bench_fail("start the source");
	free(buf);
	return vm;
}

static void same_ram(struct vmm_vm *a, struct vmm_vm *b, uint64_t bytes)
{
	uint8_t *x = malloc(CHUNK), *y = malloc(CHUNK);

	for (uint64_t off = 0; off < bytes; off += CHUNK) {
		if (!x || !y || vmm_vm_mem_read(a, off, x, CHUNK) || vmm_vm_mem_read(b, off, y, CHUNK))
			bench_fail("read RAM back");
		for (size_t p = 0; p < CHUNK; p += 4096)
			if (memcmp(x + p, y + p, 4096)) {
				fprintf(stderr, "page %llu differs after the restore\n",
					(unsigned long long)((off + p) / 4096));
				bench_fail("restored RAM differs");
			}
	}
	free(x);
	free(y);
}

static double restore_once(const char *path, struct vmm_vm *src, uint64_t bytes)
{
	struct vmm_restore_opts ro;
	struct vmm_vm *vm;
	double t0, t;
	int r;

	bench_drop_cache(path);
	vmm_restore_opts_init(&ro);
	ro.mode = VMM_RESTORE_EAGER;
	t0 = vmm__now_ns() / 1e9;
	r = vmm_snapshot_restore(path, &ro, &vm);
	t = vmm__now_ns() / 1e9 - t0;
	if (r) {
		fprintf(stderr, "restore: %s (%s)\n", vmm_err_name(r), vmm_last_error());
		bench_fail("restore failed");
	}
	same_ram(src, vm, bytes);
	vmm_vm_destroy(vm);
	return t;
}

/* The disk alone: the whole file, cold, O_DIRECT, into one reused buffer. */
static double disk_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	uint8_t *buf = NULL;
	double t0, t;
	ssize_t n;

	bench_drop_cache(path);
	if (fd < 0 || posix_memalign((void **)&buf, 4096, CHUNK))
		bench_fail("open the snapshot O_DIRECT");
	memset(buf, 0, CHUNK);
	t0 = vmm__now_ns() / 1e9;
	while ((n = read(fd, buf, CHUNK)) > 0)
		;
	t = vmm__now_ns() / 1e9 - t0;
	if (n < 0)
		bench_fail("read the snapshot");
	free(buf);
	close(fd);
	return t;
}

static int split(char *list, char **out, int max)
{
	int n = 0;

	for (char *s = strtok(list, ","); s && n < max; s = strtok(NULL, ","))
		out[n++] = s;
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' }, { "runs", required_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, 'd' }, { "patterns", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	char pats[128] = "random,text,halfzero", *pv[8], path[512];
	const char *dir = "/var/tmp";
	uint64_t mib = 1024, bytes;
	int runs = 3, np, c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			mib = strtoull(optarg, NULL, 10);
		else if (c == 'r')
			runs = atoi(optarg);
		else if (c == 'd')
			dir = optarg;
		else if (c == 'p')
			snprintf(pats, sizeof(pats), "%s", optarg);
		else
			return 2;
	}
	if (!mib || mib % 8 || runs < 1 || runs > RUNS_MAX)
		bench_fail("usage: --mem MiB (a multiple of 8) --runs 1..15 --dir DIR --patterns LIST");
	bytes = mib << 20;
	np = split(pats, pv, 8);
	snprintf(path, sizeof(path), "%s/vmm-restore-bench.snap", dir);
	fake_vm_setup(NULL);

	printf("# Eager restore against the physical limits: %llu MiB, fake kernel, cold page "
	       "cache, files in %s, median of %d runs, %ld CPUs\n\n", (unsigned long long)mib,
	       dir, runs, sysconf(_SC_NPROCESSORS_ONLN));
	printf("| memory | file MiB | restore s | GB/s | disk read s | memfd touch s "
	       "(stores / populate) | ratio to the limit |\n");
	printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (int p = 0; p < np; p++) {
		double v[RUNS_MAX], t, t_disk, t_touch, t_pop, lim;
		uint64_t nonzero;
		struct vmm_vm *src = source(mib, pv[p], &nonzero);
		struct stat st;

		unlink(path);
		if (vmm_snapshot_save(src, path, NULL, NULL) || stat(path, &st))
			bench_fail("save");
		for (int i = 0; i < runs; i++)
			v[i] = restore_once(path, src, bytes);
		t = bench_median(v, runs);
		for (int i = 0; i < runs; i++)
			v[i] = disk_read(path);
		t_disk = bench_median(v, runs);
		/* Only the pages that hold data need memory: zero pages stay holes. */
		for (int i = 0; i < runs; i++)
			v[i] = bench_first_touch(nonzero * 4096, 1, 0);
		t_touch = bench_median(v, runs);
		for (int i = 0; i < runs; i++)
			v[i] = bench_first_touch(nonzero * 4096, 1, 1);
		t_pop = bench_median(v, runs);
		lim = t_disk > t_pop ? t_disk : t_pop;
		printf("| %s | %.0f | %.3f | %.2f | %.3f | %.3f / %.3f | %.2f |\n", pv[p],
		       (double)st.st_size / (1 << 20), t, (double)bytes / t / 1e9, t_disk, t_touch,
		       t_pop, lim / t);
		fflush(stdout);
		vmm_vm_destroy(src);
	}
	unlink(path);
	return 0;
}
