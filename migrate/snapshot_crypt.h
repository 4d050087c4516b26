/* Snapshot encryption at rest: an encrypted snapshot is a plain snapshot file (any
 * layout: image, compressed) cut into chunks, each sealed with AES-256-GCM, so that a file
 * on shared storage exposes neither guest memory nor machine state.
 *
 *   [0, 4096)              header (struct vmm__snap_enc_hdr): magic, version, chunk size,
 *                          plain length, a random 32-byte salt, the key check
 *   [4096 + i * chunk)     chunk i of the plain file, encrypted in place (same offset, same
 *                          length); an all-zero chunk is left a hole and flagged
 *   [table_off, +n*24+16)  the chunk table (per chunk: GCM tag, flags, length), itself
 *                          encrypted and tagged
 *
 * Keys: the caller's 32-byte key never encrypts anything itself. HKDF-SHA256(key, salt)
 * gives a per-file key and a key check; the check tells a wrong key (VMM_EKEY) from a
 * damaged file (VMM_ECORRUPT). Nonces: chunk i uses (0, i), the table (1, 0); the salt
 * is fresh for every file, so no (key, nonce) pair ever repeats even though a snapshot of
 * the same VM is taken again and again. Every GCM operation takes the whole header as
 * associated data (and a chunk its index), so a changed header field, a chunk moved to
 * another index, a flipped flag or a cut-off file all fail a tag. */
#ifndef VMM_SNAPSHOT_CRYPT_H
#define VMM_SNAPSHOT_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#define VMM_SNAP_ENC_MAGIC "LIBVMMSE"
#define VMM_SNAP_KEY_LEN 32u
#define VMM_SNAP_ENC_DATA_OFF 4096ull
#define VMM_SNAP_ENC_CHUNK (1u << 20)

struct vmm__snap_enc_hdr {
	char magic[8];
	uint16_t version; /* 1 */
	uint16_t reserved0;
	uint32_t hdr_len; /* sizeof this struct */
	uint32_t chunk_size;
	uint32_t reserved1;
	uint64_t plain_len;
	uint64_t nchunks;
	uint64_t table_off;
	uint64_t file_len;
	uint8_t salt[32];
	uint8_t key_check[32];
} __attribute__((packed));

/* 1 if the file at fd (read at offset 0) starts with the encrypted magic, 0 if not, -1
 * if it is shorter than a magic. */
int vmm__snap_is_encrypted(int fd);

/* Checks a caller's key argument: VMM_EINVAL unless (NULL, 0) or 32 bytes. */
int vmm__snap_key_check_arg(const void *key, size_t key_len);

/* Encrypts plain_fd's first plain_len bytes into out_fd (new and empty), using a few
 * threads it joins before returning. *file_len: the encrypted file's length. */
int vmm__snap_encrypt(int plain_fd, uint64_t plain_len, int out_fd, const uint8_t *key,
		      uint64_t *file_len);

/* Checks and decrypts in_fd into a new memfd (*plain_fd, the caller closes it); every chunk
 * is authenticated before this returns 0, so nothing unverified is ever used. Errors:
 * VMM_EKEY (the key does not open this file), VMM_ECORRUPT (a tag fails: naming the chunk
 * or the table), VMM_ETRUNCATED, VMM_EVERSION. */
int vmm__snap_decrypt(int in_fd, const uint8_t *key, int *plain_fd);

#endif
