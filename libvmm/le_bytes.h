/* Little-endian fields at any alignment, in the images libvmm reads and writes for a guest
 * (the Linux boot protocol header, the MP table, the ACPI tables). x86 is little-endian, so
 * each is a copy; memcpy because the fields are not aligned. */
#ifndef VMM_LE_BYTES_H
#define VMM_LE_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t vmm__le16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t vmm__le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t vmm__le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void vmm__put_le16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline void vmm__put_le32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void vmm__put_le64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* The byte that makes len bytes sum to 0 modulo 256: the checksum of MP and ACPI tables. */
static inline uint8_t vmm__fw_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)(0 - s);
}

#endif
