//! The `skm` CLI against `skm dev`, as a user types it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SKM: &str = env!("CARGO_BIN_EXE_skm");

/// A base port with four free ports after it.
fn free_port_base() -> u16 {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base < 60000 && (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no four consecutive free ports");
}

fn skm(profile: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(SKM)
        .args(args)
        .env("SKM_PROFILE", profile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap().trim().to_owned()
}

#[test]
fn dev_stack_round_trip_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_base().to_string();
    let mut dev = Command::new(SKM)
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args(["--port-base", &base])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(dev.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let profile = line.trim().strip_prefix("export SKM_PROFILE=").expect("export line").to_owned();

    let status = skm(&profile, &["status", "--wait", "60"], b"");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stdout));
    assert!(String::from_utf8_lossy(&status.stdout).contains("unsealed"));

    let ks = stdout(&skm(&profile, &["keystore", "create", "cli", "--allow-ip", "127.0.0.1"], b""));
    assert_eq!(ks.len(), 32, "an id alone on stdout: {ks}");
    let key = stdout(&skm(&profile, &["key", "create", "cli", "k1", "--type", "aes-256"], b""));
    let ct = stdout(&skm(&profile, &["encrypt", &key, "--aad", "ctx"], b"hello from the CLI"));
    let pt = skm(&profile, &["decrypt", &key, "--aad", "ctx"], ct.as_bytes());
    assert_eq!(pt.stdout, b"hello from the CLI");
    let json = stdout(&skm(&profile, &["--json", "keystore", "list"], b""));
    assert!(json.contains("\"name\":\"cli\""), "{json}");

    // 1: refused or invalid, with the gRPC code and the server's message.
    let wrong = skm(&profile, &["decrypt", &key, "--aad", "other"], ct.as_bytes());
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("INVALID_ARGUMENT: decryption failed"));
    // 2: usage.
    assert_eq!(skm(&profile, &["key", "create"], b"").status.code(), Some(2));
    assert_eq!(
        Command::new(SKM).args(["keystore", "list"]).env_remove("SKM_PROFILE").output().unwrap().status.code(),
        Some(2)
    );

    // Ctrl-C (SIGTERM) stops all three; then the CLI reports unavailable (3).
    let pid = rustix::process::Pid::from_raw(dev.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(dev.wait()));
    let exit = rx.recv_timeout(Duration::from_secs(20)).expect("skm dev did not stop").unwrap();
    assert!(exit.success(), "skm dev exited with {exit}");
    let down = skm(&profile, &["encrypt", &key], b"x");
    assert_eq!(down.status.code(), Some(3), "{}", String::from_utf8_lossy(&down.stderr));
}
