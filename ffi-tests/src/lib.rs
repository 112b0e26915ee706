//! Helpers shared by the C ABI tests: where the built library lives, and how to compile
//! and run C/C++ programs against `include/tokenroute.h` with the `cc` crate's
//! compiler discovery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo profile directory this test binary was built into (`target/release`, ...).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Builds `libtokenroute.{so,a}` with the same profile as this test (a no-op when they
/// are fresh) and returns the profile directory holding them.
pub fn built_library() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let profile = dir.file_name().unwrap().to_str().unwrap().to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = dir.parent().unwrap();
        let status = Command::new(cargo)
            .args(["build", "--lib", "-p", "tokenroute", "--profile"])
            .arg(if profile == "debug" { "dev" } else { &profile })
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(root())
            .status()
            .expect("running cargo build for the library");
        assert!(status.success(), "cargo build of the library failed");
        for f in ["libtokenroute.so", "libtokenroute.a"] {
            assert!(
                dir.join(f).exists(),
                "{} missing after the build",
                dir.join(f).display()
            );
        }
        dir
    })
}

/// The C or C++ compiler the `cc` crate picks for this host, configured for a test
/// program: warnings as errors, the given language standard.
pub fn compiler(cpp: bool, std: &str) -> Command {
    let target = target_triple();
    let tool = cc::Build::new()
        .cpp(cpp)
        .target(&target)
        .host(&target)
        .opt_level(1)
        .debug(true)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let mut cmd = tool.to_command();
    cmd.args([
        &format!("-std={std}"),
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
    ]);
    cmd.arg("-I").arg(root().join("include"));
    cmd
}

fn target_triple() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" => format!("{arch}-unknown-linux-gnu"),
        "macos" => format!("{arch}-apple-darwin"),
        os => format!("{arch}-unknown-{os}"),
    }
}

/// How a test program is linked against the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `libtokenroute.so`, found through an rpath.
    Shared,
    /// `libtokenroute.a` plus the system libraries Rust's std needs.
    Static,
}

/// Compiles `source` (under ffi-tests/) into an executable in a scratch directory.
pub fn build_program(source: &str, cpp: bool, std: &str, link: Link, extra: &[&str]) -> PathBuf {
    build_program_in(built_library(), "", source, cpp, std, link, extra)
}

/// [`build_program`] against the library files in `lib` (e.g. [`hooks_library`]), the
/// executable's name suffixed with `tag` (so that variants, e.g. sanitizer builds, do
/// not overwrite each other).
pub fn build_program_in(
    lib: &Path,
    tag: &str,
    source: &str,
    cpp: bool,
    std: &str,
    link: Link,
    extra: &[&str],
) -> PathBuf {
    let src = root().join("ffi-tests").join(source);
    let out_dir = lib.join("ffi-test-programs");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = Path::new(source).file_stem().unwrap().to_str().unwrap();
    let exe = out_dir.join(format!("{stem}-{std}-{link:?}{tag}").replace('+', "x"));
    let mut cmd = compiler(cpp, std);
    // Tests that build the same program run in parallel: link to a private name, then
    // rename over the shared one (atomic; a copy already running keeps its file).
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmp = exe.with_extension(format!(
        "tmp{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    cmd.args(extra).arg(&src).arg("-o").arg(&tmp);
    match link {
        Link::Shared => {
            cmd.arg(lib.join("libtokenroute.so"));
            cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libtokenroute.a"));
            cmd.args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    if !cpp {
        cmd.arg("-lm");
    }
    let out = cmd.output().expect("running the C compiler");
    assert!(
        out.status.success(),
        "compiling {source} ({std}, {link:?}) failed:\n{:?}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("renaming the built test program");
    exe
}

/// Builds the library with the `test-hooks` cargo feature (src/ffi/testing.rs:
/// `tkr_test_panic`) into its own target directory, `target/test-hooks` (debug
/// profile: it only serves the status tests), so the release library, whose exported
/// symbols are checked, never carries the hooks. Returns the directory holding
/// `libtokenroute.{so,a}`.
pub fn hooks_library() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target_dir = profile_dir().parent().unwrap().join("test-hooks");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--lib",
                "-p",
                "tokenroute",
                "--features",
                "test-hooks",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            // Unoptimised, without debug info or incremental state: the quickest build of
            // this second copy of the library.
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_INCREMENTAL", "0")
            .current_dir(root())
            .status()
            .expect("running cargo build for the test-hooks library");
        assert!(
            status.success(),
            "cargo build of the test-hooks library failed"
        );
        let dir = target_dir.join("debug");
        assert!(dir.join("libtokenroute.so").exists());
        dir
    })
}

/// A C source whose file contains `tkr-test: std=c11` is compiled as C11, else C99.
pub fn c_std(text: &str) -> &'static str {
    if text.contains("tkr-test: std=c11") {
        "c11"
    } else {
        "c99"
    }
}

/// The C (`c/*.c`) or C++ (`cpp/*.cpp`) test sources, as (path under ffi-tests, text).
pub fn sources(dir: &str, ext: &str) -> Vec<(String, String)> {
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

/// Runs a test program with `TOKENROUTE_ISA=<isa>` and returns its stdout; fails the
/// test on a non-zero exit, showing its output.
pub fn run_program(exe: &Path, isa: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(exe);
    cmd.env_remove("TOKENROUTE_ISA_MAX")
        .env("TOKENROUTE_ISA", isa);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running a test program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} with TOKENROUTE_ISA={isa} failed ({}):\n{stdout}\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The ISA levels to run the programs on: every level this CPU supports; a level named
/// in `TOKENROUTE_REQUIRE_ISAS` that is unsupported fails the test.
pub fn levels() -> Vec<tokenroute::Isa> {
    let mask = tokenroute::supported_isas();
    if let Ok(req) = std::env::var("TOKENROUTE_REQUIRE_ISAS") {
        for name in req.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let isa = tokenroute::Isa::from_name(name)
                .unwrap_or_else(|| panic!("unknown level {name:?}"));
            assert!(
                mask & isa.bit() != 0,
                "TOKENROUTE_REQUIRE_ISAS names {name}, which this CPU lacks"
            );
        }
    }
    tokenroute::Isa::ALL
        .into_iter()
        .filter(|i| mask & i.bit() != 0)
        .collect()
}
