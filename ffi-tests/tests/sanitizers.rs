//! The C and C++ test programs under AddressSanitizer + UndefinedBehaviorSanitizer
//! (built with the C compiler's `-fsanitize=address,undefined` against the static
//! library) and under valgrind memcheck (against the shared library), on every ISA
//! level. Every `*.c` / `*.cpp` program in ffi-tests is picked up, plus
//! c/status_codes.c built with `-DTKR_TEST_HOOKS` against the test-hooks library, so
//! the panic path (a panic caught at the C boundary) runs under both as well.
//!
//! The sanitizers instrument the C side (the programs' own buffers, UB in the C code,
//! leaks through malloc); the Rust code is checked under `-Zsanitizer=address`
//! separately (.ci/test) and, here, by valgrind, which sees every instruction.
//!
//! valgrind 3.19 has no AVX-512: under it the CPU reports no AVX-512, so the avx512
//! level is unavailable and the programs run on the levels valgrind reports (scalar and
//! avx2 on x86-64). Without valgrind installed the valgrind test is skipped, unless
//! `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use tokenroute_ffi_tests::{
    build_program_in, built_library, c_std, hooks_library, levels, run_program, sources, Link,
};

const SAN: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];

/// (executable, what) for every program, built with `extra` flags and `link`.
fn programs(tag: &str, link: Link, extra: &[&str]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (src, text) in sources("c", "c") {
        let exe = build_program_in(built_library(), tag, &src, false, c_std(&text), link, extra);
        out.push((exe, src));
    }
    for (src, _) in sources("cpp", "cpp") {
        let exe = build_program_in(built_library(), tag, &src, true, "c++17", link, extra);
        out.push((exe, src));
    }
    let mut hooks = vec!["-DTKR_TEST_HOOKS"];
    hooks.extend_from_slice(extra);
    let exe = build_program_in(
        hooks_library(),
        tag,
        "c/status_codes.c",
        false,
        "c99",
        link,
        &hooks,
    );
    out.push((exe, "c/status_codes.c (test hooks)".into()));
    out
}

#[test]
#[ignore = "long step (.ci/test-long): cargo test --release -p tokenroute-ffi-tests --test sanitizers -- --ignored"]
fn c_and_cpp_programs_under_address_and_ub_sanitizers() {
    let env = [
        (
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1",
        ),
        ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
    ];
    for (exe, what) in programs("-asan-ubsan", Link::Static, SAN) {
        for isa in levels() {
            let id = isa.id().to_string();
            let mut e = env.to_vec();
            e.push(("TKR_EXPECT_ISA", &id));
            let out = run_program(&exe, isa.name(), &e);
            println!("asan+ubsan {what}: {}", out.lines().last().unwrap_or(""));
        }
    }
}

fn have_valgrind() -> bool {
    let found = Command::new("valgrind").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "valgrind is not installed (required under CI=true; .ci/run installs it)"
        );
        eprintln!("valgrind not installed: skipped");
    }
    found
}

/// Runs `exe` under valgrind memcheck with TOKENROUTE_ISA=`isa`; returns stdout.
fn valgrind(exe: &Path, isa: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
        "--track-origins=yes",
        "-q",
    ])
    .arg(exe)
    .env_remove("TOKENROUTE_ISA_MAX")
    .env("TOKENROUTE_ISA", isa);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running valgrind");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "valgrind {} (TOKENROUTE_ISA={isa}) failed ({}):\n{stdout}\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[ignore = "long step (.ci/test-long): cargo test --release -p tokenroute-ffi-tests --test sanitizers -- --ignored"]
fn c_and_cpp_programs_under_valgrind_memcheck() {
    if !have_valgrind() {
        return;
    }
    // The levels the CPU has *as valgrind presents it*.
    let probe_dir = tokenroute_ffi_tests::profile_dir().join("ffi-test-programs");
    std::fs::create_dir_all(&probe_dir).unwrap();
    let probe = probe_dir.join("isa_probe.c");
    std::fs::write(
        &probe,
        "#include <stdio.h>\n#include \"tokenroute.h\"\nint main(void) { printf(\"%u\\n\", tkr_supported_isas()); return 0; }\n",
    )
    .unwrap();
    let probe_exe = build_program_in(
        built_library(),
        "",
        probe.to_str().unwrap(),
        false,
        "c99",
        Link::Shared,
        &[],
    );
    let mask: u32 = valgrind(&probe_exe, "auto", &[]).trim().parse().unwrap();
    let under: Vec<_> = levels()
        .into_iter()
        .filter(|i| mask & i.bit() != 0)
        .collect();
    assert!(under.iter().any(|i| i.name() == "scalar"));
    if levels().iter().any(|i| i.name() == "avx2") {
        assert!(
            under.iter().any(|i| i.name() == "avx2"),
            "valgrind hides avx2"
        );
    }
    println!(
        "valgrind levels: {:?} (of {:?})",
        under.iter().map(|i| i.name()).collect::<Vec<_>>(),
        levels().iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    for (exe, what) in programs("-vg", Link::Shared, &[]) {
        for isa in &under {
            let id = isa.id().to_string();
            let out = valgrind(
                &exe,
                isa.name(),
                &[("TKR_EXPECT_ISA", &id), ("TKR_TEST_ITERS", "10")],
            );
            println!("valgrind {what}: {}", out.lines().last().unwrap_or(""));
        }
    }
}
