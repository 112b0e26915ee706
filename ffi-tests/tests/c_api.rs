//! The C and C++ programs in ffi-tests/c and ffi-tests/cpp, built against
//! include/tokenroute.h and the built library (shared and static) under
//! -Wall -Wextra -Werror -pedantic, and run once per supported ISA level with
//! TOKENROUTE_ISA=<level> (each program checks that the active level is that one).
//!
//! Every `*.c` / `*.cpp` file there is picked up automatically. A C file containing
//! `tkr-test: std=c11` is compiled as C11 instead of C99.

use std::path::PathBuf;
use tokenroute::Isa;
use tokenroute_ffi_tests::{build_program, compiler, levels, root, run_program, Link};

fn sources(dir: &str, ext: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(root().join("ffi-tests").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                format!("{dir}/{}", p.file_name().unwrap().to_str().unwrap()),
                text,
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no test programs in ffi-tests/{dir}");
    out
}

fn run_on_every_level(exe: &PathBuf) {
    for isa in levels() {
        let out = run_program(
            exe,
            isa.name(),
            &[("TKR_EXPECT_ISA", &isa.id().to_string())],
        );
        print!("{out}");
    }
}

#[test]
fn c_programs_on_every_level_shared_and_static() {
    for (src, text) in sources("c", "c") {
        let std = if text.contains("tkr-test: std=c11") {
            "c11"
        } else {
            "c99"
        };
        for link in [Link::Shared, Link::Static] {
            let exe = build_program(&src, false, std, link, &[]);
            run_on_every_level(&exe);
        }
    }
}

#[test]
fn cpp_programs_on_every_level() {
    for (src, _) in sources("cpp", "cpp") {
        for link in [Link::Shared, Link::Static] {
            let exe = build_program(&src, true, "c++17", link, &[]);
            run_on_every_level(&exe);
        }
    }
}

#[test]
fn forced_unavailable_level_fails_every_call() {
    let exe = build_program("c/smoke.c", false, "c99", Link::Shared, &[]);
    let mask = tokenroute::supported_isas();
    let mut forced = vec!["no-such-level"];
    forced.extend(
        Isa::ALL
            .into_iter()
            .filter(|i| mask & i.bit() == 0)
            .map(Isa::name),
    );
    for name in forced {
        run_program(&exe, name, &[("TKR_EXPECT_UNAVAILABLE", "1")]);
    }
}

#[test]
fn isa_max_caps_leniently() {
    let exe = build_program("c/smoke.c", false, "c99", Link::Shared, &[]);
    let mask = tokenroute::supported_isas();
    for cap in Isa::ALL {
        // The best supported level whose id is <= the cap's.
        let want = Isa::ALL
            .into_iter()
            .rev()
            .find(|i| mask & i.bit() != 0 && i.id() <= cap.id())
            .unwrap_or(Isa::Scalar);
        run_program(
            &exe,
            "auto",
            &[
                ("TOKENROUTE_ISA_MAX", cap.name()),
                ("TKR_EXPECT_ISA", &want.id().to_string()),
            ],
        );
    }
    // An unknown cap is ignored: the best supported level.
    let best = Isa::ALL
        .into_iter()
        .rev()
        .find(|i| mask & i.bit() != 0)
        .unwrap();
    run_program(
        &exe,
        "auto",
        &[
            ("TOKENROUTE_ISA_MAX", "bogus"),
            ("TKR_EXPECT_ISA", &best.id().to_string()),
        ],
    );
}

/// The header alone compiles in every C and C++ standard, with gcc and (when installed)
/// clang, warnings as errors. Under `CI=true` clang is required.
#[test]
fn header_compiles_in_every_standard() {
    let dir = tokenroute_ffi_tests::profile_dir().join("ffi-test-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let c_src = dir.join("header_only.c");
    let cpp_src = dir.join("header_only.cpp");
    let body = "#include \"tokenroute.h\"\nint main(void) { return (int)tkr_abi_version() - TKR_ABI_VERSION; }\n";
    std::fs::write(&c_src, body).unwrap();
    std::fs::write(&cpp_src, body.replace("(void)", "()")).unwrap();
    let mut compilers: Vec<(String, bool)> = vec![("gcc".into(), false), ("g++".into(), true)];
    let have_clang = std::process::Command::new("clang")
        .arg("--version")
        .output()
        .is_ok();
    if have_clang {
        compilers.push(("clang".into(), false));
        compilers.push(("clang++".into(), true));
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("clang is not installed (required under CI=true; .ci/run installs it)");
    } else {
        eprintln!("clang not installed: checked the header with gcc only");
    }
    for (cc, cpp) in compilers {
        let stds: &[&str] = if cpp {
            &["c++11", "c++14", "c++17", "c++20"]
        } else {
            &["c99", "c11", "c17", "c2x"]
        };
        for std in stds {
            let mut cmd = std::process::Command::new(&cc);
            cmd.args([
                &format!("-std={std}"),
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
            ]);
            cmd.arg("-I").arg(root().join("include"));
            cmd.arg(if cpp { &cpp_src } else { &c_src });
            let out = cmd.output().unwrap_or_else(|e| panic!("running {cc}: {e}"));
            assert!(
                out.status.success(),
                "{cc} -std={std}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The cc crate's own choice of compiler works as well.
    let out = compiler(false, "c99")
        .arg("-fsyntax-only")
        .arg(&c_src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
