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

/// The header without its comments.
fn header_code() -> String {
    let text = std::fs::read_to_string(root().join("include/tokenroute.h")).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = &r[r.find("*/").expect("unterminated comment") + 2..];
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = &r[r.find('\n').unwrap_or(r.len())..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn identifiers(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.as_bytes()[0].is_ascii_digit())
        .map(str::to_string)
        .collect()
}

/// Every name the header declares (macros, types, struct tags, functions) carries the
/// TKR_ / tkr_ prefix, so that it cannot collide with an engine's own names. The
/// include guard is TOKENROUTE_H.
#[test]
fn every_declared_name_carries_the_prefix() {
    const C_WORDS: &[&str] = &[
        "typedef", "struct", "const", "void", "uint8_t", "uint16_t", "uint32_t", "uint64_t",
        "size_t", "float", "double", "bool", "char", "extern", "int", "unsigned",
    ];
    let code = header_code();
    let mut declared: Vec<(String, &str)> = Vec::new();
    let mut body = String::new();
    for line in code.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#define") {
            let name = identifiers(rest)
                .into_iter()
                .next()
                .expect("#define without a name");
            declared.push((name, "macro"));
        } else if !t.starts_with('#') {
            body.push_str(line);
            body.push('\n');
        }
    }
    // Declarations end at ';' (or at '{' for a struct body); struct fields are skipped.
    let mut depth = 0;
    let mut stmt = String::new();
    for c in body.replace("extern \"C\" {", "").chars() {
        match c {
            '{' => {
                if depth == 0 {
                    for w in identifiers(&stmt).windows(2) {
                        if w[0] == "struct" {
                            declared.push((w[1].clone(), "struct tag"));
                        }
                    }
                }
                depth += 1;
                stmt.push(c);
            }
            '}' => {
                depth -= 1;
                stmt.push(c);
            }
            ';' if depth == 0 => {
                let s = stmt.trim().to_string();
                let words = identifiers(&s);
                if s.starts_with("typedef") {
                    // `typedef R (*name)(params);` declares `name`, not its last parameter.
                    let name = match s.find("(*") {
                        Some(i) => identifiers(&s[i + 2..])
                            .into_iter()
                            .next()
                            .expect("a function pointer type name"),
                        None => words.last().unwrap().clone(),
                    };
                    declared.push((name, "typedef"));
                } else if let Some(open) = s.find('(') {
                    let name = identifiers(&s[..open]).pop().expect("a function name");
                    declared.push((name, "function"));
                }
                stmt.clear();
            }
            _ => {
                if depth == 0 || c != '\n' {
                    stmt.push(c);
                }
            }
        }
    }
    assert!(declared.iter().filter(|(_, k)| *k == "function").count() >= 20);
    assert!(declared.iter().filter(|(_, k)| *k == "macro").count() >= 20);
    let bad: Vec<String> = declared
        .iter()
        .filter(|(n, k)| {
            let ok = match *k {
                "macro" => n.starts_with("TKR_") || n == "TOKENROUTE_H",
                _ => n.starts_with("tkr_"),
            };
            !ok && !C_WORDS.contains(&n.as_str())
        })
        .map(|(n, k)| format!("{k} {n}"))
        .collect();
    assert!(
        bad.is_empty(),
        "names without the TKR_/tkr_ prefix: {bad:?}"
    );
}

/// Every *_init function returns tkr_status (TKR_STATUS_NULL_POINTER for NULL).
#[test]
fn init_functions_agree_on_their_return_type() {
    let code = header_code().replace('\n', " ");
    let mut n = 0;
    for (i, _) in code.match_indices("_init(") {
        let before = &code[..i];
        let words = identifiers(before);
        let name = words.last().unwrap();
        let ret = &words[words.len() - 2];
        assert!(name.starts_with("tkr_"), "{name}");
        assert_eq!(ret, "tkr_status", "{name}_init returns {ret}");
        n += 1;
    }
    assert!(n >= 5, "found only {n} init functions");
}
