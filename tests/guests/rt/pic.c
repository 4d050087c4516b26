/* Legacy 8259 pair: remapped to 0x20..0x2f (the BIOS leaves IRQ0 on vector 8, which would
 * look like #DF) and fully masked; guests that want an IRQ unmask it in guest_ring0_init. */
#include "kernel.h"

void pic_init(void)
{
	outb(0x20, 0x11);               /* ICW1: edge, cascade, ICW4 */
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC_BASE);       /* ICW2: vector base */
	outb(0xa1, VEC_PIC_BASE + 8);
	outb(0x21, 0x04);               /* ICW3: slave on IRQ2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01);               /* ICW4: 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}
