# CMake package of the tokenroute C library, installed by `cargo cinstall` into
# <prefix>/share/cmake/tokenroute/. Use:
#
#   find_package(tokenroute 0.1 CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE tokenroute::tokenroute)          # shared
#   target_link_libraries(app PRIVATE tokenroute::tokenroute_static)   # static
#
# Relocatable: everything is found relative to this file (<prefix>/share/cmake/tokenroute).

get_filename_component(_tokenroute_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_tokenroute_libdirs
  "${_tokenroute_prefix}/lib"
  "${_tokenroute_prefix}/lib64"
  "${_tokenroute_prefix}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")

find_path(tokenroute_INCLUDE_DIR tokenroute.h
  PATHS "${_tokenroute_prefix}/include" NO_DEFAULT_PATH)
find_library(tokenroute_LIBRARY NAMES libtokenroute.so tokenroute
  PATHS ${_tokenroute_libdirs} NO_DEFAULT_PATH)
find_library(tokenroute_STATIC_LIBRARY NAMES libtokenroute.a
  PATHS ${_tokenroute_libdirs} NO_DEFAULT_PATH)

set(tokenroute_FOUND TRUE)
if(NOT tokenroute_INCLUDE_DIR OR NOT tokenroute_LIBRARY)
  set(tokenroute_FOUND FALSE)
  set(tokenroute_NOT_FOUND_MESSAGE
    "tokenroute.h or libtokenroute.so not found under ${_tokenroute_prefix}")
  return()
endif()

if(NOT TARGET tokenroute::tokenroute)
  add_library(tokenroute::tokenroute SHARED IMPORTED)
  set_target_properties(tokenroute::tokenroute PROPERTIES
    IMPORTED_LOCATION "${tokenroute_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${tokenroute_INCLUDE_DIR}")
endif()

if(tokenroute_STATIC_LIBRARY AND NOT TARGET tokenroute::tokenroute_static)
  # The static library holds Rust's standard library, which needs these system
  # libraries (the same as `pkg-config --static --libs tokenroute`).
  find_package(Threads REQUIRED)
  add_library(tokenroute::tokenroute_static STATIC IMPORTED)
  set_target_properties(tokenroute::tokenroute_static PROPERTIES
    IMPORTED_LOCATION "${tokenroute_STATIC_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${tokenroute_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

unset(_tokenroute_prefix)
unset(_tokenroute_libdirs)
