/* Fuzz target: the kernel loaders (bzImage, ELF64, multiboot ELF32 and a.out kludge),
 * given the input as the kernel image, loading into a 16 MiB VM on the fake kernel
 * (tests/util/fake_kvm.h), so it runs on any host. */
#include "fuzz.h"
#include "fake_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int installed;
	struct vmm_vm *vm;

	if (!installed) {
		fake_kvm_install();
		installed = 1;
	}
	vm = fake_vm_new(16, 1, 0, NULL, NULL);
	if (!vm)
		return 0;
	vmm_vm_load_kernel_image(vm, data, size, NULL, 0);
	vmm_vm_destroy(vm);
	return 0;
}
