/* Constants shared by the assembly entry paths, the ring-0 runtime and the ring-3 guests:
 * GDT selectors, per-CPU stack sizes, boot kinds, service numbers, interrupt vectors.
 * Plain #defines only, so the .S files can include it. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define IMAGE_BASE      0x100000        /* every format loads the image at 1 MiB */

/* GDT: the user pair is data-then-code, the order sysret would need, in case a VMM test wants it. */
#define KCODE64         0x08
#define KDATA           0x10
#define UDATA           0x18
#define UCODE64         0x20
#define KCODE32         0x28            /* only used on the way from 32-bit entry to long mode */
#define TSS_SEL(cpu)    (0x30 + 16 * (cpu))

#define MAX_CPUS        16
#define KSTACK_SHIFT    14
#define KSTACK_SIZE     (1 << KSTACK_SHIFT)     /* ring-0 stack (TSS rsp0) */
#define ISTACK_SIZE     4096                    /* #DF stack (IST1) */
#define USTACK_SIZE     65536                   /* ring-3 stack */
#define MAX_PD          64                      /* page directories: RAM up to 64 GiB */
#define MAX_RAM_RANGES  32

#define BOOT_MULTIBOOT  1
#define BOOT_LINUX      2                       /* 64-bit entry or 32-bit Linux protocol */

#define TRAMPOLINE_ADDR 0x8000                  /* AP real-mode entry, SIPI vector 0x08 */

/* Ring-3 -> ring-0 services: ud2 with RAX = number, RDI/RSI/RDX = arguments, result in RAX. */
#define SVC_WRITE       1                       /* (buf, len) -> len, to COM1 */
#define SVC_EXIT        2                       /* (status) does not return */
#define SVC_WAIT        3                       /* () sti;hlt;cli unless an IRQ came since last call */
#define SVC_IPI         4                       /* (apic_id, icr_low) -> 0 */
#define SVC_HALT        5                       /* () park this CPU for good */

#define VEC_PIC_BASE    0x20                    /* legacy PIC remapped to 0x20..0x2f */
#define VEC_LAPIC_TIMER 0x40
#define VEC_SPURIOUS    0xff

#define EXIT_PORT       0xf4
#define EXIT_EXCEPTION  0x7f

#endif
