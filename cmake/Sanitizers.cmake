# ASan + UBSan for the test build (PADDOCK_SANITIZE=ON); UB aborts instead of warning.
if(PADDOCK_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -g -O1)
  add_link_options(-fsanitize=address,undefined)
endif()
