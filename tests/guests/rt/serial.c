/* COM1 output, polled. With a working 16550 FIFO one LSR poll covers 16 bytes sent by a
 * single rep outsb, which keeps the emulated ring-0 instruction count per line small. */
#include "kernel.h"

#define COM1 0x3f8

static unsigned tx_burst = 1;

void serial_init(void)
{
	outb(COM1 + 1, 0x00);   /* no interrupts */
	outb(COM1 + 3, 0x80);   /* DLAB */
	outb(COM1 + 0, 0x01);   /* 115200 */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);   /* 8N1 */
	outb(COM1 + 2, 0xc7);   /* enable + clear FIFOs */
	outb(COM1 + 4, 0x03);   /* DTR RTS */
	if ((inb(COM1 + 2) & 0xc0) == 0xc0)
		tx_burst = 16;
}

void serial_write(const char *s, size_t n)
{
	while (n) {
		/* Bounded: a VMM without a UART may answer 0 forever; output then just gets lost. */
		for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
			__asm__ volatile("pause");
		size_t k = n < tx_burst ? n : tx_burst;
		n -= k;
		__asm__ volatile("rep outsb" : "+S"(s), "+c"(k) : "d"(COM1) : "memory");
	}
}

void kprintf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vfmt(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_write(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}
