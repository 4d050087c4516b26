/* Memory that is always written before it is read, so it stays out of .bss and nobody pays
 * for clearing it (every ring-0 instruction is emulated here): stacks and spare page
 * directories. */
#include "layout.h"

	.section .noinit, "aw", @nobits
	.balign 4096
	.globl kstacks, istacks, ustacks, pd_pool
kstacks:	.skip KSTACK_SIZE * MAX_CPUS
istacks:	.skip ISTACK_SIZE * MAX_CPUS
ustacks:	.skip USTACK_SIZE * MAX_CPUS
pd_pool:	.skip 4096 * MAX_PD
