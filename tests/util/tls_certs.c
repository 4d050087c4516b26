/* Test credentials with the OpenSSL API (tls_certs.h). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls_certs.h"

struct cred {
	EVP_PKEY *key;
	X509 *cert;
};

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

/* A P-256 key and a certificate for cn (a CA if !ca_of), valid from `from` to `to` days
 * from now, signed by ca_of (or itself). san: a subjectAltName value, or NULL. */
static int make(struct cred *out, const char *cn, const struct cred *ca_of, const char *san,
		long from_days, long to_days)
{
	static long serial = 1;
	X509 *c = X509_new();
	X509_NAME *name = X509_NAME_new();
	int r = 0;

	out->key = EVP_EC_gen("P-256");
	out->cert = c;
	if (!out->key || !c || !name)
		return -1;
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
	X509_gmtime_adj(X509_getm_notBefore(c), from_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(c), to_days * 86400);
	X509_set_pubkey(c, out->key);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c, name);
	X509_set_issuer_name(c, ca_of ? X509_get_subject_name(ca_of->cert) : name);
	X509_NAME_free(name);
	if (!ca_of) {
		r |= add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
		r |= add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
		r |= add_ext(c, c, NID_subject_key_identifier, "hash");
	} else {
		r |= add_ext(c, ca_of->cert, NID_basic_constraints, "critical,CA:FALSE");
		r |= add_ext(c, ca_of->cert, NID_key_usage, "critical,digitalSignature");
		r |= add_ext(c, ca_of->cert, NID_ext_key_usage, "serverAuth,clientAuth");
		r |= add_ext(c, ca_of->cert, NID_authority_key_identifier, "keyid");
		if (san)
			r |= add_ext(c, ca_of->cert, NID_subject_alt_name, san);
	}
	if (r || !X509_sign(c, ca_of ? ca_of->key : out->key, EVP_sha256()))
		return -1;
	return 0;
}

static void cred_free(struct cred *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->cert);
}

const char *tc_path(const char *dir, const char *name)
{
	static __thread char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

static int write_cred(const char *dir, const char *cert, const char *key, const struct cred *c)
{
	FILE *f = fopen(tc_path(dir, cert), "w");
	int ok;

	if (!f)
		return -1;
	ok = PEM_write_X509(f, c->cert);
	fclose(f);
	if (!ok || !key)
		return ok ? 0 : -1;
	f = fopen(tc_path(dir, key), "w");
	if (!f)
		return -1;
	ok = PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	return ok ? 0 : -1;
}

/* A tls-dir layout (ca.pem, cert.pem, key.pem) under dir/sub. */
static int write_dir(const char *dir, const char *sub, const struct cred *ca, const struct cred *c)
{
	char d[512];

	snprintf(d, sizeof(d), "%s/%s", dir, sub);
	if (mkdir(d, 0700))
		return -1;
	return write_cred(d, "ca.pem", NULL, ca) | write_cred(d, "cert.pem", "key.pem", c);
}

int tc_make(char *dir, size_t len)
{
	struct cred ca = { 0 }, ca2 = { 0 }, dest = { 0 }, src = { 0 }, old = { 0 }, wrong = { 0 },
		    other = { 0 };
	FILE *f;
	int r = 0;

	snprintf(dir, len, "/tmp/vmm-tls-test.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	r |= make(&ca, "libvmm test CA", NULL, NULL, -1, 30);
	r |= make(&ca2, "another CA", NULL, NULL, -1, 30);
	if (r)
		goto out;
	r |= make(&dest, TC_DEST_NAME, &ca, "DNS:" TC_DEST_NAME ",IP:127.0.0.1", -1, 30);
	r |= make(&src, TC_SRC_NAME, &ca, "DNS:" TC_SRC_NAME, -1, 30);
	r |= make(&old, TC_SRC_NAME, &ca, "DNS:" TC_SRC_NAME, -30, -1);
	r |= make(&wrong, TC_OTHER_NAME, &ca, "DNS:" TC_OTHER_NAME, -1, 30);
	r |= make(&other, TC_SRC_NAME, &ca2, "DNS:" TC_SRC_NAME, -1, 30);
	if (r)
		goto out;
	r |= write_cred(dir, "ca.pem", NULL, &ca);
	r |= write_cred(dir, "ca2.pem", NULL, &ca2);
	r |= write_cred(dir, "dest.pem", "dest.key", &dest);
	r |= write_cred(dir, "src.pem", "src.key", &src);
	r |= write_cred(dir, "expired.pem", "expired.key", &old);
	r |= write_cred(dir, "wrongname.pem", "wrongname.key", &wrong);
	r |= write_cred(dir, "src-ca2.pem", "src-ca2.key", &other);
	r |= write_dir(dir, "dest", &ca, &dest);
	r |= write_dir(dir, "src", &ca, &src);
	f = fopen(tc_path(dir, "psk.txt"), "w");
	if (!f)
		r = -1;
	else {
		fprintf(f, "vmm-test:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
		fclose(f);
		chmod(tc_path(dir, "psk.txt"), 0600);
	}
out:
	cred_free(&ca), cred_free(&ca2), cred_free(&dest), cred_free(&src);
	cred_free(&old), cred_free(&wrong), cred_free(&other);
	return r ? -1 : 0;
}

void tc_remove(const char *dir)
{
	static const char *const files[] = {
		"ca.pem", "ca2.pem", "dest.pem", "dest.key", "src.pem", "src.key", "expired.pem",
		"expired.key", "wrongname.pem", "wrongname.key", "src-ca2.pem", "src-ca2.key",
		"psk.txt", "dest/ca.pem", "dest/cert.pem", "dest/key.pem", "src/ca.pem",
		"src/cert.pem", "src/key.pem", "dest", "src",
	};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		remove(tc_path(dir, files[i]));
	rmdir(dir);
}

char *tc_locked_key(const char *key_pem, const char *passphrase)
{
	BIO *in = BIO_new_mem_buf(key_pem, -1), *out = BIO_new(BIO_s_mem());
	EVP_PKEY *k = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
	char *text = NULL, *data;
	long len;

	if (k && out &&
	    PEM_write_bio_PKCS8PrivateKey(out, k, EVP_aes_256_cbc(), passphrase,
					  (int)strlen(passphrase), NULL, NULL) == 1) {
		len = BIO_get_mem_data(out, &data);
		text = calloc(1, (size_t)len + 1);
		if (text)
			memcpy(text, data, (size_t)len);
	}
	EVP_PKEY_free(k);
	BIO_free(in);
	BIO_free(out);
	return text;
}
