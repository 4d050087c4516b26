/* Writes seeds for the snaprepair target (compact snapshots: the 4096-byte preamble, then
 * the end of the file; the target puts a hole between): a 2 MiB VM on the fake kernel saved
 * as a RAM image and as zstd batches. The image's RAM is cut to its last two pages (the
 * target repairs the page hashes), so the seed is a few KiB, not 2 MiB.
 *   snap_seeds DIR      (writes DIR/seed-image and DIR/seed-batches) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_vm.h"
#include "migrate/snapshot_file.h"

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;

	if (!f || fseek(f, 0, SEEK_END))
		return NULL;
	*len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(*len);
	if (!buf || fread(buf, 1, *len, f) != *len)
		return NULL;
	fclose(f);
	return buf;
}

static int save(const char *path, uint32_t flags)
{
	static const char text[] = "a page of guest data that a snapshot must carry";
	struct vmm_snapshot_opts o;
	struct vmm_vm *vm = fake_vm_new_loaded(2, 1, NULL, NULL);
	int r;

	if (!vm) {
		fprintf(stderr, "snap_seeds: %s\n", vmm_last_error());
		return -1;
	}
	for (uint64_t gpa = 0x1fe000; gpa < 0x200000; gpa += 1024)
		vmm_vm_mem_write(vm, gpa, text, sizeof(text));
	r = vmm_vm_start(vm);
	vmm_snapshot_opts_init(&o);
	o.flags = flags | VMM_SNAPSHOT_STOP;
	if (!r)
		r = vmm_snapshot_save(vm, path, &o, NULL);
	if (r)
		fprintf(stderr, "snap_seeds: %s\n", vmm_last_error());
	vmm_vm_destroy(vm);
	return r;
}

static int emit(const char *dir, const char *name, const uint8_t *f, size_t cut, size_t len)
{
	char path[4096];
	FILE *out;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	out = fopen(path, "wb");
	if (!out || fwrite(f, 1, VMM_SNAP_RAM_OFFSET, out) != VMM_SNAP_RAM_OFFSET ||
	    fwrite(f + cut, 1, len - cut, out) != len - cut)
		return -1;
	return fclose(out);
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/snapseedXXXXXX", path[64];
	struct vmm__snap_preamble p;
	uint8_t *f;
	size_t len;

	fake_kvm_install();
	if (argc != 2 || !mkdtemp(tmp))
		return 2;
	snprintf(path, sizeof(path), "%s/s", tmp);
	if (save(path, 0) || !(f = slurp(path, &len)))
		return 1;
	memcpy(&p, f, sizeof(p));
	if (emit(argv[1], "seed-image", f, p.ram_off + p.ram_len - 2 * 4096, len))
		return 1;
	free(f);
	remove(path);
	if (save(path, VMM_SNAPSHOT_COMPRESS) || !(f = slurp(path, &len)) ||
	    emit(argv[1], "seed-batches", f, VMM_SNAP_RAM_OFFSET, len))
		return 1;
	free(f);
	remove(path);
	remove(tmp);
	return 0;
}
