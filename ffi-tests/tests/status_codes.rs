//! Every status code has a producer through the C API (ffi-tests/c/status_codes.c).
//!
//! The program is built with `-DTKR_TEST_HOOKS` against a library built with the
//! `test-hooks` cargo feature (so it can reach TKR_STATUS_PANIC through
//! `tkr_test_panic`, which panics inside the guard every entry point uses) and run on
//! every ISA level. The codes it produced must include every code that some function
//! in tokenroute.h documents as a possible result, plus OK and PANIC (which every
//! entry point may return: "No call unwinds into C"). A code defined in the header
//! that no function documents yet (e.g. the index errors before the selection family
//! lands) is listed, not required; once a function documents it, this test fails until
//! status_codes.c produces it.

use std::collections::BTreeSet;
use tokenroute_ffi_tests::{build_program_in, hooks_library, levels, root, run_program, Link};

/// Status names defined in the header.
fn defined(header: &str) -> BTreeSet<String> {
    header
        .lines()
        .filter_map(|l| l.strip_prefix("#define TKR_STATUS_"))
        .map(|l| format!("TKR_STATUS_{}", l.split_whitespace().next().unwrap()))
        .collect()
}

/// Status names a function's documentation comment gives as results: those mentioned
/// after its first "return" (any case), except quoted ones (names given as examples,
/// like tkr_status_string's).
fn documented(header: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut comment = String::new();
    for line in header.lines() {
        let t = line.trim_start();
        if let Some(c) = t.strip_prefix("//") {
            comment.push_str(c);
            comment.push(' ');
            continue;
        }
        if t.contains("tkr_") && t.contains('(') && !t.starts_with("#define") {
            let from = comment
                .to_ascii_lowercase()
                .find("return")
                .unwrap_or(comment.len());
            let mut rest = &comment[from..];
            while let Some(i) = rest.find("TKR_STATUS_") {
                if i > 0 && rest.as_bytes()[i - 1] == b'"' {
                    rest = &rest[i + 11..];
                    continue;
                }
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                out.insert(name.trim_end_matches('_').to_string());
                rest = &rest[i + 11..];
            }
        }
        comment.clear();
    }
    out
}

#[test]
fn every_documented_status_is_produced_through_the_c_api() {
    let header = std::fs::read_to_string(root().join("include/tokenroute.h")).unwrap();
    let defined = defined(&header);
    let documented = documented(&header);
    assert!(
        documented.contains("TKR_STATUS_OVERLAP"),
        "header parsing found {documented:?}"
    );
    for d in &documented {
        // "TKR_STATUS_UNKNOWN" is tkr_status_string's name for codes that do not exist.
        assert!(
            defined.contains(d) || d == "TKR_STATUS_UNKNOWN",
            "documented status {d} is not defined"
        );
    }
    let documented: BTreeSet<String> = documented.intersection(&defined).cloned().collect();
    let mut required = documented.clone();
    required.insert("TKR_STATUS_OK".into());
    required.insert("TKR_STATUS_PANIC".into());

    let lib = hooks_library();
    let exe = build_program_in(
        lib,
        "-hooks",
        "c/status_codes.c",
        false,
        "c99",
        Link::Shared,
        &["-DTKR_TEST_HOOKS"],
    );
    for isa in levels() {
        let out = run_program(
            &exe,
            isa.name(),
            &[("TKR_EXPECT_ISA", &isa.id().to_string())],
        );
        let produced: BTreeSet<String> = out
            .lines()
            .find_map(|l| l.strip_prefix("produced:"))
            .expect("no `produced:` line")
            .split_whitespace()
            .map(String::from)
            .collect();
        let missing: Vec<&String> = required.difference(&produced).collect();
        assert!(
            missing.is_empty(),
            "{}: statuses documented but not produced by c/status_codes.c: {missing:?}",
            isa.name()
        );
        let pending: Vec<&String> = defined.difference(&produced).collect();
        println!(
            "{}: produced {} of {} codes; defined but documented by no function yet: {pending:?}",
            isa.name(),
            produced.len(),
            defined.len()
        );
    }
}

/// The hook exists only in the test-hooks build: the release library and the header
/// do not carry it.
#[test]
fn the_release_library_lacks_the_test_hooks() {
    let header = std::fs::read_to_string(root().join("include/tokenroute.h")).unwrap();
    assert!(!header.contains("tkr_test_"));
    let symbols = std::fs::read_to_string(root().join("include/tokenroute.symbols")).unwrap();
    assert!(!symbols.contains("tkr_test_"));
    let so = tokenroute_ffi_tests::built_library().join("libtokenroute.so");
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("running nm");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tkr_test_"));
    let hooks = hooks_library().join("libtokenroute.so");
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&hooks)
        .output()
        .expect("running nm");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tkr_test_panic"));
}
