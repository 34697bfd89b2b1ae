//! `env.json`: where and when a run was measured (host, CPU, cores, kernel, rustc, git revision
//! and dirty flag, start and end times, the command line), and for runs across machines one
//! entry per host (uname, CPU, cores, kernel, clock offset, the network emulation in force), so
//! a published number can be traced to its machines.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The environment of a run.
#[derive(Clone, Debug, Serialize)]
pub struct EnvInfo {
    pub host: String,
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    pub git_revision: String,
    pub git_dirty: bool,
    pub start: String,
    pub end: Option<String>,
    /// `paxbench run ...` as it was started.
    pub command_line: Vec<String>,
    /// Every host of a run across machines (empty for a local run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEnv>,
    /// The emulated network, if the experiment asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
}

/// One host of a run across machines, as it described itself.
#[derive(Clone, Debug, Serialize)]
pub struct HostEnv {
    /// Its name in the hosts file.
    pub name: String,
    /// `uname -a`.
    pub uname: String,
    /// CPU model.
    pub cpu_model: String,
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Its clock minus this machine's, µs.
    pub clock_offset_us: i64,
    /// Bound on the offset's error, µs.
    pub clock_error_us: u64,
    /// The network emulation in force there (`none`, `node`, `netem`).
    pub network_emulation: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl EnvInfo {
    /// Reads the machine now.
    pub fn capture() -> EnvInfo {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        EnvInfo {
            host: read_trim("/proc/sys/kernel/hostname"),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            rustc: run("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            git_revision: run("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            git_dirty: run("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
            start: now_utc(),
            end: None,
            command_line: std::env::args().collect(),
            hosts: Vec::new(),
            network: None,
        }
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A directory-name timestamp, `YYYYMMDD-HHMMSS`.
pub fn stamp() -> String {
    now_utc()
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string()
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(stamp().len(), 15);
    }
}
