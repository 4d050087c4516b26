/* Snapshot encryption at rest (layout and key schedule in snapshot_crypt.h): AES-256-GCM
 * through OpenSSL 3's EVP interface (AES-NI/VAES where the CPU has them), chunks spread
 * over a few threads, each with its own cipher context. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "libvmm/sandbox.h"
#include "libvmm/error_internal.h"
#include "migrate/snapshot_crypt.h"

#define TAG_LEN 16
#define MAX_THREADS 4
#define ENTRY_ZERO 1u /* the chunk is all zeros: a hole, nothing to decrypt */

struct enc_entry {
	uint8_t tag[TAG_LEN];
	uint32_t flags;
	uint32_t len;
} __attribute__((packed));

/* One encrypt or decrypt pass over the chunks, shared by its threads. */
struct pass {
	int enc;
	int in_fd, out_fd;
	/* The encrypted file opened O_DIRECT too (or -1): whole aligned chunks go around the
	 * page cache, which costs more than the disk (as for the plain RAM image). */
	int direct_fd;
	const struct vmm__snap_enc_hdr *hdr;
	const uint8_t *file_key;
	struct enc_entry *table;
	pthread_t caller;
	uint64_t next; /* the next chunk to take (atomic) */
	pthread_mutex_t lock;
	int err;       /* the first failure, under lock */
	char msg[160];
};

int vmm__snap_key_check_arg(const void *key, size_t key_len)
{
	if (!key && !key_len)
		return 0;
	if (!key || key_len != VMM_SNAP_KEY_LEN)
		return vmm__err(VMM_EINVAL, "snapshot key: %zu bytes%s, AES-256 takes %u", key_len,
				key ? "" : " at NULL", VMM_SNAP_KEY_LEN);
	return 0;
}

int vmm__snap_is_encrypted(int fd)
{
	char magic[8];

	if (pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic))
		return -1;
	return !memcmp(magic, VMM_SNAP_ENC_MAGIC, 8);
}

/* HKDF-SHA256(key, salt, "libvmm snapshot v1"): 32 bytes of per-file key, 32 of check. */
static int derive(const uint8_t *key, const uint8_t salt[32], uint8_t out[64])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	static const char info[] = "libvmm snapshot v1";
	OSSL_PARAM p[5];
	int ok;

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, VMM_SNAP_KEY_LEN);
	p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, 32);
	p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
						 sizeof(info) - 1);
	p[4] = OSSL_PARAM_construct_end();
	ok = kc && EVP_KDF_derive(kc, out, 64, p) > 0;
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return ok ? 0 : vmm__err(VMM_ESYS, "HKDF-SHA256 (OpenSSL) failed");
}

static void nonce(uint8_t iv[12], uint32_t domain, uint64_t index)
{
	memcpy(iv, &domain, 4);
	memcpy(iv + 4, &index, 8);
}

/* One AES-256-GCM operation; buf is transformed in place. Returns 1 on success, 0 when a
 * decryption's tag does not match (or OpenSSL fails). */
static int gcm(EVP_CIPHER_CTX *c, int enc, const uint8_t iv[12], const void *aad1, size_t aad1_len,
	       const void *aad2, size_t aad2_len, uint8_t *buf, size_t len, uint8_t tag[TAG_LEN])
{
	int n;

	if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) <= 0 ||
	    EVP_CipherUpdate(c, NULL, &n, aad1, (int)aad1_len) <= 0 ||
	    (aad2_len && EVP_CipherUpdate(c, NULL, &n, aad2, (int)aad2_len) <= 0))
		return 0;
	for (size_t off = 0; off < len;) {
		size_t piece = len - off < (1u << 30) ? len - off : (1u << 30);

		if (EVP_CipherUpdate(c, buf + off, &n, buf + off, (int)piece) <= 0)
			return 0;
		off += piece;
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) <= 0)
		return 0;
	if (EVP_CipherFinal_ex(c, buf + len, &n) <= 0)
		return 0;
	return !enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) > 0;
}

static EVP_CIPHER_CTX *cipher_new(const uint8_t *file_key, int enc)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, file_key, NULL, enc) > 0)
		return c;
	EVP_CIPHER_CTX_free(c);
	return NULL;
}

static int io_all(int write, int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write ? pwrite(fd, buf + done, len - done, (off_t)(off + done))
				  : pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		done += (size_t)n;
	}
	return 0;
}

static void pass_fail(struct pass *p, int code, const char *fmt, unsigned long long a, int e)
{
	pthread_mutex_lock(&p->lock);
	if (!p->err) {
		p->err = code;
		snprintf(p->msg, sizeof(p->msg), fmt, a, e ? strerror(e) : "");
	}
	pthread_mutex_unlock(&p->lock);
}

