//! A test bed of emulated hosts on this machine (`scripts/testbed.sh`): one network namespace,
//! sshd and system user per host, on a bridge in 198.18.0.0/15. Dropping a [`Testbed`] runs
//! `testbed.sh down`, which ends the test bed's processes by pid and deletes what it made.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What `testbed.sh up` exits with where this machine cannot host a test bed.
const CANNOT_RUN_HERE: i32 = 77;

pub struct Testbed {
    /// The test bed's directory (keys, configs, logs, state).
    pub dir: PathBuf,
    /// `dir/hosts.toml`.
    pub hosts_file: PathBuf,
    /// `dir/ssh_config`, for `ssh -F`.
    pub ssh_config: PathBuf,
    /// The first three octets of its /24, e.g. "198.18.0".
    pub net: String,
    /// The uid of each host's user, in host order.
    pub uids: Vec<u32>,
    /// The root-namespace end of each host's veth, in host order.
    pub veths: Vec<String>,
    /// How long `up` took.
    pub up_took: Duration,
    _parent: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh")
}

impl Testbed {
    /// Brings up `n` hosts, or returns None after saying why on stderr where this machine
    /// cannot (not root, no network namespaces). Under CI (`CI` set) that is a failure.
    pub fn up(n: usize) -> Option<Testbed> {
        let parent = tempfile::Builder::new()
            .prefix("pxtb-")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        let dir = parent.path().join("bed");
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(&dir)
            .arg(n.to_string())
            .output()
            .expect("running scripts/testbed.sh");
        let up_took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(CANNOT_RUN_HERE) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the ssh tests, but: {stderr}"
            );
            eprintln!(
                "SKIPPED: no ssh test bed on this machine: {}",
                stderr.trim()
            );
            return None;
        }
        assert!(out.status.success(), "testbed.sh up failed: {stderr}");
        let state = std::fs::read_to_string(dir.join("testbed.state")).unwrap();
        let field = |kind: &'static str| -> Vec<String> {
            state
                .lines()
                .filter_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))
                .map(String::from)
                .collect()
        };
        let net = field("net").pop().expect("a net in the state file");
        let uids = field("uid")
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let veths = field("link")
            .into_iter()
            .filter(|l| l.starts_with("pxv"))
            .collect();
        Some(Testbed {
            veths,
            hosts_file: dir.join("hosts.toml"),
            ssh_config: dir.join("ssh_config"),
            dir,
            net,
            uids,
            up_took,
            _parent: parent,
        })
    }

    /// The pids of processes that run as one of the test bed's users.
    pub fn user_processes(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
            if uid.is_some_and(|u| self.uids.contains(&u)) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(&self.dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "testbed.sh down {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("testbed.sh down {}: {e}", self.dir.display()),
        }
    }
}
