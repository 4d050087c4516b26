/* Exception dispatch: the ud2 service call, .extable fixups for instructions allowed to
 * fault, and otherwise a one-line report on COM1 and exit status 0x7f. */
#include "kernel.h"

struct extable_entry {
	uint64_t insn, fixup;
};
extern const struct extable_entry __extable_start[], __extable_end[];

void trap_handler(struct trap_frame *f)
{
	if (f->vector == 6 && *(const uint16_t *)f->rip == 0x0b0f) {   /* ud2 = 0F 0B */
		f->rax = service(f);
		f->rip += 2;
		return;
	}
	for (const struct extable_entry *e = __extable_start; e < __extable_end; e++) {
		if (e->insn == f->rip) {
			f->rip = e->fixup;
			return;
		}
	}
	if (f->vector == 14)
		kprintf("EXCEPTION %lu rip=%lx err=%lx cr2=%lx\n", f->vector, f->rip, f->err, read_cr2());
	else
		kprintf("EXCEPTION %lu rip=%lx err=%lx\n", f->vector, f->rip, f->err);
	do_exit(EXIT_EXCEPTION);
}
