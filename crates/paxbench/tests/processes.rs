//! Real `paxbench node` processes with `durability = "fsync"`: under load the leader is killed
//! with SIGKILL and restarted; a new leader takes over, the restarted node catches up, and every
//! write acknowledged to a client before the kill is still readable. Then every node is killed
//! at once and restarted: acknowledged writes survive on disk alone.
//!
//! Loopback only; every process is started here and ended here, by pid.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::client::KvClient;
use node::config::ClusterConfig;
use node::TransportTuning;
use paxos::{NodeId, Op, Outcome};
use support::nodes::{client, dir_bytes, rss_bytes, start_cluster, wait_for_leader};

async fn read_all(client: &mut KvClient, acked: &[u32]) {
    for &i in acked {
        let key = Bytes::from(format!("key-{i}"));
        let got = client.call(Op::Get { key }).await.unwrap();
        assert_eq!(
            got,
            Outcome::Value(Some(Bytes::from(format!("value-{i}")))),
            "acknowledged write {i} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_of_the_leader_and_of_every_node() {
    let (dir, cluster, mut nodes) =
        start_cluster(|text| text.replace("durability = \"none\"", "durability = \"fsync\""));
    let mut c = client(&cluster, 1);
    let leader = wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;

    // Load; kill the leader mid-run; keep writing through the failover.
    let mut acked = Vec::new();
    let mut killed_at = None;
    for i in 0..600u32 {
        if i == 300 {
            nodes.kill(leader.0 as usize);
            killed_at = Some(Instant::now());
        }
        let op = Op::Put {
            key: Bytes::from(format!("key-{i}")),
            value: Bytes::from(format!("value-{i}")),
        };
        if let Ok(Outcome::Done) = c.call(op).await {
            acked.push(i);
            if i >= 300 && killed_at.is_some() {
                eprintln!(
                    "first write acknowledged {:?} after the leader was killed",
                    killed_at.take().unwrap().elapsed()
                );
            }
        }
    }
    assert!(
        acked.len() >= 550,
        "most writes go through: {} of 600",
        acked.len()
    );
    nodes.start(leader.0 as usize);
    let new_leader = wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;
    read_all(&mut c, &acked).await;
    // The restarted node caught up with the leader.
    let start = Instant::now();
    loop {
        let s = c.statuses().await;
        let of = |id: NodeId| s.iter().find(|x| x.node == id).map(|x| x.executed);
        if of(leader).is_some() && of(leader) == of(new_leader) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "restarted node did not catch up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every node dies at once: only the write-ahead logs remain.
    for id in 0..3 {
        nodes.kill(id);
    }
    for id in 0..3 {
        nodes.start(id);
    }
    let mut c = client(&cluster, 2);
    wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;
    read_all(&mut c, &acked).await;
    let log = std::fs::read_to_string(dir.path().join("node-0.log")).unwrap();
    assert!(log.contains("write-ahead log replayed"), "{log}");
}

/// Sustained load leaves memory flat: every node's RSS stays under 256 MiB and its write-ahead
/// log on disk stays bounded while the cluster commits `PAXBENCH_RSS_COMMANDS` commands
/// (default 300 000; the figure is 10 000 000), because executed prefixes are
/// truncated behind snapshots in memory and on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_disk_stay_bounded_under_sustained_load() {
    use node::client::Connection;
    use paxos::{Command as PaxCommand, RequestId};
    use wire::{ClientFrame, ResponseFrame};

    let total: u64 = std::env::var("PAXBENCH_RSS_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // Frequent snapshots and small segments, so a short run exercises truncation on disk too.
    let (dir, cluster, nodes) = start_cluster(|text| {
        text.replace(
            "durability = \"none\"",
            "durability = \"fsync\"\nwal_segment_bytes = 4194304",
        ) + "\n[paxos]\nsnapshot_interval = 500\nlog_retain_slots = 5000\n"
    });
    let pids: Vec<u32> = nodes
        .children
        .iter()
        .map(|c| c.as_ref().unwrap().id())
        .collect();
    let mut kv = client(&cluster, 1);
    let leader = wait_for_leader(&mut kv, 3, Duration::from_secs(20)).await;
    let config = ClusterConfig::load(&cluster).unwrap();
    let certs = config.client_certs().unwrap();
    let ep = node::client_endpoint_on(
        "127.0.0.1:0".parse().unwrap(),
        &certs,
        &TransportTuning::default(),
    )
    .unwrap();
    let mut conn = Connection::open(&ep, leader, config.node(leader).unwrap().addr)
        .await
        .unwrap();

    let value = Bytes::from(vec![0x5a; 64]);
    let session = node::client::new_session(9);
    let depth = 512u64;
    let (mut sent, mut done, mut max_rss, mut max_wal, mut leader_changes) =
        (0u64, 0u64, 0u64, 0u64, 0u32);
    // Outstanding requests, kept so they can be re-sent (same ids: executed at most once) if
    // the leader changes under load.
    let mut outstanding: std::collections::BTreeMap<u64, PaxCommand> = Default::default();
    let start = Instant::now();
    let limit = Duration::from_secs(60 + total / 2_000);
    while done < total {
        let mut frames = Vec::new();
        while sent < total && sent - done < depth {
            sent += 1;
            let key = Bytes::from(format!("key-{:012}", sent % 100_000));
            let op = Op::Put {
                key,
                value: value.clone(),
            };
            let cmd = PaxCommand {
                client: session,
                request: RequestId(sent),
                op,
            };
            outstanding.insert(sent, cmd.clone());
            frames.push(ClientFrame::Request(cmd));
        }
        if !frames.is_empty() {
            conn.send(&frames).await.unwrap();
        }
        let ResponseFrame::Response(r) = conn.recv().await.unwrap() else {
            continue;
        };
        match r.reply.outcome {
            Outcome::Done => {
                if outstanding.remove(&r.reply.request.0).is_some() {
                    done += 1;
                }
            }
            Outcome::NotLeader { .. } => {
                leader_changes += 1;
                assert!(
                    leader_changes < 20,
                    "the leadership keeps moving under load"
                );
                let leader = wait_for_leader(&mut kv, 3, Duration::from_secs(20)).await;
                conn = Connection::open(&ep, leader, config.node(leader).unwrap().addr)
                    .await
                    .unwrap();
                let again: Vec<_> = outstanding
                    .values()
                    .cloned()
                    .map(ClientFrame::Request)
                    .collect();
                conn.send(&again).await.unwrap();
            }
            other => panic!("request {} answered {other:?}", r.reply.request.0),
        }
        if done % 20_000 == 0 {
            for (i, pid) in pids.iter().enumerate() {
                max_rss = max_rss.max(rss_bytes(*pid));
                max_wal = max_wal.max(dir_bytes(&dir.path().join(format!("data/node-{i}/wal"))));
            }
        }
        assert!(
            start.elapsed() < limit,
            "only {done} of {total} commands in {limit:?}"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{total} commands in {secs:.1} s ({:.0}/s, depth {depth}, fsync, {leader_changes} leader changes): max node RSS {:.1} MiB, max write-ahead log {:.1} MiB",
        total as f64 / secs,
        max_rss as f64 / (1 << 20) as f64,
        max_wal as f64 / (1 << 20) as f64
    );
    assert!(max_rss > 0, "RSS was sampled");
    assert!(max_rss < 256 << 20, "a node's RSS reached {max_rss} bytes");
    assert!(
        max_wal < 64 << 20,
        "the write-ahead log grew to {max_wal} bytes: truncation on disk failed"
    );
}

/// `paxbench kv` against real nodes: put / get / del print what people expect and exit non-zero
/// on failure; a bad cluster file is an error naming file, line and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_command_puts_gets_and_deletes() {
    let (dir, cluster, _nodes) = start_cluster(|text| text);
    wait_for_leader(&mut client(&cluster, 1), 3, Duration::from_secs(20)).await;
    let kv = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
            .args(["kv", "--cluster"])
            .arg(&cluster)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(kv(&["put", "color", "blue"]).0);
    assert_eq!(
        kv(&["get", "color"]),
        (true, "blue".to_string(), String::new())
    );
    assert!(kv(&["del", "color"]).0);
    let (found, stdout, stderr) = kv(&["get", "color"]);
    assert!(
        !found && stdout.is_empty() && stderr.contains("not found"),
        "{stderr}"
    );
    let (ok, stdout, _) = kv(&["status"]);
    assert!(
        ok && stdout.lines().count() == 3 && stdout.contains("Leader"),
        "{stdout}"
    );
    // Membership changes: checked against the file before they are sent, and refused through
    // the log when the change makes no sense for the current voters.
    let (ok, _, stderr) = kv(&["reconfigure", "--add", "9"]);
    assert!(!ok && stderr.contains("node 9 is not in"), "{stderr}");
    let (ok, _, stderr) = kv(&["reconfigure", "--add", "1=127.0.0.1:1"]);
    assert!(!ok && stderr.contains("not 127.0.0.1:1"), "{stderr}");
    let (ok, _, stderr) = kv(&["reconfigure"]);
    assert!(
        !ok && stderr.contains("at least one --add or --remove"),
        "{stderr}"
    );
    let (ok, _, stderr) = kv(&["reconfigure", "--add", "0"]);
    assert!(
        !ok && stderr.contains("refused: n0 is already a voter"),
        "{stderr}"
    );

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&cluster)
        .unwrap()
        .replace("protocol = ", "protocl = ");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["kv", "--cluster"])
        .arg(&bad)
        .args(["get", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml") && err.contains("line") && err.contains("protocl"),
        "{err}"
    );
}