static int all_zero(const uint8_t *b, size_t len)
{
	static const uint8_t z[4096];

	for (size_t off = 0; off < len; off += sizeof(z)) {
		size_t n = len - off < sizeof(z) ? len - off : sizeof(z);

		if (memcmp(b + off, z, n))
			return 0;
	}
	return 1;
}

static int io_code(int e)
{
	if (e == -ENODATA)
		return VMM_ETRUNCATED;
	if (e == -ENOSPC || e == -EFBIG)
		return VMM_ENOSPC;
	return VMM_EIO;
}

static void *pass_thread(void *arg)
{
	struct pass *p = arg;
	const struct vmm__snap_enc_hdr *h = p->hdr;
	EVP_CIPHER_CTX *c = cipher_new(p->file_key, p->enc);
	uint8_t *buf = NULL;
	uint64_t i;

	if (posix_memalign((void **)&buf, 4096, h->chunk_size + 4096))
		buf = NULL;

	/* The calling thread keeps its own filter; the extra workers take the migration one. */
	if (!pthread_equal(pthread_self(), p->caller) &&
	    vmm__sandbox_thread(VMM_THREAD_MIGRATION, "vmm-snap-crypt")) {
		pass_fail(p, VMM_ESYS, "sandbox: %llu%s", 0, 0);
		goto out;
	}
	if (!c || !buf) {
		pass_fail(p, VMM_ENOMEM, "cipher context or chunk buffer%llu%s", 0, 0);
		goto out;
	}
	while ((i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < h->nchunks) {
		uint64_t plain_off = i * h->chunk_size;
		uint64_t enc_off = VMM_SNAP_ENC_DATA_OFF + plain_off;
		size_t len = h->plain_len - plain_off < h->chunk_size ? h->plain_len - plain_off
								      : h->chunk_size;
		struct enc_entry *e = &p->table[i];
		uint8_t iv[12];
		int r;

		if (__atomic_load_n(&p->err, __ATOMIC_RELAXED))
			break;
		nonce(iv, 0, i);
		if (p->enc) {
			r = io_all(0, p->in_fd, buf, len, plain_off);
			if (r) {
				pass_fail(p, io_code(r), "read plain chunk %llu: %s", i, -r);
				break;
			}
			e->len = (uint32_t)len;
			if (all_zero(buf, len)) {
				e->flags = ENTRY_ZERO; /* stays a hole; the table vouches for it */
				continue;
			}
			if (!gcm(c, 1, iv, h, sizeof(*h), &i, sizeof(i), buf, len, e->tag)) {
				pass_fail(p, VMM_ESYS, "AES-GCM encrypt chunk %llu%s", i, 0);
				break;
			}
			r = io_all(1, p->direct_fd >= 0 && !(len % 4096) ? p->direct_fd : p->out_fd,
				   buf, len, enc_off);
			if (r) {
				pass_fail(p, io_code(r), "write chunk %llu: %s", i, -r);
				break;
			}
			continue;
		}
		if (e->len != len || (e->flags & ~ENTRY_ZERO)) {
			pass_fail(p, VMM_ECORRUPT, "chunk %llu: table entry does not fit%s", i, 0);
			break;
		}
		if (e->flags & ENTRY_ZERO)
			continue; /* the new memfd is zeros there already */
		r = io_all(0, p->direct_fd >= 0 && !(len % 4096) ? p->direct_fd : p->in_fd, buf,
			   len, enc_off);
		if (r) {
			pass_fail(p, io_code(r), "read chunk %llu: %s", i, -r);
			break;
		}
		if (!gcm(c, 0, iv, h, sizeof(*h), &i, sizeof(i), buf, len, e->tag)) {
			pass_fail(p, VMM_ECORRUPT,
				  "chunk %llu fails its authentication tag (damaged or altered)%s", i, 0);
			break;
		}
		r = io_all(1, p->out_fd, buf, len, plain_off);
		if (r) {
			pass_fail(p, r == -ENOSPC ? VMM_ENOMEM : VMM_EIO,
				  "write decrypted chunk %llu: %s", i, -r);
			break;
		}
	}
out:
	if (buf)
		OPENSSL_cleanse(buf, h->chunk_size + 4096);
	free(buf);
	EVP_CIPHER_CTX_free(c);
	return NULL;
}

/* Runs p over every chunk on up to MAX_THREADS threads (never more than chunks or CPUs). */
static int run_pass(struct pass *p)
{
	pthread_t t[MAX_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t want = p->hdr->nchunks;
	int n = 0;

	if (cpus < 1)
		cpus = 1;
	if (want > (uint64_t)cpus)
		want = (uint64_t)cpus;
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	pthread_mutex_init(&p->lock, NULL);
	p->caller = pthread_self();
	/* The calling thread takes a share too; the others are joined before returning. */
	for (; (uint64_t)n + 1 < want; n++)
		if (pthread_create(&t[n], NULL, pass_thread, p))
			break;
	pass_thread(p);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&p->lock);
	if (p->err)
		return vmm__err(p->err, "%s", p->msg);
	return 0;
}

/* fd opened again with O_DIRECT, or -1 where the file system refuses it (tmpfs). */
static int reopen_direct(int fd, int flags)
{
	char self[64];

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	return open(self, flags | O_DIRECT | O_CLOEXEC);
}

/* One whole pass, encrypting (enc) or decrypting every chunk from in_fd to out_fd; the
 * encrypted side is also opened O_DIRECT where its file system allows. */
static int crypt_file(int enc, int in_fd, int out_fd, const struct vmm__snap_enc_hdr *h,
		      const uint8_t *keys, struct enc_entry *table)
{
	struct pass p;
	int r;

	memset(&p, 0, sizeof(p));
	p.enc = enc;
	p.in_fd = in_fd;
	p.out_fd = out_fd;
	p.direct_fd = reopen_direct(enc ? out_fd : in_fd, enc ? O_WRONLY : O_RDONLY);
	p.hdr = h;
	p.file_key = keys;
	p.table = table;
	r = run_pass(&p);
	if (p.direct_fd >= 0)
		close(p.direct_fd);
	return r;
}

static uint64_t table_len(uint64_t nchunks)
{
	return nchunks * sizeof(struct enc_entry) + TAG_LEN;
}

int vmm__snap_encrypt(int plain_fd, uint64_t plain_len, int out_fd, const uint8_t *key,
		      uint64_t *file_len)
{
	struct vmm__snap_enc_hdr h;
	uint8_t keys[64], iv[12], hdr_page[VMM_SNAP_ENC_DATA_OFF];
	struct enc_entry *table = NULL;
	EVP_CIPHER_CTX *c = NULL;
	uint64_t tlen;
	int r;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, VMM_SNAP_ENC_MAGIC, 8);
	h.version = 1;
	h.hdr_len = sizeof(h);
	h.chunk_size = VMM_SNAP_ENC_CHUNK;
	h.plain_len = plain_len;
	h.nchunks = (plain_len + h.chunk_size - 1) / h.chunk_size;
	h.table_off = VMM_SNAP_ENC_DATA_OFF + ((plain_len + 4095) & ~4095ull);
	tlen = table_len(h.nchunks);
	h.file_len = h.table_off + tlen;
	if (getrandom(h.salt, sizeof(h.salt), 0) != (ssize_t)sizeof(h.salt))
		return vmm__err_sys(VMM_ESYS, "getrandom (snapshot salt)");
	r = derive(key, h.salt, keys);
	if (r)
		return r;
	memcpy(h.key_check, keys + 32, 32);
	table = calloc(1, tlen);
	if (!table) {
		r = vmm__err(VMM_ENOMEM, "chunk table");
		goto out;
	}
	if (ftruncate(out_fd, (off_t)h.file_len) < 0) {
		r = vmm__err_sys(errno == ENOSPC || errno == EFBIG ? VMM_ENOSPC : VMM_EIO,
				 "size the encrypted snapshot");
		goto out;
	}
	r = crypt_file(1, plain_fd, out_fd, &h, keys, table);
	if (r)
		goto out;
	c = cipher_new(keys, 1);
	nonce(iv, 1, 0);
	if (!c || !gcm(c, 1, iv, &h, sizeof(h), NULL, 0, (uint8_t *)table, tlen - TAG_LEN,
		       (uint8_t *)table + tlen - TAG_LEN)) {
		r = vmm__err(VMM_ESYS, "AES-GCM encrypt the chunk table");
		goto out;
	}
	memset(hdr_page, 0, sizeof(hdr_page));
	memcpy(hdr_page, &h, sizeof(h));
	r = io_all(1, out_fd, (uint8_t *)table, tlen, h.table_off);
	if (!r)
		r = io_all(1, out_fd, hdr_page, sizeof(hdr_page), 0);
	if (r)
		r = vmm__err(io_code(r), "write the encrypted snapshot: %s", strerror(-r));
	else
		*file_len = h.file_len;
out:
	OPENSSL_cleanse(keys, sizeof(keys));
	EVP_CIPHER_CTX_free(c);
	free(table);
	return r;
}

