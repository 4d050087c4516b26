/* Fuzz target: the vmm command's parsing of what a user types: sizes (--memory, --max-mem)
 * and HOST:PORT (migrate, receive, the control API's destination). Properties beyond "no
 * crash": a size accepted is exactly its digits times its suffix (no wrap: the input is
 * re-parsed in 128 bits), and an accepted HOST:PORT has a port in 1..65535 and a host that
 * fits. Input: the string (NUL-terminated here; a NUL inside ends it). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "cli.h"

/* The value a size means, in 128 bits, or -1 when cli_parse_size must refuse it. */
static __int128 reference(const char *s)
{
	unsigned __int128 v = 0;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v > UINT64_MAX)
			return -1;
	}
	switch (*s | 0x20) {
	case 'k': shift = 10, s++; break;
	case 'm': shift = 20, s++; break;
	case 'g': shift = 30, s++; break;
	case 't': shift = 40, s++; break;
	}
	if (*s == 'i' || *s == 'B')
		s += (*s == 'i' && s[1] == 'B') ? 2 : 1;
	if (*s)
		return -1;
	v <<= shift;
	return v > UINT64_MAX ? -1 : (__int128)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), host[64];
	const char *why;
	uint64_t v;
	uint16_t port;
	__int128 want;
	int r;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	r = cli_parse_size(s, &v, &why);
	want = reference(s);
	if (r ? want >= 0 || !why : want < 0 || (__int128)v != want)
		abort(); /* accepted what it must refuse, refused what it must take, or wrapped */
	r = cli_parse_hostport(s, host, sizeof(host), &port);
	if (!r && (!port || strlen(host) >= sizeof(host) || !host[0]))
		abort();
	free(s);
	return 0;
}
