/* keeper: holds one idle KVM VM (in-kernel irqchip, one vCPU) open for the emulated host's
 * life. Under QEMU's multi-threaded TCG a vCPU sometimes runs code that another vCPU has
 * just patched in its old form, and KVM patches kernel code (static keys: preempt
 * notifiers, the APIC keys) and IPIs every CPU whenever its count of VMs goes 0 -> 1 -> 0,
 * that is around every VM a test creates and destroys. Seen: both CPUs looping on a stale
 * int3 in __schedule, or kvm_destroy_vm waiting forever (a soft lockup). With this VM open
 * the count never returns to 0, so nothing is patched after boot. A fault of the emulator,
 * so the workaround lives in the harness, not in the library. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	int kvm = open("/dev/kvm", O_RDWR);
	int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);

	if (vm < 0 || ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm, KVM_CREATE_VCPU, 0) < 0) {
		perror("keeper");
		return 1;
	}
	for (;;)
		pause();
}
