/* The libFuzzer entry points every target in tests/fuzz defines
 * (https://llvm.org/docs/LibFuzzer.html). A target is linked either with
 * libFuzzer (clang, PADDOCK_FUZZ=ON: `make fuzz`) or with replay_main.c (the
 * normal build: ctest fuzz.<target> feeds it every file of its corpus). Each
 * target feeds the bytes to the same function the service calls on
 * untrusted input, and must not leak, log or keep state between inputs. */
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* optional: once before the first input */
int LLVMFuzzerInitialize(int *argc, char ***argv);
