//! `paxbench run` across hosts over ssh, on a test bed of network namespaces with their own
//! sshd and user each (`scripts/testbed.sh`): three node hosts and one client host.
//!
//! One test bed serves every scenario in turn (bringing one up takes a few seconds, and each
//! scenario leaves it as it found it): a small run whose points, histograms and every host's
//! logs come back; a controller killed mid-run, after which every remote process exits and
//! every remote directory goes; a host that refuses ssh, which is named and stops the run
//! before anything is written. Where this machine cannot host a test bed (not root, no
//! namespaces) the test says so and passes, except under CI, which must run it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::testbed::Testbed;

const EXPERIMENT: &str = r#"
name = "over-ssh"
protocols = ["unreplicated", "multi-paxos"]
warmup_s = 0.5
duration_s = 1.5

[load]
mode = "open"
rates = [500, 2000]

# The test bed's node hosts are in regions eu, us and ap: only eu-us is slowed down.
[network]
region_delay_ms = { eu = { us = 5.0 } }
"#;

const FAULTS: &str = r#"
name = "faults-over-ssh"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 4.0

[cluster]
durability = "fsync"

[workload]
keys = 1000
read_fraction = 0.5
hot_keys = 8
hot_fraction = 0.5

[load]
mode = "open"
rates = [300]
timeout_ms = 1000

[[faults]]
at_s = 1.0
action = "kill"
target = "leader"
restart_after_s = 1.0

[[faults]]
at_s = 2.5
action = "pause"
target = "follower"
for_s = 0.3

[[faults]]
at_s = 3.0
action = "partition"
target = 2
for_s = 0.5
"#;

fn paxbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paxbench"));
    c.env("RUST_LOG", "info");
    c
}

/// Each test bed user's home directory.
fn homes(bed: &Testbed) -> Vec<PathBuf> {
    bed.uids
        .iter()
        .map(|uid| {
            let out = Command::new("getent")
                .args(["passwd", &uid.to_string()])
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            PathBuf::from(line.trim().split(':').nth(5).expect("a home field"))
        })
        .collect()
}

