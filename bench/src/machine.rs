//! What machine the figures come from.

use serde::Serialize;

/// The machine a report was made on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    /// Logical CPUs this process may use.
    pub(crate) cores: usize,
    /// CPU model (/proc/cpuinfo).
    pub(crate) cpu: String,
    /// Memory (/proc/meminfo MemTotal), bytes.
    pub(crate) memory_bytes: u64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// Distribution (/etc/os-release).
    pub(crate) os: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Describes this machine (unknown fields are empty or 0).
pub(crate) fn describe() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let memory_bytes = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory_bytes,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        os,
    }
}

impl Machine {
    /// One line for the report.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} cores, {}, {:.1} GiB memory, Linux {}{}",
            self.cores,
            if self.cpu.is_empty() { "unknown CPU" } else { &self.cpu },
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            if self.os.is_empty() { String::new() } else { format!(" ({})", self.os) }
        )
    }
}
