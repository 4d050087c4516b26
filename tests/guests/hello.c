/* hello: the smallest guest. Booted through the Linux protocol (ELF64 or bzImage) it also
 * reports the initrd (size and 32-bit byte sum) and the command line it was given. */
#include "guest.h"

int main(const char *cmdline)
{
	if (bootinfo.kind == BOOT_LINUX) {
		if (bootinfo.initrd_size) {
			const uint8_t *p = (const uint8_t *)bootinfo.initrd_base;
			uint32_t sum = 0;
			for (uint64_t i = 0; i < bootinfo.initrd_size; i++)
				sum += p[i];
			printf("initrd %lu %08x\n", bootinfo.initrd_size, sum);
		} else {
			printf("initrd none\n");
		}
		printf("cmdline %s\n", cmdline);
	}
	printf("hello from guest\n");
	return 0;
}