/// What is left in each host's `~/.paxbench/runs`.
fn remote_leftovers(bed: &Testbed) -> Vec<PathBuf> {
    homes(bed)
        .iter()
        .flat_map(|h| {
            std::fs::read_dir(h.join(".paxbench/runs"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Polls `done` every 50 ms for at most `limit`; how long it took, or None.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn processes_named(bed: &Testbed, what: &str) -> Vec<u32> {
    bed.user_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(what)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn the_only_dir(parent: &Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(parent).unwrap().flatten().collect();
    assert_eq!(
        dirs.len(),
        1,
        "one results directory in {}",
        parent.display()
    );
    dirs[0].path()
}

#[test]
fn runs_over_ssh_bring_back_everything_and_leave_nothing_behind() {
    let Some(bed) = Testbed::up(4) else { return };
    let work = tempfile::tempdir().unwrap();
    let experiment = work.path().join("over-ssh.toml");
    std::fs::write(&experiment, EXPERIMENT).unwrap();

    // 1. A small run: 2 clusters (1 and 3 nodes), 2 points each, load from the client host.
    let out = work.path().join("results");
    let run = paxbench()
        .arg("run")
        .arg(&experiment)
        .arg("--hosts")
        .arg(&bed.hosts_file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "run failed: {stderr}");
    assert!(
        stderr.contains("4 of 4 host(s) ready"),
        "the check ran first: {stderr}"
    );
    let dir = the_only_dir(&out);
    let points: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("points.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(points.len(), 4);
    for p in &points {
        let id = p["point_id"].as_str().unwrap();
        assert!(p["completed"].as_u64().unwrap() > 0, "{p}");
        assert!(
            dir.join("hist").join(format!("{id}.hlog")).is_file(),
            "{id}"
        );
        // The generator ran on c1, and its own files came back.
        let gen = dir.join("generators").join(id).join("c1");
        assert!(
            gen.join("summary.json").is_file() && gen.join("hist.hlog").is_file(),
            "{id}"
        );
        // CPU and memory were sampled on each node's own host.
        for n in p["nodes"].as_array().unwrap() {
            assert!(n["rss_bytes"].as_u64().unwrap() > 0, "{p}");
            assert!(n["cpu_percent"].as_f64().is_some_and(|c| c > 0.0), "{p}");
        }
    }
    // Every node host's log came back, under logs/<cluster>/<host>/.
    let multi = points
        .iter()
        .find(|p| p["protocol"] == "multi-paxos")
        .unwrap();
    // The hosts' regions placed the nodes for the emulated links: n1 (eu) - n2 (us) is slow.
    for r in multi["rtt"].as_array().unwrap() {
        let pair = (r["from"].as_u64().unwrap(), r["to"].as_u64().unwrap());
        let measured_ms = r["measured_us"].as_f64().unwrap() / 1000.0;
        if matches!(pair, (0, 1) | (1, 0)) {
            assert_eq!(r["configured_us"].as_f64(), Some(10_000.0), "{r}");
            assert!(
                (9.5..30.0).contains(&measured_ms),
                "{pair:?}: {measured_ms} ms"
            );
        } else {
            assert!(r["configured_us"].is_null(), "{r}");
        }
    }
    let logs = dir.join(multi["logs"].as_str().unwrap());
    for (host, id) in [("n1", 0), ("n2", 1), ("n3", 2)] {
        let log = std::fs::read_to_string(logs.join(host).join(format!("node-{id}.log")))
            .unwrap_or_else(|e| panic!("{host}'s log: {e}"));
        assert!(log.contains("node starting"), "{host}: {log}");
    }
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("env.json")).unwrap()).unwrap();
    let hosts = env["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4, "{env}");
    assert!(hosts.iter().all(|h| h["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty() && k != "unknown")
        && h["clock_error_us"].as_u64().is_some()));
    assert!(env["command_line"].to_string().contains("--hosts"), "{env}");
    assert!(
        remote_leftovers(&bed).is_empty(),
        "{:?}",
        remote_leftovers(&bed)
    );
    assert!(processes_named(&bed, "paxbench").is_empty());

    // 1b. Faults over ssh: the leader killed by its pid on its host and restarted there, a
    // follower paused, a node cut off through the emulated links; the generator's history
    // comes back from its host and is checked.
    let faulty = work.path().join("faults-over-ssh.toml");
    std::fs::write(&faulty, FAULTS).unwrap();
    let fault_out = work.path().join("fault-results");
    let run = paxbench()
        .arg("run")
        .arg(&faulty)
        .arg("--hosts")
        .arg(&bed.hosts_file)
        .arg("--out")
        .arg(&fault_out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "run failed: {stderr}");
    let fdir = the_only_dir(&fault_out);
    let p: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(fdir.join("points.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for f in p["faults"].as_array().unwrap() {
        assert_eq!(f["applied"], true, "{f}");
        assert!(f["error"].is_null() && f["end_s"].as_f64().is_some(), "{f}");
    }
    assert_eq!(p["linearizable"]["verdict"], "linearizable", "{p}");
    assert!(
        p["availability"]["longest_gap_ms"].as_u64().is_some(),
        "{p}"
    );
    let gen = fdir.join("generators").join("p0000").join("c1");
    assert!(gen.join("history.jsonl").is_file() && gen.join("timeline.json").is_file());
    // The killed node's second life logged on its own host.
    let killed = p["faults"][0]["node"].as_u64().unwrap();
    let host = ["n1", "n2", "n3"][killed as usize];
    let restarted = fdir
        .join(p["logs"].as_str().unwrap())
        .join(host)
        .join(format!("node-{killed}.restart-1.log"));
    assert!(restarted.is_file(), "{}", restarted.display());
    assert!(
        remote_leftovers(&bed).is_empty(),
        "{:?}",
        remote_leftovers(&bed)
    );
    assert!(processes_named(&bed, "paxbench").is_empty());

    // 2. The controller killed mid-run: the remote nodes and generator exit by themselves
    // and remove their directories.
    let long = work.path().join("long.toml");
    std::fs::write(
        &long,
        EXPERIMENT.replace("duration_s = 1.5", "duration_s = 60.0"),
    )
    .unwrap();
    let controller_tmp = work.path().join("controller-tmp");
    std::fs::create_dir(&controller_tmp).unwrap();
    let mut controller = paxbench()
        .arg("run")
        .arg(&long)
        .arg("--hosts")
        .arg(&bed.hosts_file)
        .arg("--out")
        .arg(work.path().join("killed"))
        // Its temporary files (which a SIGKILL gives it no chance to remove) stay in here.
        .env("TMPDIR", &controller_tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = within(Duration::from_secs(60), || {
        !processes_named(&bed, "paxbench load").is_empty()
            && !processes_named(&bed, "paxbench node").is_empty()
    });
    assert!(
        started.is_some(),
        "a node and a generator started on the hosts"
    );
    controller.kill().unwrap();
    controller.wait().unwrap();
    let gone = within(Duration::from_secs(30), || {
        bed.user_processes().is_empty() && remote_leftovers(&bed).is_empty()
    });
    assert!(
        gone.is_some(),
        "left behind: processes {:?}, directories {:?}",
        bed.user_processes(),
        remote_leftovers(&bed)
    );
    eprintln!("after the controller was killed, the hosts were clean in {gone:?}");

    // 3. A host that refuses ssh: named, and nothing is written.
    let text = std::fs::read_to_string(&bed.hosts_file).unwrap();
    let user3 = text
        .lines()
        .filter_map(|l| l.strip_prefix("ssh = \""))
        .nth(2)
        .and_then(|l| l.split('@').next())
        .unwrap()
        .to_string();
    let bad = bed.dir.join("refusing-hosts.toml");
    std::fs::write(&bad, text.replace(&format!("{user3}@"), "nosuchuser@")).unwrap();
    let refused_out = work.path().join("refused");
    let refused = paxbench()
        .arg("run")
        .arg(&experiment)
        .arg("--hosts")
        .arg(&bad)
        .arg("--out")
        .arg(&refused_out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("host n3: unreachable")
            && stderr.contains("nothing was started or written"),
        "{stderr}"
    );
    assert!(!refused_out.exists(), "no results directory");
}
