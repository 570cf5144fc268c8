# paddock_add_service(name SOURCES ... [MIGRATIONS dir]) builds paddock-<name>
# linked with lib/, embedding <dir>/*.sql as <name>_migrations[] when given.
function(paddock_add_service name)
  cmake_parse_arguments(S "" "MIGRATIONS" "SOURCES" ${ARGN})
  add_executable(paddock-${name} ${S_SOURCES})
  target_link_libraries(paddock-${name} PRIVATE paddock_lib)
  target_include_directories(paddock-${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  if(S_MIGRATIONS)
    file(GLOB sql ${S_MIGRATIONS}/*.sql)
    string(REPLACE "-" "_" cname ${name})
    paddock_embed_files(paddock-${name} ${cname}_migrations ${sql})
  endif()
endfunction()
