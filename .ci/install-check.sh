#!/usr/bin/env bash
# Installs tokenroute as a C library (cargo-c) into a temporary prefix and uses it the
# way an engine would, from the installed files only:
#   - the install: include/tokenroute.h (the committed header), lib/libtokenroute.so.<ABI>
#     with SONAME libtokenroute.so.<ABI> (under 3 MB) and the unversioned dev link,
#     lib/libtokenroute.a, lib/pkgconfig/tokenroute.pc (Libs.private for static links),
#     share/cmake/tokenroute/ (find_package(tokenroute CONFIG));
#   - installing over an older ABI: a libtokenroute.so.<ABI-1> already in the prefix
#     stays, a program linked against it still runs, new links get the new SONAME;
#   - examples/c and examples/cpp built with pkg-config (shared and static) and with
#     CMake (shared and static), run; C and C++ outputs equal bit for bit, and the f64
#     reference accepts them;
#   - asking for a newer version than installed fails: pkg-config --atleast-version and
#     find_package(tokenroute 99.0) at configure time.
# Needs cargo-c (cargo install cargo-c --locked), pkg-config, cmake, a C/C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "install-check: $*" >&2; exit 1; }
command -v cargo-cinstall >/dev/null || fail "cargo-c is not installed (cargo install cargo-c --locked)"

abi=$(sed -n 's/^#define TKR_ABI_VERSION \([0-9][0-9]*\)$/\1/p' include/tokenroute.h)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$abi" ] && [ -n "$version" ] || fail "cannot read the ABI or crate version"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
lib=$prefix/lib

echo "--- cargo cinstall --release --prefix $prefix (ABI $abi, version $version)"
cargo cinstall --release --prefix "$prefix" --libdir lib >"$tmp/cinstall.log" 2>&1 ||
  { cat "$tmp/cinstall.log"; fail "cargo cinstall failed"; }

so=$lib/libtokenroute.so.$abi
for f in "$prefix/include/tokenroute.h" "$so" "$lib/libtokenroute.so" "$lib/libtokenroute.a" \
  "$lib/pkgconfig/tokenroute.pc" "$prefix/share/cmake/tokenroute/tokenrouteConfig.cmake" \
  "$prefix/share/cmake/tokenroute/tokenrouteConfigVersion.cmake"; do
  [ -e "$f" ] || fail "missing after install: ${f#"$prefix"/}"
done
cmp -s "$prefix/include/tokenroute.h" include/tokenroute.h || fail "installed header differs from include/tokenroute.h"
[ -L "$lib/libtokenroute.so" ] || fail "libtokenroute.so is not a link"
[ "$(readlink -f "$lib/libtokenroute.so")" = "$(readlink -f "$so")" ] || fail "libtokenroute.so does not lead to libtokenroute.so.$abi"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libtokenroute.so.$abi" ] || fail "SONAME is '$soname', want libtokenroute.so.$abi"
size=$(stat -L -c %s "$so")
[ "$size" -lt 3000000 ] || fail "libtokenroute.so.$abi is $size bytes (>= 3 MB)"
grep -q '^Libs.private: .*-l' "$lib/pkgconfig/tokenroute.pc" || fail "tokenroute.pc has no Libs.private"
echo "installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"
echo "SONAME $soname, $size bytes; libtokenroute.a $(stat -c %s "$lib/libtokenroute.a") bytes"

export PKG_CONFIG_PATH=$lib/pkgconfig
[ "$(pkg-config --modversion tokenroute)" = "$version" ] || fail "pkg-config version is not $version"
pkg-config --atleast-version="$version" tokenroute || fail "pkg-config refuses its own version"
if pkg-config --atleast-version=99.0 tokenroute; then fail "pkg-config accepted version 99.0"; fi

