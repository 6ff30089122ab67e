//! `skm-probe`: what a container can reach, for scratch images that have
//! no shell or network tools. Used by the compose tests (run in a client
//! container, or in a tier's network namespace with
//! `--network container:<id>`) and handy for operators.
//!
//! ```text
//! skm-probe resolve NAME                  "resolved ADDR..." (exit 0) or "unresolved" (exit 1)
//! skm-probe connect HOST:PORT [MILLIS]    "open" (exit 0), or "refused" / "timeout" /
//!                                         "unreachable: ..." / "unresolved" (exit 1)
//! skm-probe scan HOST [FROM [TO]]         one line per open or silent (filtered) TCP port,
//!                                         then a summary; exit 0
//! skm-probe wait SECONDS                  does nothing for that long (keeps a client
//!                                         container up for `docker exec`)
//! ```

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const USAGE: &str = "usage: skm-probe resolve NAME | connect HOST:PORT [MILLIS] | scan HOST [FROM [TO]] | wait SECONDS";

/// Connect timeout of a scan: closed ports on a reachable host answer with
/// a reset at once; only filtered ones wait this long.
const SCAN_TIMEOUT: Duration = Duration::from_millis(300);
const SCAN_THREADS: u32 = 128;
/// Ports that stayed silent in the first pass get this many more tries.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["resolve", name] => resolve(name),
        ["wait", seconds] => match seconds.parse() {
            Ok(s) => {
                std::thread::park_timeout(Duration::from_secs(s));
                ExitCode::SUCCESS
            }
            Err(_) => usage(),
        },
        ["connect", target] => connect(target, 2000),
        ["connect", target, millis] => match millis.parse() {
            Ok(ms) => connect(target, ms),
            Err(_) => usage(),
        },
        ["scan", host] => scan(host, 1, 65535),
        ["scan", host, from] => scan_args(host, from, "65535"),
        ["scan", host, from, to] => scan_args(host, from, to),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn lookup(host: &str) -> Vec<IpAddr> {
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

fn resolve(name: &str) -> ExitCode {
    let ips = lookup(name);
    if ips.is_empty() {
        println!("unresolved");
        return ExitCode::FAILURE;
    }
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    println!("resolved {}", list.join(" "));
    ExitCode::SUCCESS
}

/// One TCP connection attempt, classified.
fn attempt(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            ErrorKind::ConnectionRefused => "refused".to_owned(),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout".to_owned(),
            _ => format!("unreachable: {e}"),
        }),
    }
}

fn connect(target: &str, millis: u64) -> ExitCode {
    let Some((host, port)) = target.rsplit_once(':') else { return usage() };
    let Ok(port) = port.parse::<u16>() else { return usage() };
    let Some(ip) = lookup(host).into_iter().next() else {
        println!("unresolved");
        return ExitCode::FAILURE;
    };
    match attempt(SocketAddr::new(ip, port), Duration::from_millis(millis)) {
        Ok(()) => {
            println!("open");
            ExitCode::SUCCESS
        }
        Err(what) => {
            println!("{what}");
            ExitCode::FAILURE
        }
    }
}

fn scan_args(host: &str, from: &str, to: &str) -> ExitCode {
    match (from.parse(), to.parse()) {
        (Ok(from), Ok(to)) if from >= 1 && from <= to => scan(host, from, to),
        _ => usage(),
    }
}

fn scan(host: &str, from: u16, to: u16) -> ExitCode {
    let Some(ip) = lookup(host).into_iter().next() else {
        println!("unresolved");
        return ExitCode::FAILURE;
    };
    let next = AtomicU32::new(u32::from(from));
    let (refused, open) = (AtomicU32::new(0), AtomicU32::new(0));
    let silent = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..SCAN_THREADS {
            s.spawn(|| {
                loop {
                    let port = next.fetch_add(1, Ordering::Relaxed);
                    let Ok(port) = u16::try_from(port) else { break };
                    if port > to {
                        break;
                    }
                    match attempt(SocketAddr::new(ip, port), SCAN_TIMEOUT) {
                        Ok(()) => {
                            open.fetch_add(1, Ordering::Relaxed);
                            println!("open {port}");
                        }
                        Err(what) if what == "refused" => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            if let Ok(mut ports) = silent.lock() {
                                ports.push(port);
                            }
                        }
                    }
                }
            });
        }
    });
    // A busy host may lose or delay an answer: look again, slowly, before
    // calling a port filtered.
    let mut filtered = 0u32;
    for port in silent.into_inner().unwrap_or_default() {
        let mut last = String::new();
        let answer = (0..RETRIES).find_map(|_| match attempt(SocketAddr::new(ip, port), RETRY_TIMEOUT) {
            Ok(()) => Some("open"),
            Err(what) if what == "refused" => Some("refused"),
            Err(what) => {
                last = what;
                None
            }
        });
        match answer {
            Some("open") => {
                open.fetch_add(1, Ordering::Relaxed);
                println!("open {port}");
            }
            Some(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                filtered += 1;
                println!("filtered {port} {last}");
            }
        }
    }
    println!(
        "scanned {ip} ports {from}-{to}: {} open, {} refused, {} filtered",
        open.into_inner(),
        refused.into_inner(),
        filtered
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_resolves_names_and_addresses() {
        assert_eq!(lookup("127.0.0.1"), vec![IpAddr::from([127, 0, 0, 1])]);
        assert!(lookup("localhost").iter().any(IpAddr::is_loopback));
        assert!(lookup("no-such-host.invalid").is_empty());
    }

    #[test]
    fn attempt_tells_open_from_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(attempt(open, Duration::from_secs(2)), Ok(()));
        drop(listener);
        // The port was just released: nothing listens there now.
        assert_eq!(attempt(open, Duration::from_secs(2)), Err("refused".to_owned()));
    }
}
