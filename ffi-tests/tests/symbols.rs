//! The shared library exports exactly the symbols listed in include/tokenroute.symbols.
//! `TOKENROUTE_BLESS=1` rewrites the list instead of failing.

use std::process::Command;
use tokenroute_ffi_tests::{built_library, root};

#[test]
fn exported_symbols_match_the_committed_list() {
    let so = built_library().join("libtokenroute.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("running nm");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut exported = Vec::new();
    let mut foreign = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (kind, name) = match parts.as_slice() {
            [_, kind, name] => (*kind, *name),
            _ => continue,
        };
        if !matches!(kind, "T" | "D" | "B" | "R" | "W" | "V") {
            continue;
        }
        if name.starts_with("tkr_") {
            exported.push(name.to_string());
        } else {
            foreign.push(name.to_string());
        }
    }
    exported.sort();
    assert!(
        foreign.is_empty(),
        "exported symbols without the tkr_ prefix: {foreign:?}"
    );
    let path = root().join("include/tokenroute.symbols");
    let want = exported.join("\n") + "\n";
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != want {
        if std::env::var_os("TOKENROUTE_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let c: Vec<&str> = committed.lines().collect();
        let added: Vec<&String> = exported
            .iter()
            .filter(|s| !c.contains(&s.as_str()))
            .collect();
        let removed: Vec<&&str> = c
            .iter()
            .filter(|s| !exported.iter().any(|e| e == *s))
            .collect();
        panic!("exported symbols changed: added {added:?}, removed {removed:?} (TOKENROUTE_BLESS=1 to accept)");
    }
}

#[test]
fn every_listed_symbol_is_declared_in_the_header() {
    let header = std::fs::read_to_string(root().join("include/tokenroute.h")).unwrap();
    let list = std::fs::read_to_string(root().join("include/tokenroute.symbols")).unwrap();
    for sym in list.lines().filter(|l| !l.is_empty()) {
        assert!(
            header.contains(&format!("{sym}(")),
            "{sym} is exported but not declared in tokenroute.h"
        );
    }
}
