/* TLS credentials from the command line or a control request (cli_tls.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli_tls.h"

/* DIR/name, whole, into out as a string. */
static int read_in(char *out, size_t cap, const char *dir, const char *name, char *why,
		   size_t len)
{
	char path[4096];
	FILE *f;
	size_t n;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		snprintf(why, len, "TLS directory path too long");
		return -1;
	}
	f = fopen(path, "re");
	if (!f) {
		snprintf(why, len, "%s: not readable (a TLS directory holds ca.pem, cert.pem, "
			 "key.pem)", path);
		return -1;
	}
	n = fread(out, 1, cap, f);
	fclose(f);
	if (n == cap) {
		snprintf(why, len, "%s: larger than %zu bytes", path, cap - 1);
		return -1;
	}
	out[n] = 0;
	return 0;
}

int cli_tls_dir(struct cli_tls *t, const char *dir, char *why, size_t len)
{
	if (t->set && t->psk_mode) {
		snprintf(why, len, "a TLS directory or a PSK file, not both");
		return -1;
	}
	if (read_in(t->ca, sizeof(t->ca), dir, "ca.pem", why, len) ||
	    read_in(t->cert, sizeof(t->cert), dir, "cert.pem", why, len) ||
	    read_in(t->key, sizeof(t->key), dir, "key.pem", why, len))
		return -1;
	t->set = 1;
	return 0;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

int cli_tls_psk_file(struct cli_tls *t, const char *path, char *why, size_t len)
{
	char line[512], *colon, *hex;
	FILE *f;
	size_t n = 0;

	if (t->set && !t->psk_mode) {
		snprintf(why, len, "a TLS directory or a PSK file, not both");
		return -1;
	}
	f = fopen(path, "re");
	if (!f) {
		snprintf(why, len, "%s: cannot open", path);
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	colon = strrchr(line, ':');
	if (!colon || colon == line || (size_t)(colon - line) >= sizeof(t->identity)) {
		snprintf(why, len, "%s: not IDENTITY:HEXKEY", path);
		return -1;
	}
	*colon = 0;
	for (hex = colon + 1; hex[0] && hex[1] && n < sizeof(t->psk); hex += 2) {
		int hi = hexval((unsigned char)hex[0]), lo = hexval((unsigned char)hex[1]);

		if (hi < 0 || lo < 0)
			break;
		t->psk[n++] = (uint8_t)(hi << 4 | lo);
	}
	if (*hex || n < 16) {
		snprintf(why, len, "%s: the key must be 32 to 128 hex digits", path);
		return -1;
	}
	/* Shorter than identity: checked at the colon above. */
	memcpy(t->identity, line, (size_t)(colon - line) + 1);
	t->psk_len = n;
	t->psk_mode = t->set = 1;
	return 0;
}

int cli_tls_peer(struct cli_tls *t, const char *name, char *why, size_t len)
{
	if (strlen(name) >= sizeof(t->peer) || !*name) {
		snprintf(why, len, "bad TLS peer name");
		return -1;
	}
	snprintf(t->peer, sizeof(t->peer), "%s", name);
	return 0;
}

const struct vmm_tls_opts *cli_tls_opts(struct cli_tls *t)
{
	if (!t->set)
		return NULL;
	vmm_tls_opts_init(&t->o);
	if (t->psk_mode) {
		t->o.psk = t->psk;
		t->o.psk_len = t->psk_len;
		t->o.psk_identity = t->identity;
	} else {
		t->o.ca_pem = t->ca;
		t->o.cert_pem = t->cert;
		t->o.key_pem = t->key;
		t->o.peer_name = t->peer[0] ? t->peer : NULL;
	}
	return &t->o;
}
