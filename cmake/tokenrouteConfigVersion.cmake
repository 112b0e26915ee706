# Version of the installed tokenroute package: the crate version, kept equal to
# Cargo.toml's by ffi-tests/tests/install_metadata.rs. A request for version R is
# satisfied when R <= this version and R is on the same semver line (the same major
# version; the same minor version while the major is 0). Asking for a newer version
# fails at configure time.
set(PACKAGE_VERSION "0.1.0")

set(PACKAGE_VERSION_COMPATIBLE FALSE)
if("${PACKAGE_FIND_VERSION}" STREQUAL "")
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  if(PACKAGE_VERSION MATCHES "^0\\.([0-9]+)")
    if(PACKAGE_FIND_VERSION_MAJOR EQUAL 0 AND PACKAGE_FIND_VERSION_MINOR EQUAL CMAKE_MATCH_1)
      set(PACKAGE_VERSION_COMPATIBLE TRUE)
    endif()
  elseif(PACKAGE_VERSION MATCHES "^([0-9]+)")
    if(PACKAGE_FIND_VERSION_MAJOR EQUAL CMAKE_MATCH_1)
      set(PACKAGE_VERSION_COMPATIBLE TRUE)
    endif()
  endif()
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()

# The installed library is 64-bit.
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "" AND NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(PACKAGE_VERSION "${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
