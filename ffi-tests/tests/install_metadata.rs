//! What `cargo cinstall` installs stays in step with the header and the crate:
//! Cargo.toml's `[package.metadata.capi]` tables (read by cargo-c), the CMake package
//! files in cmake/, and `TKR_ABI_VERSION` / `TKR_VERSION_*` in include/tokenroute.h.
//! `.ci/install-check.sh` then installs for real and builds the examples against it.

use tokenroute_ffi_tests::root;

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The lines of one `[table]` of a TOML file, up to the next table header.
fn table<'a>(toml: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    let mut lines = toml.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "Cargo.toml has no {header}");
    lines
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The string value of `key = "value"` in a table's lines.
fn string_value(lines: &[&str], key: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn header_define(header: &str, name: &str) -> u32 {
    let prefix = format!("#define {name} ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the header lacks {name}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn versions_agree_across_crate_header_cmake_and_soname() {
    let cargo = read("Cargo.toml");
    let header = read("include/tokenroute.h");
    // Every workspace member takes the workspace's version (`version.workspace = true`).
    let version = string_value(&table(&cargo, "workspace.package"), "version")
        .expect("[workspace.package] version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let from_header = format!(
        "{}.{}.{}",
        header_define(&header, "TKR_VERSION_MAJOR"),
        header_define(&header, "TKR_VERSION_MINOR"),
        header_define(&header, "TKR_VERSION_PATCH")
    );
    assert_eq!(version, from_header, "crate version vs TKR_VERSION_*");

    let cmake_version = read("cmake/tokenrouteConfigVersion.cmake");
    let want = format!("set(PACKAGE_VERSION \"{version}\")");
    assert!(
        cmake_version.lines().any(|l| l.trim() == want),
        "cmake/tokenrouteConfigVersion.cmake must contain {want}"
    );

    // SONAME libtokenroute.so.<ABI>: the library version's major is the ABI version and
    // only that component goes into the SONAME.
    let lib = table(&cargo, "package.metadata.capi.library");
    let abi = header_define(&header, "TKR_ABI_VERSION");
    assert_eq!(
        string_value(&lib, "version").as_deref(),
        Some(format!("{abi}.0.0").as_str())
    );
    assert_eq!(
        lib.iter()
            .find_map(|l| l.strip_prefix("version_suffix_components"))
            .map(|v| v.trim_start_matches([' ', '=']).trim()),
        Some("1")
    );
}

#[test]
fn cargo_c_finds_the_package_and_installs_the_committed_files() {
    let cargo = read("Cargo.toml");
    // cargo-c builds only workspace members with a `capi` feature, and enables it.
    assert!(
        table(&cargo, "features")
            .iter()
            .any(|l| l.replace(' ', "") == "capi=[]"),
        "Cargo.toml needs `capi = []` in [features] for cargo cinstall"
    );
    let hdr = table(&cargo, "package.metadata.capi.header");
    assert_eq!(string_value(&hdr, "generation").as_deref(), Some("false"));
    let include = table(&cargo, "package.metadata.capi.install.include").join(" ");
    assert!(include.contains("from = \"include/tokenroute.h\""));

    // The CMake package lands in share/cmake/tokenroute: an asset's `to` would replace
    // that subdirectory, so the data assets carry none.
    let data = table(&cargo, "package.metadata.capi.install.data");
    assert_eq!(
        string_value(&data, "subdirectory").as_deref(),
        Some("cmake/tokenroute")
    );
    let assets: Vec<&str> = data
        .iter()
        .copied()
        .filter(|l| l.contains("from"))
        .collect();
    assert_eq!(assets.len(), 2, "{assets:?}");
    for file in [
        "cmake/tokenrouteConfig.cmake",
        "cmake/tokenrouteConfigVersion.cmake",
    ] {
        let line = assets
            .iter()
            .find(|l| l.contains(&format!("\"{file}\"")))
            .unwrap_or_else(|| panic!("{file} is not a data asset"));
        assert!(!line.contains(" to ="), "{line}");
        assert!(root().join(file).exists(), "{file}");
    }
}

/// The release shared library stays under the 3 MB `.ci/install-check.sh` asserts for the
/// installed one (checked here too, so that growth shows in the test command, not only
/// at the end of CI). Debug builds carry debug info and are not measured.
#[test]
fn release_shared_library_is_under_3_mb() {
    let dir = tokenroute_ffi_tests::built_library();
    if dir.file_name().and_then(|n| n.to_str()) != Some("release") {
        eprintln!("not a release build: size not checked");
        return;
    }
    let size = std::fs::metadata(dir.join("libtokenroute.so"))
        .unwrap()
        .len();
    assert!(
        size < 3_000_000,
        "libtokenroute.so is {size} bytes (>= 3 MB)"
    );
}
