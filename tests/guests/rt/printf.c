/* Minimal formatter shared by ring 0 (exception reports) and ring 3 (printf). General
 * registers only; %d %i %u %x %p %s %c %% with l/ll/z, '0' flag and width. */
#include "guest.h"

int vfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
	size_t n = 0;
#define PUT(c) do { if (n + 1 < size) buf[n] = (c); n++; } while (0)

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			PUT(*fmt);
			continue;
		}
		fmt++;
		int zero = 0, width = 0, lng = 0;
		if (*fmt == '0') {
			zero = 1;
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng = 1;
			fmt++;
		}

		unsigned long long v;
		unsigned base = 10;
		int neg = 0;
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long s = lng ? va_arg(ap, long) : va_arg(ap, int);
			neg = s < 0;
			v = neg ? -(unsigned long long)s : (unsigned long long)s;
			break;
		}
		case 'u':
			v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			break;
		case 'x':
			base = 16;
			v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			break;
		case 'p':
			base = 16;
			v = (uintptr_t)va_arg(ap, void *);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			for (int len = (int)strlen(s); len < width; len++)
				PUT(' ');
			while (*s)
				PUT(*s++);
			continue;
		}
		case 'c':
			PUT((char)va_arg(ap, int));
			continue;
		case '\0':
			fmt--;
			continue;
		default:
			PUT(*fmt);
			continue;
		}

		char tmp[24];
		int len = 0;
		do {
			tmp[len++] = "0123456789abcdef"[v % base];
			v /= base;
		} while (v);
		int pad = width - len - neg;
		if (!zero)
			for (; pad > 0; pad--)
				PUT(' ');
		if (neg)
			PUT('-');
		for (; pad > 0; pad--)
			PUT('0');
		while (len)
			PUT(tmp[--len]);
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return (int)n;
#undef PUT
}
