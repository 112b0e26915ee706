//! The committed header equals what the pinned cbindgen generates from src/ffi.
//! `TOKENROUTE_BLESS=1` rewrites it instead of failing.

use tokenroute_ffi_tests::root;

#[test]
fn header_is_up_to_date() {
    let root = root();
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root.join("include/tokenroute.h");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if generated != committed {
        if std::env::var_os("TOKENROUTE_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            eprintln!("rewrote {}", path.display());
            return;
        }
        let diff: Vec<String> = generated
            .lines()
            .zip(committed.lines().chain(std::iter::repeat("<missing>")))
            .enumerate()
            .filter(|(_, (g, c))| g != c)
            .take(10)
            .map(|(i, (g, c))| format!("line {}:\n  generated: {g}\n  committed: {c}", i + 1))
            .collect();
        panic!(
            "include/tokenroute.h is stale ({} vs {} lines); first differences:\n{}\n\
             regenerate with TOKENROUTE_BLESS=1 cargo test -p tokenroute-ffi-tests --test header",
            generated.lines().count(),
            committed.lines().count(),
            diff.join("\n")
        );
    }
}
