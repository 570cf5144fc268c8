# paddock_add_service(name SOURCES ... [MIGRATIONS dir]) builds paddock-<name>.
# Everything in SOURCES but main.c is one static library, paddock_<name>
# (dashes as underscores), which the daemon links with its main.c: unit tests,
# fuzzers and benchmarks link the parts they drive from it, never by
# including a .c file or compiling a source twice. <dir>/*.sql is embedded in
# the library as <name>_migrations[] when given. Each links the lib modules
# whose headers its sources (and the directory's headers) include
# (paddock_link_included_modules, lib/CMakeLists.txt).
function(paddock_add_service name)
  cmake_parse_arguments(S "" "MIGRATIONS" "SOURCES" ${ARGN})
  string(REPLACE "-" "_" cname ${name})
  set(lib_sources ${S_SOURCES})
  list(FILTER lib_sources EXCLUDE REGEX "^main\\.c$")
  file(GLOB headers ${CMAKE_CURRENT_SOURCE_DIR}/*.h)
  add_executable(paddock-${name} main.c)
  target_include_directories(paddock-${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  paddock_link_included_modules(paddock-${name} ${CMAKE_CURRENT_SOURCE_DIR}/main.c ${headers})
  if(lib_sources OR S_MIGRATIONS)
    add_library(paddock_${cname} STATIC ${lib_sources})
    target_include_directories(paddock_${cname} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
    list(TRANSFORM lib_sources PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE lib_paths)
    paddock_link_included_modules(paddock_${cname} ${lib_paths} ${headers})
    if(S_MIGRATIONS)
      file(GLOB sql ${S_MIGRATIONS}/*.sql)
      paddock_embed_files(paddock_${cname} ${cname}_migrations ${sql})
    endif()
    target_link_libraries(paddock-${name} PRIVATE paddock_${cname})
  endif()
endfunction()
