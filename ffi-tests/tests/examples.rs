//! The engine examples (examples/c, examples/cpp), built against include/ and the built
//! library and run on every ISA level: the C and C++ routed layer steps print the same
//! bytes, and the plain-loop f64 reference (examples/c/reference.c) accepts them. The
//! README's C snippet is the example's marked region, verbatim. (.ci/install-check.sh
//! builds the same examples against the installed package, with pkg-config and CMake.)

use std::io::Write;
use std::process::{Command, Stdio};
use tokenroute_ffi_tests::{build_program, levels, root, run_program, Link};

/// `input | exe`; fails the test unless the program exits 0. Returns its stdout.
fn pipe_into(exe: &std::path::Path, input: &str) -> String {
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the reference");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} rejected the step's output:\n{stdout}\n{}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn c_and_cpp_routed_steps_agree_bit_for_bit_and_with_the_reference() {
    let c = build_program(
        "../examples/c/routed_step.c",
        false,
        "c99",
        Link::Shared,
        &[],
    );
    let cpp = build_program(
        "../examples/cpp/routed_step.cpp",
        true,
        "c++17",
        Link::Static,
        &[],
    );
    let reference = build_program("../examples/c/reference.c", false, "c99", Link::Shared, &[]);
    let mut first: Option<String> = None;
    for isa in levels() {
        let out_c = run_program(&c, isa.name(), &[]);
        let out_cpp = run_program(&cpp, isa.name(), &[]);
        assert_eq!(out_c, out_cpp, "C and C++ steps differ on {}", isa.name());
        assert!(
            out_c.starts_with("kept 0 "),
            "token 0 is forced: {}",
            &out_c[..40]
        );
        // Every level gives the same bytes (scores, selection, attention and the
        // scatter-add are bit-identical across levels).
        match &first {
            None => first = Some(out_c.clone()),
            Some(f) => assert_eq!(f, &out_c, "{} differs from the first level", isa.name()),
        }
        let verdict = pipe_into(&reference, &out_c);
        assert!(verdict.starts_with("reference: ok"), "{verdict}");
    }
    // The reference is not a rubber stamp: a changed kept token or a changed value fails.
    let good = first.unwrap();
    let bad_idx = good.replacen("kept 0 ", "kept 1 ", 1);
    let bad_val = {
        let line = good.lines().nth(1).unwrap();
        let first_val = line.split(' ').nth(1).unwrap();
        good.replacen(first_val, "0x1p+3", 1)
    };
    for bad in [bad_idx, bad_val] {
        let status = Command::new(&reference)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin.take().unwrap().write_all(bad.as_bytes())?;
                ch.wait()
            })
            .unwrap();
        assert!(!status.success(), "the reference accepted a wrong output");
    }
}

/// The README's C snippet is the region of examples/c/routed_step.c between its
/// `README-BEGIN: route` and `README-END: route` markers (de-indented), so it compiles
/// (it is part of the example the test above builds and runs).
#[test]
fn readme_c_snippet_is_the_example() {
    let example = std::fs::read_to_string(root().join("examples/c/routed_step.c")).unwrap();
    let begin = example
        .find("/* README-BEGIN: route */\n")
        .expect("begin marker")
        + 26;
    let end = example
        .find("    /* README-END: route */")
        .expect("end marker");
    let region: String = example[begin..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block_start = readme.find("```c\n").expect("a C block in the README") + 5;
    let block_end = block_start + readme[block_start..].find("```").unwrap();
    let block = &readme[block_start..block_end];
    assert!(
        block.contains(region.trim_end()),
        "the README's C block is not examples/c/routed_step.c's README region:\n--- region\n{region}\n--- README\n{block}"
    );
}
