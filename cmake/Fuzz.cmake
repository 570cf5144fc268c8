# PADDOCK_FUZZ=ON: the build of `make fuzz` (tests/fuzz/run.sh). clang's
# libFuzzer needs every object that holds a parser built with its coverage
# instrumentation (fuzzer-no-link), next to ASan and UBSan (PADDOCK_SANITIZE);
# the fuzz targets themselves link -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
if(PADDOCK_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PADDOCK_FUZZ needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang")
  endif()
  if(NOT PADDOCK_SANITIZE)
    message(FATAL_ERROR "PADDOCK_FUZZ needs PADDOCK_SANITIZE=ON (the fuzzers find bugs through ASan and UBSan)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
  # The warning policy (Warnings.cmake) is gcc's, and gcc checks the tree.
  # clang's -Wformat=2 also flags the va_list wrappers (log.c, err.c), whose
  # callers are checked through their format attributes.
  add_compile_options(-Wno-format-nonliteral)
endif()
