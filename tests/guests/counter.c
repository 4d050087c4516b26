/* counter: prints "count <n>" for n = 1..count, interval us apart, then "done <hash>" with
 * the FNV-1a hash of those lines. A VMM that pauses, snapshots or migrates it mid-run must
 * leave the output identical to an uninterrupted run. */
#include "guest.h"

int main(const char *cmdline)
{
	unsigned long count = param(cmdline, "count", 10);
	unsigned long interval = param(cmdline, "interval", 0);

	for (unsigned long n = 1; n <= count; n++) {
		if (n > 1 && interval)
			udelay(interval);
		printf("count %lu\n", n);
	}
	printf("done %08x\n", out_hash());
	return 0;
}
