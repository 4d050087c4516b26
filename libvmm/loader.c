/* vmm_vm_load_kernel: read the files, detect the format, hand over to its loader. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvmm/boot.h"
#include "libvmm/error_internal.h"
#include "libvmm/loader.h"
#include "libvmm/vm_internal.h"

static int detect_and_load(struct vmm_vm *vm, const struct vmm__image *k,
			   const struct vmm__image *initrd)
{
	static const uint8_t elf_magic[4] = { 0x7f, 'E', 'L', 'F' };

	if (vmm__linux_detect(k))
		return vmm__linux_load_bzimage(vm, k, initrd);
	if (k->len >= 5 && !memcmp(k->data, elf_magic, 4) && k->data[4] == 2)
		return vmm__linux_load_elf64(vm, k, initrd);
	if (vmm__multiboot_detect(k))
		return vmm__multiboot_load(vm, k, initrd);
	if (k->len >= 5 && !memcmp(k->data, elf_magic, 4))
		return vmm__err(VMM_EFORMAT, "32-bit ELF without a multiboot header");
	return vmm__err(VMM_EFORMAT,
			"not a bzImage, an ELF64 kernel or a multiboot image (%zu bytes)", k->len);
}

int vmm_vm_load_kernel_image(struct vmm_vm *vm, const void *kernel, size_t kernel_len,
			     const void *initrd, size_t initrd_len)
{
	struct vmm__image k = { kernel, kernel_len }, rd = { initrd, initrd_len };
	int r;

	if (!vm || !kernel || (!initrd && initrd_len))
		return vmm__err(VMM_EINVAL, "NULL argument");
	pthread_mutex_lock(&vm->lock);
	if (vmm_vm_run_state(vm) != VMM_VM_CREATED || vm->loaded) {
		r = vmm__err(VMM_ESTATE, "load: the VM is %s%s",
			     vmm_vm_run_state_name(vmm_vm_run_state(vm)),
			     vm->loaded ? " and already loaded" : "");
	} else {
		r = detect_and_load(vm, &k, initrd ? &rd : NULL);
		vm->loaded = !r;
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* Maps a whole file read-only; *len 0 is an empty file (VMM_EFORMAT for a kernel). */
static int map_file(const char *path, void **p, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*p = NULL;
	*len = 0;
	if (fd < 0)
		return vmm__err_sys(errno == ENOENT ? VMM_ENOENT : VMM_EIO, path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmm__err(VMM_EIO, "%s: not a regular file", path);
	}
	if (st.st_size > 0) {
		*p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (*p == MAP_FAILED) {
			*p = NULL;
			close(fd);
			return vmm__err_sys(VMM_EIO, path);
		}
	}
	*len = st.st_size;
	close(fd);
	return 0;
}

int vmm_vm_load_kernel(struct vmm_vm *vm, const char *kernel_path, const char *initrd_path)
{
	void *k = NULL, *rd = NULL;
	size_t klen = 0, rdlen = 0;
	int r;

	if (!vm || !kernel_path)
		return vmm__err(VMM_EINVAL, "NULL argument");
	r = map_file(kernel_path, &k, &klen);
	if (!r && initrd_path)
		r = map_file(initrd_path, &rd, &rdlen);
	if (!r && !klen)
		r = vmm__err(VMM_EFORMAT, "%s: empty file", kernel_path);
	if (!r) {
		static const uint8_t none;

		r = vmm_vm_load_kernel_image(vm, k, klen, initrd_path ? (rd ? rd : &none) : NULL,
					     rdlen);
	}
	if (k)
		munmap(k, klen);
	if (rd)
		munmap(rd, rdlen);
	return r;
}

int vmm__initrd_place(struct vmm_vm *vm, const struct vmm__image *initrd, uint64_t min_addr,
		      uint64_t max_end, uint64_t *addr)
{
	uint64_t top = vmm__memory_low_end(&vm->mem);
	uint64_t a;
	void *p;

	if (max_end < top)
		top = max_end;
	if (initrd->len > top)
		return vmm__err(VMM_ETOOBIG, "initrd of %zu bytes does not fit in RAM",
				initrd->len);
	a = (top - initrd->len) & ~(VMM_PAGE_SIZE - 1);
	if (a < min_addr)
		return vmm__err(VMM_ETOOBIG, "initrd of %zu bytes does not fit above the kernel",
				initrd->len);
	p = vmm__memory_gpa(&vm->mem, a, initrd->len);
	if (!p)
		return vmm__err(VMM_ETOOBIG, "initrd outside RAM");
	memcpy(p, initrd->data, initrd->len);
	*addr = a;
	return 0;
}
