# paddock_embed_files(TARGET NAME FILES...) compiles the files into a table
#   const struct embedded_file NAME[] = {{"basename", data, len}, ...}; terminated by {NULL}
# so binaries carry their SQL migrations and static assets without an install step.
function(paddock_embed_files target name)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}_embedded.c)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAME=${name} "-DFILES=${ARGN}"
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_files_script.cmake
    DEPENDS ${ARGN} ${CMAKE_SOURCE_DIR}/cmake/embed_files_script.cmake
    COMMENT "embedding ${name}" VERBATIM)
  target_sources(${target} PRIVATE ${out})
endfunction()
