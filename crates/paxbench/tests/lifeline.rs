//! `paxbench node --exit-on-stdin-eof`: a node whose stdin closes shuts down by itself, as a
//! node started over ssh must when its controller dies; `--remove-on-lifeline-loss DIR` then
//! removes DIR, and only on that path.
//!
//! Loopback only; every process is started here and ended here, by pid.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A base port with one free UDP port on 127.0.0.1; each call starts its search elsewhere.
fn free_port() -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16 % 2000) * 13 + call * 1013;
    (0..500u16)
        .map(|i| 20_000 + (seed + i * 37) % 30_000)
        .find(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

/// A one-node cluster in `work`, and a node of it with a piped stdin.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(work: &Path, extra: &[&str]) -> Node {
        std::fs::create_dir_all(work).unwrap();
        let port = free_port();
        let certs = Command::new(env!("CARGO_BIN_EXE_paxbench"))
            .args(["certs", "--out"])
            .arg(work)
            .args(["--nodes", "1", "--base-port", &port.to_string()])
            .output()
            .unwrap();
        assert!(certs.status.success(), "{certs:?}");
        let log = work.parent().unwrap().join(format!("node-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_paxbench"))
            .args(["node", "--cluster"])
            .arg(work.join("cluster.toml"))
            .args(["--id", "0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node { child, log };
        node.wait_for_log("node starting");
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&mut self, what: &str) {
        let start = Instant::now();
        while !self.log().contains(what) {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the node exited early: {}",
                self.log()
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {what:?} in: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `limit` for the node to exit.
    fn exits_within(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn closing_stdin_stops_the_node_and_removes_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let mut node = Node::start(
        &work,
        &[
            "--exit-on-stdin-eof",
            "--remove-on-lifeline-loss",
            work.to_str().unwrap(),
        ],
    );
    // Input on the lifeline is ignored.
    use std::io::Write;
    let mut stdin = node.child.stdin.take().unwrap();
    stdin.write_all(b"anything\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(node.child.try_wait().unwrap().is_none(), "{}", node.log());
    drop(stdin);
    let (status, took) = node
        .exits_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after stdin closed: {}", node.log()));
    eprintln!("the node exited {took:?} after its stdin closed");
    assert!(status.success(), "{status:?}: {}", node.log());
    let log = node.log();
    assert!(log.contains("lifeline"), "{log}");
    assert!(!work.exists(), "{} is still there", work.display());
}

#[test]
fn sigterm_stops_the_node_but_keeps_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let mut node = Node::start(
        &work,
        &[
            "--exit-on-stdin-eof",
            "--remove-on-lifeline-loss",
            work.to_str().unwrap(),
        ],
    );
    node.sigterm();
    let (status, _) = node
        .exits_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM: {}", node.log()));
    assert!(status.success(), "{status:?}");
    assert!(
        work.join("cluster.toml").exists(),
        "SIGTERM removed the directory"
    );
}

#[test]
fn a_heartbeat_keeps_the_node_and_silence_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        &tmp.path().join("work"),
        &["--exit-on-stdin-eof", "--lifeline-timeout", "1"],
    );
    use std::io::Write;
    let mut stdin = node.child.stdin.take().unwrap();
    let beating = Instant::now();
    while beating.elapsed() < Duration::from_millis(2500) {
        stdin.write_all(b"\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node stopped despite the heartbeat: {}",
        node.log()
    );
    // Silence, with stdin still open (a link that dropped).
    let (status, took) = node
        .exits_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s into the silence: {}", node.log()));
    eprintln!("the node exited {took:?} into a silence of its 1 s lifeline timeout");
    assert!(status.success(), "{status:?}");
    assert!(node.log().contains("nothing on stdin"), "{}", node.log());
    drop(stdin);
}

#[test]
fn without_the_flag_stdin_is_not_a_lifeline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("work"), &[]);
    drop(node.child.stdin.take());
    assert!(
        node.exits_within(Duration::from_millis(1500)).is_none(),
        "the node stopped when its stdin closed: {}",
        node.log()
    );
}

#[test]
fn a_directory_that_must_not_go_is_refused_before_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let certs = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["certs", "--out"])
        .arg(&work)
        .args(["--nodes", "1", "--base-port", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(certs.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["node", "--cluster"])
        .arg(work.join("cluster.toml"))
        .args([
            "--id",
            "0",
            "--exit-on-stdin-eof",
            "--remove-on-lifeline-loss",
            "/",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to remove"), "{err}");
    // The removal needs the lifeline.
    let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["node", "--cluster"])
        .arg(work.join("cluster.toml"))
        .args(["--id", "0", "--remove-on-lifeline-loss"])
        .arg(&work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--exit-on-stdin-eof"),
        "{out:?}"
    );
}
