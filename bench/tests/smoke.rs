//! The benchmark end to end in smoke mode (a few seconds, tiny counts)
//! against the debug `skm` binary that `cargo test --workspace` builds:
//! the reports exist and are well-formed, every operation ran without an
//! error, every SKM row carries its CPU time per call. Never asserts on
//! speed, nor on any bound of CPU time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The `skm` binary next to this test's binary (built by the skm
/// package's own tests in the same `cargo test --workspace`).
fn skm_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("skm");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// Every SKM row (gRPC and REST) carries CPU time per call: the servers'
/// (kms-api's share of it too) and the load generator's are positive, as
/// any work done takes some CPU time; root-keyd + system-keyd's is there
/// (it may be 0: a cached key needs neither).
fn assert_cpu_per_call(row: &serde_json::Value) {
    for field in ["server_cpu_us_per_call", "kms_api_cpu_us_per_call", "client_cpu_us_per_call"] {
        let us = row[field].as_f64().unwrap_or_else(|| panic!("no {field}: {row}"));
        assert!(us > 0.0, "{field} {us}: {row}");
    }
    let keyd = row["keyd_cpu_us_per_call"].as_f64().unwrap_or_else(|| panic!("no keyd_cpu_us_per_call: {row}"));
    assert!(keyd >= 0.0, "{row}");
    // The parts are within the whole.
    let server = row["server_cpu_us_per_call"].as_f64().unwrap();
    let kms_api = row["kms_api_cpu_us_per_call"].as_f64().unwrap();
    assert!(kms_api + keyd <= server * (1.0 + 1e-9), "{row}");
}

/// Runs `skm-bench --smoke` with `args` into a fresh folder; the folder
/// and its report.json.
fn smoke(args: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_skm-bench"))
        .arg("--smoke")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .arg("--release-binary")
        .arg(skm_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "skm-bench --smoke {args:?} failed:\n{stderr}");
    eprintln!("smoke run {args:?} took {:?}", started.elapsed());
    let json = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    (out, json)
}

