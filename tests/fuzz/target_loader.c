/* Fuzz target: the kernel loaders (bzImage, ELF64, multiboot ELF32 and a.out kludge; the
 * format is detected), given the input as the kernel image, loading into a 16 MiB VM on the
 * fake kernel (tests/util/fake_kvm.h), so it runs on any host. Guest RAM lies between two
 * inaccessible pages: a loader writing past its end faults even in code ASan does not see.
 * Inputs whose last byte is odd pass their last quarter as the initrd. Seeds: one small
 * image per format (tests/util/fake_vm.c makes them). */
#include "fuzz.h"
#include "fuzz_util.h"
#include "fake_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int installed;
	size_t initrd = size > 16 && (data[size - 1] & 1) ? size / 4 : 0;
	struct vmm_vm *vm;

	if (!installed) {
		fake_kvm_install();
		installed = 1;
	}
	vm = fake_vm_new(16, 1, 0, NULL, NULL);
	if (!vm)
		return 0;
	if (fuzz_guard_vm_ram(vm)) {
		vmm_vm_destroy(vm);
		return 0;
	}
	vmm_vm_load_kernel_image(vm, data, size - initrd, initrd ? data + size - initrd : NULL,
				 initrd);
	fuzz_vm_destroy(vm);
	return 0;
}