# An older ABI in the same prefix. Stand-in for an earlier release: the same objects
# linked as a shared library with SONAME libtokenroute.so.<ABI-1>, and a program linked
# against it (NEEDED libtokenroute.so.<ABI-1>).
old=$((abi - 1))
if [ "$old" -ge 1 ]; then
  cc -shared -Wl,-soname,"libtokenroute.so.$old" -o "$lib/libtokenroute.so.$old.0.0" \
    -Wl,--whole-archive "$lib/libtokenroute.a" -Wl,--no-whole-archive -lpthread -ldl -lm
  ln -sf "libtokenroute.so.$old.0.0" "$lib/libtokenroute.so.$old"
  cc -std=c99 -I"$prefix/include" examples/c/routed_step.c "$lib/libtokenroute.so.$old" \
    -Wl,-rpath,"$lib" -o "$tmp/old_program"
  readelf -d "$tmp/old_program" | grep -q "NEEDED.*\[libtokenroute.so.$old\]" || fail "stand-in program does not need .so.$old"
  echo "--- cargo cinstall again over the prefix that holds libtokenroute.so.$old"
  cargo cinstall --release --prefix "$prefix" --libdir lib >"$tmp/cinstall2.log" 2>&1 ||
    { cat "$tmp/cinstall2.log"; fail "second cargo cinstall failed"; }
  [ -e "$lib/libtokenroute.so.$old" ] || fail "installing ABI $abi removed libtokenroute.so.$old"
  [ "$(readlink -f "$lib/libtokenroute.so")" = "$(readlink -f "$so")" ] || fail "dev link does not lead to ABI $abi"
  "$tmp/old_program" >/dev/null || fail "the program linked against .so.$old no longer runs"
  echo "ABI $old and $abi coexist: $(cd "$lib" && ls libtokenroute.so* | tr '\n' ' ')"
fi

check_outputs() { # $1 = C program, $2 = C++ program, $3 = reference
  "$1" >"$tmp/out_c"
  "$2" >"$tmp/out_cpp"
  cmp -s "$tmp/out_c" "$tmp/out_cpp" || fail "$1 and $2 differ"
  "$3" <"$tmp/out_c" || fail "the reference rejects $1"
}
needs() { # $1 = program, $2 = yes|no: does it need libtokenroute.so.<ABI>?
  if readelf -d "$1" | grep -q "NEEDED.*\[libtokenroute.so.$abi\]"; then
    [ "$2" = yes ] || fail "$1 should be linked statically"
  else
    [ "$2" = no ] || fail "$1 does not need libtokenroute.so.$abi"
  fi
}

echo "--- pkg-config, shared"
b=$tmp/pc
mkdir -p "$b"
cc -std=c99 -Wall -Wextra -Werror -pedantic examples/c/routed_step.c \
  $(pkg-config --cflags --libs tokenroute) -Wl,-rpath,"$lib" -o "$b/routed_step"
c++ -std=c++17 -Wall -Wextra -Werror -pedantic examples/cpp/routed_step.cpp \
  $(pkg-config --cflags --libs tokenroute) -Wl,-rpath,"$lib" -o "$b/routed_step_cpp"
cc -std=c99 -Wall -Wextra -Werror -pedantic examples/c/reference.c -lm -o "$b/reference"
needs "$b/routed_step" yes
needs "$b/routed_step_cpp" yes
check_outputs "$b/routed_step" "$b/routed_step_cpp" "$b/reference"

echo "--- pkg-config --static (Libs.private)"
static_libs=$(pkg-config --static --libs tokenroute | sed 's/-ltokenroute\b/-l:libtokenroute.a/')
cc -std=c99 examples/c/routed_step.c $(pkg-config --cflags tokenroute) $static_libs -o "$b/routed_step_static"
c++ -std=c++17 examples/cpp/routed_step.cpp $(pkg-config --cflags tokenroute) $static_libs -o "$b/routed_step_cpp_static"
needs "$b/routed_step_static" no
needs "$b/routed_step_cpp_static" no
check_outputs "$b/routed_step_static" "$b/routed_step_cpp_static" "$b/reference"

for mode in OFF ON; do
  echo "--- CMake find_package(tokenroute CONFIG), TOKENROUTE_STATIC=$mode"
  b=$tmp/cmake-$mode
  cmake -S examples -B "$b" -DCMAKE_PREFIX_PATH="$prefix" -DTOKENROUTE_STATIC=$mode \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log"; fail "cmake configure failed"; }
  cmake --build "$b" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "cmake build failed"; }
  needs "$b/routed_step" "$([ $mode = ON ] && echo no || echo yes)"
  check_outputs "$b/routed_step" "$b/routed_step_cpp" "$b/routed_step_reference"
done

echo "--- find_package(tokenroute 99.0) must fail at configure time"
if cmake -S examples -B "$tmp/cmake-new" -DCMAKE_PREFIX_PATH="$prefix" \
  -DTOKENROUTE_MIN_VERSION=99.0 >"$tmp/cmake-new.log" 2>&1; then
  fail "find_package accepted version 99.0"
fi
# CMake names the requested version and the installed one it considered.
{ grep -q 'requested version "99.0"' "$tmp/cmake-new.log" && grep -q "version: $version" "$tmp/cmake-new.log"; } ||
  { cat "$tmp/cmake-new.log"; fail "no version message"; }
grep -A3 "Could not find a configuration file\|not compatible\|version" "$tmp/cmake-new.log" | head -8

echo "install-check: ok"
