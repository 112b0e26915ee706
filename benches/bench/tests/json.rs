//! `tokenroute-bench --quick --json FILE` runs to completion (every check passing on
//! every level) and writes a document that validates against benches/bench/schema.json.
//! The validator covers the JSON Schema keywords the schema uses: type, const, enum,
//! required, properties, items, minimum.

use serde_json::Value;
use std::process::Command;

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "null" => v.is_null(),
        other => panic!("schema uses unsupported type {other}"),
    }
}

fn validate(v: &Value, s: &Value, path: &str, errors: &mut Vec<String>) {
    let known = [
        "$schema",
        "$id",
        "title",
        "description",
        "type",
        "const",
        "enum",
        "required",
        "properties",
        "items",
        "minimum",
    ];
    for k in s.as_object().unwrap().keys() {
        assert!(
            known.contains(&k.as_str()),
            "schema keyword {k} at {path} is not supported by this validator"
        );
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(v, t),
            Value::Array(ts) => ts.iter().any(|t| type_ok(v, t.as_str().unwrap())),
            _ => panic!("bad type at {path}"),
        };
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if v != c {
            errors.push(format!("{path}: {v} != {c}"));
        }
    }
    if let Some(Value::Array(opts)) = s.get("enum") {
        if !opts.contains(v) {
            errors.push(format!("{path}: {v} not in {opts:?}"));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            errors.push(format!("{path}: {x} < {min}"));
        }
    }
    if let Some(Value::Array(req)) = s.get("required") {
        for r in req {
            if v.get(r.as_str().unwrap()).is_none() {
                errors.push(format!("{path}: missing {}", r.as_str().unwrap()));
            }
        }
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        for (k, sub) in props {
            if let Some(x) = v.get(k) {
                validate(x, sub, &format!("{path}.{k}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(x, items, &format!("{path}[{i}]"), errors);
        }
    }
}

#[test]
fn quick_run_writes_schema_valid_json() {
    let dir = std::env::temp_dir().join(format!("tokenroute-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("quick.json");
    let status = Command::new(env!("CARGO_BIN_EXE_tokenroute-bench"))
        // One thread: every case and every check on every level, at half the time of the
        // default (1 and all cores); the thread-count split has its own tests.
        .args(["--quick", "--threads", "1", "--json"])
        .arg(&out)
        .env_remove("TOKENROUTE_ISA")
        .env_remove("TOKENROUTE_ISA_MAX")
        .status()
        .expect("running tokenroute-bench");
    assert!(
        status.success(),
        "tokenroute-bench --quick failed (a check mismatch exits with 1)"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.json")).unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    validate(&doc, &schema, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
    // Every supported level appears, and every check passed.
    let results = doc["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for level in doc["levels"].as_array().unwrap() {
        assert!(
            results.iter().any(|r| &r["level"] == level),
            "no result on level {level}"
        );
    }
    assert!(results.iter().all(|r| r["ok"] == Value::Bool(true)));
    // --compare reads two such files.
    let status = Command::new(env!("CARGO_BIN_EXE_tokenroute-bench"))
        .arg("--compare")
        .arg(&out)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validator_rejects_bad_documents() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.json")).unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    validate(
        &serde_json::json!({"schema": "other", "quick": 3}),
        &schema,
        "$",
        &mut errors,
    );
    assert!(errors.iter().any(|e| e.contains("missing results")));
    assert!(errors.iter().any(|e| e.contains("$.schema")));
    assert!(errors.iter().any(|e| e.contains("$.quick")));
}
