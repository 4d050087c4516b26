/* Helpers shared by the vmm verbs. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

int cli_parse_size(const char *s, uint64_t *out, const char **why)
{
	static const char units[] = "kmgt"; /* suffix i is a shift of 10 * (i + 1) */
	const char *dummy, *u;
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!why)
		why = &dummy;
	/* strtoull would skip blanks, take a sign and negate: "-1" would be 2^64 - 1 and
	 * "-18446744073708503040" 1 MiB. A size starts with a digit. */
	if (s[strspn(s, " \t")] == '-') {
		*why = "negative";
		return -1;
	}
	if (*s < '0' || *s > '9') {
		*why = "not a size (digits, then an optional K, M, G or T)";
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE) {
		*why = "too large (over 2^64 - 1 bytes)";
		return -1;
	}
	if (*end && (u = strchr(units, *end | 0x20)) != NULL) {
		shift = 10 * (unsigned)(u - units + 1);
		end++;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end) {
		*why = "not a size (digits, then an optional K, M, G or T)";
		return -1;
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		*why = "too large (over 2^64 - 1 bytes)";
		return -1;
	}
	*out = v << shift;
	*why = NULL;
	return 0;
}

int cli_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *h = s, *colon, *d;
	unsigned long p = 0;
	size_t hlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -1;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -1;
		hlen = (size_t)(colon - s);
	}
	if (!hlen || hlen >= hostlen || !colon[1])
		return -1;
	for (d = colon + 1; *d; d++) {
		if (*d < '0' || *d > '9' || (p = p * 10 + (unsigned long)(*d - '0')) > 65535)
			return -1;
	}
	if (!p)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = 0;
	*port = (uint16_t)p;
	return 0;
}

void cli_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTP";
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
		return;
	}
	while (v >= 1024 && u < (int)sizeof(units) - 2) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %ciB", v, units[u]);
}

int cli_fail(const char *what, int err)
{
	const char *detail = vmm_last_error();

	fprintf(stderr, "vmm: %s: %s%s%s%s\n", what, vmm_strerror(err), *detail ? " (" : "",
		detail, *detail ? ")" : "");
	return 1;
}

int cli_exit_status(const struct vmm_exit *ex)
{
	switch (ex->reason) {
	case VMM_EXIT_GUEST:
		return ex->status & 0xff;
	case VMM_EXIT_HOST:
		return 0;
	default:
		fprintf(stderr, "vmm: guest ended: %s\n", ex->detail);
		return 1;
	}
}

void cli_serial_stdout(void *opaque, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* stdout gone: the guest keeps running, its output is dropped */
		buf += n;
		len -= (size_t)n;
	}
}

void cli_log_stderr(void *opaque, int level, const char *msg)
{
	static int debug = -1;

	if (debug < 0) {
		const char *e = getenv("VMM_DEBUG");

		debug = e && *e && *e != '0';
	}
	if (level <= VMM_LOG_WARN || debug)
		fprintf(stderr, "vmm: %s\n", msg);
}

int cli_parse_key_hex(const char *hex, size_t len, uint8_t key[32])
{
	if (len != 64)
		return -1;
	for (size_t i = 0; i < 32; i++) {
		unsigned v = 0;

		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v |= (unsigned)(c - 'A' + 10);
			else
				return -1;
		}
		key[i] = (uint8_t)v;
	}
	return 0;
}

int cli_read_key(const char *path, uint8_t key[32])
{
	char buf[80];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f) {
		fprintf(stderr, "vmm: key file %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (n == 32) {
		memcpy(key, buf, 32);
		return 0;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (!cli_parse_key_hex(buf, n, key))
		return 0;
	fprintf(stderr, "vmm: key file %s: want 32 bytes, or 64 hex digits\n", path);
	return -1;
}

int cli_sandbox = 1;

int cli_sandbox_begin(void)
{
	struct vmm_sandbox_opts o;
	int r;

	if (!cli_sandbox)
		return 0;
	vmm_sandbox_opts_init(&o);
	o.kinds = VMM_SANDBOX_LIBRARY_THREADS;
	o.report_fd = 2; /* the offending thread and call on stderr, then SIGSYS */
	r = vmm_sandbox_enable(&o);
	return r ? cli_fail("sandbox (--no-sandbox turns it off)", r) : 0;
}

int cli_socket_is_stale(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, stale;

	if (strlen(path) >= sizeof(sa.sun_path) || lstat(path, &st) || !S_ISSOCK(st.st_mode))
		return 0;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	stale = connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED;
	close(fd);
	return stale;
}

int cli_parse_disk(const char *s, char *path, size_t pathlen, int *read_only)
{
	size_t n = strlen(s);

	*read_only = 0;
	if (n >= 3 && !strcmp(s + n - 3, ",ro"))
		*read_only = 1, n -= 3;
	else if (n >= 3 && !strcmp(s + n - 3, ",rw"))
		n -= 3;
	if (!n || n >= pathlen)
		return -1;
	memcpy(path, s, n);
	path[n] = 0;
	return 0;
}

int cli_parse_net(const char *s, char name[16], uint8_t mac[6], int *has_mac)
{
	const char *comma = strchr(s, ',');
	size_t n;

	*has_mac = 0;
	if (strncmp(s, "tap=", 4))
		return -1;
	s += 4;
	n = comma ? (size_t)(comma - s) : strlen(s);
	if (!n || n > 15 || memchr(s, '/', n))
		return -1;
	memcpy(name, s, n);
	name[n] = 0;
	if (!comma)
		return 0;
	s = comma + 1;
	if (strncmp(s, "mac=", 4) || strlen(s + 4) != 17)
		return -1;
	s += 4;
	for (int i = 0; i < 6; i++) {
		unsigned v;
		char hex[3] = { s[3 * i], s[3 * i + 1], 0 };
		char *end;

		if ((i < 5 && s[3 * i + 2] != ':') || !isxdigit((unsigned char)hex[0]) ||
		    !isxdigit((unsigned char)hex[1]))
			return -1;
		v = (unsigned)strtoul(hex, &end, 16);
		mac[i] = (uint8_t)v;
	}
	if (mac[0] & 1)
		return -1; /* multicast: no NIC's own address */
	*has_mac = 1;
	return 0;
}
