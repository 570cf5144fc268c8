# paddock_protoc_c(OUT_SRCS OUT_HDRS PROTO_ROOT proto...) generates C with protoc-c at build time.
find_program(PROTOC_C protoc-c REQUIRED)
function(paddock_protoc_c out_srcs out_hdrs proto_root)
  set(srcs)
  set(hdrs)
  foreach(p ${ARGN})
    file(RELATIVE_PATH rel ${proto_root} ${p})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(c ${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.c)
    set(h ${CMAKE_CURRENT_BINARY_DIR}/${base}.pb-c.h)
    add_custom_command(OUTPUT ${c} ${h}
      COMMAND ${PROTOC_C} --proto_path=${proto_root} --c_out=${CMAKE_CURRENT_BINARY_DIR} ${p}
      DEPENDS ${p} ${ARGN}
      COMMENT "protoc-c ${rel}" VERBATIM)
    list(APPEND srcs ${c})
    list(APPEND hdrs ${h})
  endforeach()
  set(${out_srcs} ${srcs} PARENT_SCOPE)
  set(${out_hdrs} ${hdrs} PARENT_SCOPE)
endfunction()