#[test]
fn smoke_run_writes_well_formed_reports() {
    let (out, json) = smoke(&[]);
    assert_eq!(json["smoke"], true);
    let rows = json["results"].as_array().unwrap();
    let skm: Vec<&serde_json::Value> = rows.iter().filter(|r| r["system"] == "skm").collect();
    let expected = [
        "noop",
        "get-secret",
        "create-secret",
        "encrypt-1KiB",
        "decrypt-1KiB",
        "encrypt-32KiB",
        "decrypt-32KiB",
        "data-key",
        "batch-encrypt",
        "sign-ed25519",
        "verify-ed25519",
        "sign-ecdsa-p256",
        "verify-ecdsa-p256",
        "sign-rsa-2048",
        "verify-rsa-2048",
        "sign-ml-dsa-65",
        "verify-ml-dsa-65",
        "mac-hmac-sha256",
        "verify-mac-hmac-sha256",
    ];
    // Exactly the expected operations, each once: none dropped, none unaccounted for.
    let mut ran: Vec<&str> = skm.iter().map(|r| r["op"].as_str().unwrap_or_default()).collect();
    ran.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(ran, want, "the smoke run's operations");
    for op in expected {
        let row = skm.iter().find(|r| r["op"] == op).unwrap_or_else(|| panic!("no row for {op}"));
        assert_eq!(row["status"], "ok", "{op}: {row}");
        assert_eq!(row["errors"], 0, "{op}: {row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{op} made no request: {row}");
        assert_cpu_per_call(row);
        assert!(row["store_cpu_us_per_call"].is_null(), "no etcd in this run: {row}");
    }
    assert!(json["settings"]["pin_cores"].is_null(), "not pinned: {}", json["settings"]);
    // The disk's sync cost, measured before the runs.
    let disk = &json["disk_sync"];
    for field in ["overwrite_p50_us", "append_p50_us"] {
        assert!(disk[field].as_f64().is_some_and(|us| us > 0.0), "{field}: {disk}");
    }
    assert!(json["raw"].as_array().unwrap().len() >= expected.len());
    // REST rows on the same stack: encrypt and get-secret, each at every concurrency.
    let rest: Vec<&serde_json::Value> = rows.iter().filter(|r| r["system"] == "skm-rest").collect();
    let mut rest_ops: Vec<&str> = rest.iter().map(|r| r["op"].as_str().unwrap_or_default()).collect();
    rest_ops.sort_unstable();
    rest_ops.dedup();
    assert_eq!(rest_ops, ["encrypt-1KiB", "encrypt-32KiB", "get-secret"], "the REST rows");
    for row in &rest {
        assert_eq!((&row["status"], &row["errors"]), (&serde_json::json!("ok"), &serde_json::json!(0)), "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert_cpu_per_call(row);
    }
    // Smoke mode runs no peer and no scale.
    assert!(rows.iter().all(|r| r["system"] == "skm" || r["system"] == "skm-rest"));
    assert!(json["scale"].as_array().unwrap().is_empty());

    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.starts_with("# SKM benchmark"));
    for op in expected {
        assert!(md.contains(&format!("| {op} |")), "report.md has no row for {op}");
        assert!(md.contains(&format!("| skm | {op} |")), "report.md's CPU table has no row for {op}");
    }
    assert!(md.contains("server CPU µs/call") && md.contains("## CPU per call"), "{md}");
    assert!(md.contains("- disk: write 512 B + fdatasync"), "{md}");

    for name in ["report.png", "report-cpu.png"] {
        let png = std::fs::read(out.path().join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        assert!(png.len() > 10_000, "{name} is suspiciously small ({} bytes)", png.len());
    }
}

/// `--client-cert`: the keystore requires a certificate it issued, so a
/// call succeeds only if the load generator presented one and kms-api
/// accepted it.
#[test]
fn smoke_run_with_a_client_certificate() {
    let (_out, json) = smoke(&["--client-cert", "--ops", "encrypt-1KiB,get-secret"]);
    let rows = json["results"].as_array().unwrap();
    let mut ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap_or_default()).collect();
    ops.sort_unstable();
    assert_eq!(ops, ["encrypt-1KiB", "get-secret"], "SKM rows only, no REST rows");
    for row in rows {
        assert_eq!(row["system"], "skm", "{row}");
        assert_eq!((&row["status"], &row["errors"]), (&serde_json::json!("ok"), &serde_json::json!(0)), "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
    }
    assert!(json["notes"].to_string().contains("--client-cert"), "{}", json["notes"]);
}

/// `--pin-cores` on a machine with two cores or more: the report records
/// the split, and the stack's processes ran (their CPU time is there).
/// With fewer cores, the option is refused with a clear message.
#[test]
fn smoke_run_pinned_to_separate_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        let out = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_skm-bench"))
            .args(["--smoke", "--pin-cores", "--out"])
            .arg(out.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&output.stderr).contains("at least 2"));
        return;
    }
    let (_out, json) = smoke(&["--pin-cores", "--ops", "noop,encrypt-1KiB"]);
    let pin = &json["settings"]["pin_cores"];
    let (client, servers) = (pin["client"].as_array().unwrap(), pin["servers"].as_array().unwrap());
    assert!(!client.is_empty() && !servers.is_empty(), "{pin}");
    assert!(client.iter().all(|c| !servers.contains(c)), "{pin}");
    for row in json["results"].as_array().unwrap() {
        assert_eq!(row["errors"], 0, "{row}");
        assert_cpu_per_call(row);
    }
    assert!(json["notes"].to_string().contains("--pin-cores"), "{}", json["notes"]);
}

/// The etcd topology in smoke mode: a three-member etcd cluster, two
/// kms-api replicas, the user-port connections going round them; the
/// cached reads and a write path all run without an error, and the report
/// says what it measured.
#[test]
fn smoke_run_on_etcd_with_two_replicas() {
    let (_out, json) = smoke(&["--store", "etcd", "--replicas", "2", "--ops", "encrypt-1KiB,get-secret,create-secret"]);
    let rows: Vec<&serde_json::Value> =
        json["results"].as_array().unwrap().iter().filter(|r| r["system"] == "skm").collect();
    let mut ran: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap_or_default()).collect();
    ran.sort_unstable();
    assert_eq!(ran, ["create-secret", "encrypt-1KiB", "get-secret"]);
    for row in rows {
        assert_eq!((&row["status"], &row["errors"]), (&serde_json::json!("ok"), &serde_json::json!(0)), "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert_cpu_per_call(row);
        // The etcd members' share is measured too (it may be 0 for a cached read).
        assert!(row["store_cpu_us_per_call"].as_f64().is_some_and(|us| us >= 0.0), "{row}");
    }
    let notes = json["notes"].to_string();
    assert!(notes.contains("three-member etcd cluster") && notes.contains("2 kms-api replica"), "{notes}");
}