/* The header, checked as far as it can be without the table: magic, version, sizes that
 * fit together, the key check. */
static int read_header(int fd, const uint8_t *key, struct vmm__snap_enc_hdr *h, uint8_t keys[64])
{
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return vmm__err_sys(VMM_EIO, "encrypted snapshot");
	r = io_all(0, fd, (uint8_t *)h, sizeof(*h), 0);
	if (r == -ENODATA)
		return vmm__err(VMM_ETRUNCATED, "encrypted snapshot: file ends inside its header");
	if (r)
		return vmm__err(VMM_EIO, "encrypted snapshot header: %s", strerror(-r));
	if (memcmp(h->magic, VMM_SNAP_ENC_MAGIC, 8))
		return vmm__err(VMM_EMAGIC, "not an encrypted libvmm snapshot (magic)");
	if (h->version != 1)
		return vmm__err(VMM_EVERSION, "encrypted snapshot format %u, this library reads 1",
				h->version);
	r = derive(key, h->salt, keys);
	if (r)
		return r;
	/* Before anything else: a wrong key must say so, not "corrupt". */
	if (CRYPTO_memcmp(keys + 32, h->key_check, 32))
		return vmm__err(VMM_EKEY, "the key does not open this snapshot (wrong key, or its "
					  "key header was altered)");
	if (h->hdr_len != sizeof(*h) || h->chunk_size != VMM_SNAP_ENC_CHUNK ||
	    h->nchunks != (h->plain_len + h->chunk_size - 1) / h->chunk_size ||
	    h->plain_len > (1ull << 50) ||
	    h->table_off != VMM_SNAP_ENC_DATA_OFF + ((h->plain_len + 4095) & ~4095ull) ||
	    h->file_len != h->table_off + table_len(h->nchunks))
		return vmm__err(VMM_ECORRUPT, "encrypted snapshot header inconsistent");
	if ((uint64_t)st.st_size < h->file_len)
		return vmm__err(VMM_ETRUNCATED, "encrypted snapshot has %llu of its %llu bytes",
				(unsigned long long)st.st_size, (unsigned long long)h->file_len);
	if ((uint64_t)st.st_size > h->file_len)
		return vmm__err(VMM_ECORRUPT, "%llu bytes after the end of the encrypted snapshot",
				(unsigned long long)((uint64_t)st.st_size - h->file_len));
	return 0;
}

