/* Snapshot encryption at rest, measured: save and eager-restore throughput of a VM on the
 * fake kernel (tests/util/fake_kvm.h: RAM is real memory, only the KVM calls are faked, so
 * what is measured is the file path, RAM to file and back) plain, encrypted, compressed and
 * compressed+encrypted; and the AES-256-GCM pass alone (memfd to memfd, both directions).
 * RAM holds pseudo-random bytes: no zero pages to skip, nothing for zstd to gain (the
 * worst case for both).
 *   snapshot_crypt_bench [MiB (1024)] [DIR (/var/tmp)]
 * Prints a markdown table. Figures only, never pass/fail. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake_vm.h"
#include "libvmm/clock.h"
#include "migrate/snapshot_crypt.h"

static void die(const char *what, int r)
{
	fprintf(stderr, "snapshot_crypt_bench: %s: %s (%s)\n", what, vmm_err_name(r),
		vmm_last_error());
	exit(1);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	const char *dir = argc > 2 ? argv[2] : "/var/tmp";
	uint64_t bytes = mib << 20, x = 0x9e3779b97f4a7c15ull;
	static const struct {
		const char *name;
		uint32_t flags;
		int enc;
	} modes[] = {
		{ "plain", 0, 0 },
		{ "encrypted", 0, 1 },
		{ "compressed", VMM_SNAPSHOT_COMPRESS, 0 },
		{ "compressed+encrypted", VMM_SNAPSHOT_COMPRESS, 1 },
	};
	uint8_t key[32], *buf = malloc(8 << 20), *check = malloc(4096), *want = malloc(4096);
	char path[512];
	struct vmm_vm *vm;
	int r;

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(i * 29 + 1);
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
			die("fill RAM", r);
	}
	vmm_vm_mem_read(vm, bytes / 2, want, 4096);
	snprintf(path, sizeof(path), "%s/vmm-crypt-bench.snap", dir);
	printf("# Snapshot encryption at rest: %llu MiB of random RAM, fake kernel, files in %s\n\n",
	       (unsigned long long)mib, dir);
	/* A first save and restore, not counted: the VM starts, every page is touched once. */
	{
		struct vmm_restore_opts ro;
		struct vmm_vm *back;

		if ((r = vmm_vm_start(vm)) || (r = vmm_snapshot_save(vm, path, NULL, NULL)))
			die("warm-up save", r);
		vmm_restore_opts_init(&ro);
		if ((r = vmm_snapshot_restore(path, &ro, &back)))
			die("warm-up restore", r);
		vmm_vm_destroy(back);
	}
	printf("| file | save GB/s | save s | restore GB/s | restore s | file MiB |\n");
	printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct vmm_snapshot_opts so;
		struct vmm_restore_opts ro;
		struct vmm_snapshot_stats st;
		struct vmm_vm *back;
		double t0, t_save, t_rest;

		vmm_snapshot_opts_init(&so);
		so.flags = modes[m].flags;
		so.key = modes[m].enc ? key : NULL;
		so.key_len = modes[m].enc ? 32 : 0;
		unlink(path);
		t0 = vmm__now_ns() / 1e9;
		if ((r = vmm_snapshot_save(vm, path, &so, &st)))
			die(modes[m].name, r);
		t_save = vmm__now_ns() / 1e9 - t0;
		vmm_restore_opts_init(&ro);
		ro.key = so.key;
		ro.key_len = so.key_len;
		t0 = vmm__now_ns() / 1e9;
		if ((r = vmm_snapshot_restore(path, &ro, &back)))
			die(modes[m].name, r);
		t_rest = vmm__now_ns() / 1e9 - t0;
		vmm_vm_mem_read(back, bytes / 2, check, 4096);
		if (memcmp(check, want, 4096))
			die("restored RAM differs", -1);
		vmm_vm_destroy(back);
		printf("| %s | %.2f | %.2f | %.2f | %.2f | %.0f |\n", modes[m].name,
		       (double)bytes / t_save / 1e9, t_save, (double)bytes / t_rest / 1e9, t_rest,
		       (double)st.file_bytes / (1 << 20));
		fflush(stdout);
	}
	unlink(path);
	vmm_vm_destroy(vm);

	/* The cipher pass alone: a memfd of `bytes` random bytes, encrypted and decrypted. */
	{
		int pfd = memfd_create("bench-plain", 0), efd = memfd_create("bench-enc", 0), dfd;
		uint64_t len;
		double t0, te, td;

		for (uint64_t off = 0; off < bytes; off += 8 << 20)
			if (pwrite(pfd, buf, 8 << 20, (off_t)off) != 8 << 20)
				die("memfd", -1);
		t0 = vmm__now_ns() / 1e9;
		if ((r = vmm__snap_encrypt(pfd, bytes, efd, key, &len)))
			die("encrypt pass", r);
		te = vmm__now_ns() / 1e9 - t0;
		t0 = vmm__now_ns() / 1e9;
		if ((r = vmm__snap_decrypt(efd, key, &dfd)))
			die("decrypt pass", r);
		td = vmm__now_ns() / 1e9 - t0;
		printf("\nAES-256-GCM pass alone (memfd to memfd, %ld threads at most): encrypt %.2f "
		       "GB/s, decrypt and authenticate %.2f GB/s\n",
		       sysconf(_SC_NPROCESSORS_ONLN) < 4 ? sysconf(_SC_NPROCESSORS_ONLN) : 4,
		       (double)bytes / te / 1e9, (double)bytes / td / 1e9);
		close(pfd);
		close(efd);
		close(dfd);
	}
	free(buf);
	free(check);
	free(want);
	return 0;
}
