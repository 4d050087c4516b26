/* Boot command line parameters: whitespace-separated key=value tokens. Tokens without '='
 * (QEMU's multiboot puts the kernel path first) are ignored; the last match wins. */
#include "guest.h"

static int parse_num(const char *s, const char *end, unsigned long *out)
{
	unsigned long v = 0;
	unsigned base = 10;

	if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (s == end)
		return 0;
	for (; s < end; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return 0;
		v = v * base + d;
	}
	*out = v;
	return 1;
}

unsigned long param(const char *cmdline, const char *key, unsigned long dflt)
{
	size_t kl = strlen(key);
	unsigned long v = dflt;
	const char *s = cmdline;

	while (s && *s) {
		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		const char *tok = s;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n')
			s++;
		unsigned long n;
		if ((size_t)(s - tok) > kl && !memcmp(tok, key, kl) && tok[kl] == '=' &&
		    parse_num(tok + kl + 1, s, &n))
			v = n;
	}
	return v;
}