int vmm__snap_decrypt(int in_fd, const uint8_t *key, int *plain_fd)
{
	struct vmm__snap_enc_hdr h;
	struct enc_entry *table = NULL;
	EVP_CIPHER_CTX *c = NULL;
	uint8_t keys[64], iv[12];
	int out = -1, r;

	*plain_fd = -1;
	r = read_header(in_fd, key, &h, keys);
	if (r)
		goto fail;
	table = malloc(table_len(h.nchunks));
	if (!table) {
		r = vmm__err(VMM_ENOMEM, "chunk table");
		goto fail;
	}
	r = io_all(0, in_fd, (uint8_t *)table, table_len(h.nchunks), h.table_off);
	if (r) {
		r = vmm__err(io_code(r), "read the chunk table: %s", strerror(-r));
		goto fail;
	}
	c = cipher_new(keys, 0);
	nonce(iv, 1, 0);
	if (!c || !gcm(c, 0, iv, &h, sizeof(h), NULL, 0, (uint8_t *)table,
		       table_len(h.nchunks) - TAG_LEN,
		       (uint8_t *)table + table_len(h.nchunks) - TAG_LEN)) {
		r = vmm__err(VMM_ECORRUPT, "encrypted snapshot: header or chunk table fails its "
					   "authentication tag (damaged or altered)");
		goto fail;
	}
	/* The plain file lives only in memory (never on disk) and only until the restore
	 * has read it. */
	out = memfd_create("vmm-snapshot-plain", MFD_CLOEXEC);
	if (out < 0) {
		r = vmm__err_sys(VMM_ESYS, "memfd_create");
		goto fail;
	}
	if (ftruncate(out, (off_t)h.plain_len) < 0) {
		r = vmm__err_sys(VMM_ENOMEM, "size the decrypted snapshot");
		goto fail;
	}
	r = crypt_file(0, in_fd, out, &h, keys, table);
	if (r)
		goto fail;
	*plain_fd = out;
	out = -1;
fail:
	if (out >= 0)
		close(out);
	OPENSSL_cleanse(keys, sizeof(keys));
	EVP_CIPHER_CTX_free(c);
	free(table);
	return r;
}
