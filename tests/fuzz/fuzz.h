/* Fuzz targets share this entry point. Each target_*.c is built twice: with libFuzzer
 * (cmake -DVMM_FUZZ=ON, clang) for exploring, and with replay.c for CI, which runs every
 * file of the target's saved corpus (tests/fuzz/corpus/<target>/) as a regression test. */
#ifndef VMM_FUZZ_H
#define VMM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
