//! paxbench over ssh, against a test bed of emulated hosts on this machine
//! (`scripts/testbed.sh`: network namespaces with their own sshd and user, on 198.18.0.0/15):
//! `paxbench hosts check`, and the ssh engine starting, stopping and deploying on real sshds.
//!
//! Needs root and network namespaces; elsewhere each test says SKIPPED and passes (under CI,
//! which runs as root, it fails instead). Traffic goes only to the test bed's addresses.
//! Namespaces share this machine's pid space, so remote pids are checked in /proc here.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paxbench::hosts::Hosts;
use paxbench::shell::quote;
use paxbench::ssh::{Ssh, SshError, SshOptions, Stopped};
use support::testbed::Testbed;

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits at most `limit` for `pid` to vanish; how long it took.
fn gone_within(pid: u32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// What a test that waited in vain for `pid` needs to say: whether it still runs, its state
/// and wait channel, and its log.
fn process_report(pid: u32, log: &str) -> String {
    let proc = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let state = proc("status")
        .lines()
        .find(|l| l.starts_with("State:"))
        .map(String::from)
        .unwrap_or_else(|| "not running".into());
    format!(
        "pid {pid}: {state}, wchan {:?}; {log}:\n{}",
        proc("wchan"),
        std::fs::read_to_string(log).unwrap_or_else(|e| format!("unreadable: {e}"))
    )
}

fn hosts_check(file: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["hosts", "check"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hosts_check_passes_on_the_testbed_and_names_a_host_that_refuses() {
    let Some(tb) = Testbed::up(4) else { return };
    eprintln!("testbed.sh up (4 hosts) took {:?}", tb.up_took);

    let start = Instant::now();
    let (ok, stdout, stderr) =
        hosts_check(&tb.hosts_file, &["--base-port", "7000", "--nodes", "3"]);
    eprintln!("hosts check took {:?}:\n{stdout}", start.elapsed());
    assert!(ok, "{stdout}{stderr}");
    for name in ["n1", "n2", "n3", "c1"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"));
        let expected_platform = format!(
            "{} {} (matches)",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        assert!(row.contains(" reachable "), "{row}");
        assert!(row.contains(&expected_platform), "{row}");
        assert!(row.contains("GiB free"), "{row}");
        assert!(row.contains(" ms ± "), "{row}");
        assert!(row.trim_end().ends_with("ok"), "{row}");
        if name.starts_with('n') {
            assert!(row.contains("7000-7002 free"), "{row}");
        }
    }
    assert!(stdout.contains("4 of 4 host(s) ready"), "{stdout}");
    // TCP nodes' ports are checked against the listening TCP sockets instead, or both.
    let (ok, stdout, stderr) = hosts_check(
        &tb.hosts_file,
        &[
            "--base-port",
            "7000",
            "--nodes",
            "3",
            "--transport",
            "quic,tcp",
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    let n1 = stdout.lines().find(|l| l.starts_with("n1 ")).unwrap();
    assert!(
        n1.contains("udp 7000-7002 free; tcp 7000-7002 free"),
        "{n1}"
    );
    let (ok, stdout, stderr) = hosts_check(&tb.hosts_file, &["--transport", "udp"]);
    assert!(
        !ok && stderr.contains("`udp` is not a transport"),
        "{stdout}{stderr}"
    );
    // Same machine: the offset lies within its own error bound (plus a little slack).
    let hosts = Hosts::load(&tb.hosts_file).unwrap();
    let ssh = Ssh::new(&hosts).unwrap();
    let report = paxbench::hosts_check::check(&hosts, &ssh, &Default::default());
    assert!(report.ok(), "{}", report.table());
    for h in &report.hosts {
        let c = h.clock.as_ref().unwrap();
        assert!(
            c.offset_ns.unsigned_abs() <= c.error_ns + 2_000_000,
            "{}: {c:?}",
            h.name
        );
    }
    // Too many nodes for the node hosts is a failure of the file, naming it.
    let (ok, _, stderr) = hosts_check(&tb.hosts_file, &["--nodes", "4"]);
    assert!(
        !ok && stderr.contains("hosts.toml") && stderr.contains("4 node(s)"),
        "{stderr}"
    );

    // A host whose sshd is not where the file says (the wrong port) fails, by name, while the
    // others still pass.
    let bad_dir = tempfile::tempdir().unwrap();
    let config = bad_dir.path().join("ssh_config");
    let user1 = hosts.hosts[0].ssh.split('@').next().unwrap();
    std::fs::write(
        &config,
        format!(
            "Host refuser\n  HostName {}.11\n  Port 2222\n  User {user1}\n\n{}",
            tb.net,
            std::fs::read_to_string(&tb.ssh_config).unwrap()
        ),
    )
    .unwrap();
    let bad = bad_dir.path().join("hosts.toml");
    std::fs::write(
        &bad,
        format!(
            "[ssh]\nconfig = \"ssh_config\"\n\n[[host]]\nname = \"n1\"\nssh = \"{}\"\naddr = \"{}\"\nroles = [\"node\"]\n\n\
             [[host]]\nname = \"refuser\"\nssh = \"refuser\"\naddr = \"{}.200\"\nroles = [\"node\"]\n",
            hosts.hosts[0].ssh, hosts.hosts[0].addr, tb.net
        ),
    )
    .unwrap();
    let start = Instant::now();
    let (ok, stdout, stderr) = hosts_check(&bad, &[]);
    eprintln!(
        "hosts check with a refusing host took {:?}:\n{stdout}{stderr}",
        start.elapsed()
    );
    assert!(!ok);
    assert!(
        stderr.contains("host refuser: unreachable") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("host n1"), "{stderr}");
    let n1 = stdout.lines().find(|l| l.starts_with("n1 ")).unwrap();
    assert!(
        n1.contains(" reachable ") && n1.trim_end().ends_with("ok"),
        "{n1}"
    );
    let refuser = stdout.lines().find(|l| l.starts_with("refuser ")).unwrap();
    assert!(
        refuser.contains("unreachable") && refuser.ends_with("FAIL"),
        "{refuser}"
    );
}

#[test]
fn the_ssh_engine_deploys_spawns_stops_and_keeps_the_lifeline() {
    let Some(tb) = Testbed::up(4) else { return };
    eprintln!("testbed.sh up (4 hosts) took {:?}", tb.up_took);
    let hosts = Hosts::load(&tb.hosts_file).unwrap();
    let opts = SshOptions {
        stop_grace: Duration::from_secs(1),
        ..SshOptions::default()
    };
    let ssh = Ssh::with_options(&hosts, opts).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_paxbench"));

    // deploy_binary: copied once to every host, in parallel; skipped the second time.
    let deploy_all = || {
        let start = Instant::now();
        let deployed: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .hosts
                .iter()
                .map(|h| s.spawn(|| ssh.deploy_binary(h, binary)))
                .collect();
            handles
                .into_iter()
                .map(|j| j.join().unwrap().unwrap())
                .collect()
        });
        (deployed, start.elapsed())
    };
    let size = std::fs::metadata(binary).unwrap().len();
    let (cold, cold_took) = deploy_all();
    let (warm, warm_took) = deploy_all();
    eprintln!(
        "deploy_binary ({:.0} MB) to {} hosts: cold {cold_took:?}, warm {warm_took:?}",
        size as f64 / 1e6,
        hosts.hosts.len()
    );
    assert!(cold.iter().all(|d| d.copied), "{cold:?}");
    assert!(warm.iter().all(|d| !d.copied), "{warm:?}");
    assert_eq!(
        cold.iter().map(|d| &d.path).collect::<Vec<_>>(),
        warm.iter().map(|d| &d.path).collect::<Vec<_>>()
    );
    let n1 = &hosts.hosts[0];
    let bin = &cold[0].path;
    assert!(
        bin.contains(&format!("/.paxbench/bin/{}/paxbench", cold[0].sha256)),
        "{bin}"
    );

    // A real node on n1, with a cluster made there.
    let made = ssh
        .run(
            n1,
            &format!("{} certs --out run1 --nodes 1 --base-port 7100", quote(bin)),
        )
        .unwrap()
        .check()
        .unwrap();
    assert!(made.success());
    let node_cmd = |dir: &str, extra: &str| {
        format!(
            "env RUST_LOG=info {} node --cluster {dir}/cluster.toml --id 0 --exit-on-stdin-eof {extra} 2>>{dir}/node.log",
            quote(bin)
        )
    };

    // spawn learns the program's own pid; stop() ends it by that pid, with SIGTERM.
    let mut node = ssh.spawn(n1, &node_cmd("run1", "")).unwrap();
    let pid = node.pid();
    // `env` replaces itself with paxbench, in the same process.
    let start = Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/exe")).unwrap() != Path::new(bin) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} never became the deployed paxbench"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("node\0--cluster"), "{cmdline:?}");
    let home = ssh.remote_home(n1).unwrap();
    let start = Instant::now();
    loop {
        let grep = ssh
            .run(n1, "grep -q 'node starting' run1/node.log")
            .unwrap();
        if grep.success() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!(
                "no 'node starting' in 60 s (grep: {grep:?}); {}",
                process_report(pid, &format!("{home}/run1/node.log"))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.stop().unwrap(), Stopped::Exited(0));
    assert!(!alive(pid), "pid {pid} survived stop()");
    drop(node);

    // The lifeline, cut on this side: the local ssh dies (as with a killed controller), and
    // the remote node exits by itself.
    let node = ssh.spawn(n1, &node_cmd("run1", "")).unwrap();
    let pid = node.pid();
    // SAFETY: kill(2) on the local ssh that this test's engine started, by its pid.
    unsafe {
        libc::kill(node.local_pid() as libc::pid_t, libc::SIGKILL);
    }
    let took = gone_within(pid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("remote pid {pid} outlived its local ssh by 10 s"));
    eprintln!("remote node exited {took:?} after its local ssh was killed");
    drop(node);

    // The lifeline closed (the controller's end of the pipe): the node exits and, with
    // --remove-on-lifeline-loss, removes its working directory.
    ssh.run(
        n1,
        &format!("{} certs --out run2 --nodes 1 --base-port 7200", quote(bin)),
    )
    .unwrap()
    .check()
    .unwrap();
    let mut node = ssh
        .spawn(
            n1,
            &node_cmd("run2", &format!("--remove-on-lifeline-loss {home}/run2")),
        )
        .unwrap();
    let pid = node.pid();
    while !ssh.run(n1, "test -s run2/node.log").unwrap().success() {
        std::thread::sleep(Duration::from_millis(20));
    }
    node.close_lifeline();
    let took = gone_within(pid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("remote pid {pid} outlived its closed lifeline by 10 s"));
    eprintln!("remote node exited {took:?} after its lifeline closed");
    assert_eq!(node.wait_timeout(Duration::from_secs(5)), Some(0));
    assert!(
        !ssh.run(n1, "test -e run2").unwrap().success(),
        "run2 is still there"
    );
    drop(node);

    // A program that ignores SIGTERM (and its stdin) gets SIGKILL, by pid.
    let mut stubborn = ssh
        .spawn(
            n1,
            &format!("sh -c {}", quote("trap '' TERM; exec tail -f /dev/null")),
        )
        .unwrap();
    let pid = stubborn.pid();
    // The shells exec their way to tail, in the same process.
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("tail\0")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} never became tail"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stubborn.stop().unwrap(), Stopped::Killed);
    assert!(!alive(pid));
    drop(stubborn);

    // fetch: the node logs come back, directory and all.
    let local = tempfile::tempdir().unwrap();
    let got = ssh.fetch(n1, "run1", local.path()).unwrap();
    let log = std::fs::read_to_string(got.join("node.log")).unwrap();
    assert!(
        log.contains("node starting") && log.contains("lifeline"),
        "{log}"
    );
    assert!(got.join("cluster.toml").exists());
    let e = ssh
        .fetch(n1, "no-such-dir", local.path())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("host n1: nothing to fetch"), "{e}");

    // run: exit statuses are the command's; an ssh failure is not one of them.
    let out = ssh.run(n1, "echo out; echo err >&2; exit 3").unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let e = out.check().unwrap_err().to_string();
    assert!(e.starts_with("host n1: ") && e.contains("status 3"), "{e}");
    let echoed = ssh
        .run(n1, &format!("printf %s {}", quote("it's $HOME `x`")))
        .unwrap();
    assert_eq!(echoed.stdout, "it's $HOME `x`");

    // Sessions: long-running processes may take 8 of a connection's 10, and commands still run.
    let few = SshOptions {
        command_timeout: Duration::from_secs(5),
        ..SshOptions::default()
    };
    let limited = Ssh::with_options(&hosts, few).unwrap();
    let n2 = &hosts.hosts[1];
    let long: Vec<_> = (0..8).map(|_| limited.spawn(n2, "cat").unwrap()).collect();
    assert!(limited.run(n2, "true").unwrap().success());
    match limited.spawn(n2, "cat") {
        Err(SshError::Timeout { host, what, .. }) => {
            assert_eq!(host, "n2");
            assert!(what.contains("session"), "{what}");
        }
        Err(e) => panic!("a ninth process: {e}"),
        Ok(_) => panic!("a ninth long-running process got a session"),
    }
    let pids: Vec<u32> = long.iter().map(|p| p.pid()).collect();
    drop(long);
    for pid in pids {
        assert!(
            gone_within(pid, Duration::from_secs(5)).is_some(),
            "cat {pid} outlived its handle"
        );
    }

    // Dropping the engines ends every master; nothing of the test bed's users keeps running.
    let start = Instant::now();
    drop(limited);
    drop(ssh);
    eprintln!("dropping the engines took {:?}", start.elapsed());
    let start = Instant::now();
    while !tb.user_processes().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running as test bed users: {:?}",
            tb.user_processes()
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "every session had ended {:?} after the engines were dropped",
        start.elapsed()
    );
}

/// A dropped link: sshd on the node's side may not notice for hours, so the node's lifeline
/// also carries a heartbeat, and the node stops when it falls silent.
#[test]
fn a_node_whose_link_drops_stops_by_itself() {
    let Some(tb) = Testbed::up(1) else { return };
    let hosts = Hosts::load(&tb.hosts_file).unwrap();
    let ssh = Ssh::new(&hosts).unwrap();
    let h = &hosts.hosts[0];
    let bin = ssh
        .deploy_binary(h, Path::new(env!("CARGO_BIN_EXE_paxbench")))
        .unwrap()
        .path;
    let home = ssh.remote_home(h).unwrap();
    ssh.run(
        h,
        &format!("{} certs --out run --nodes 1 --base-port 7300", quote(&bin)),
    )
    .unwrap()
    .check()
    .unwrap();
    let node = ssh
        .spawn(
            h,
            &format!(
                "{} node --cluster run/cluster.toml --id 0 --exit-on-stdin-eof --lifeline-timeout 2 2>run/node.log",
                quote(&bin)
            ),
        )
        .unwrap();
    node.keep_alive(Duration::from_millis(500));
    let pid = node.pid();
    // Beyond the timeout, the heartbeat keeps it.
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(pid), "the node stopped despite its heartbeat");
    // The host's link goes down: nothing reaches it any more, not even a TCP reset.
    let veth = &tb.veths[0];
    let down = Command::new("ip")
        .args(["link", "set", veth, "down"])
        .status()
        .unwrap();
    assert!(down.success());
    let took = gone_within(pid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("pid {pid} outlived its dropped link by 10 s"));
    eprintln!("the node exited {took:?} after its link dropped (lifeline timeout 2 s)");
    let log = std::fs::read_to_string(format!("{home}/run/node.log")).unwrap();
    assert!(log.contains("nothing on stdin"), "{log}");
}
