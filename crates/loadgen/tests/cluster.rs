//! The load generator against an in-process 3-node Multi-Paxos cluster over real quinn on
//! loopback: 2 s of open-loop load at a modest rate to the leader, then 2 s of closed loop spread
//! over all nodes (so `NotLeader` redirects are followed). Checks counts, that the interval log
//! parses back with hdrhistogram's reader, and that the summary JSON has every field. A closed
//! loop on hot keys records a history, which is checked for being well formed (not yet for
//! linearizability). The only timing assertions are the pacer's, with bounds a loaded machine
//! still meets (see there); the cluster tests take turns so they do not load each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use lincheck::{Call, Ret};
use loadgen::{Arrivals, KeyDistribution, LoadConfig, LoadResult, Mode, Target, Workload};
use node::client::Connection;
use node::runtime::{self, Metrics, RuntimeConfig};
use node::{ClusterCerts, TransportTuning};
use paxos::{NodeId, Protocol, Role};
use tokio::sync::watch;

/// The cluster tests run one at a time: each is a cluster plus a load generator, and two of them
/// on a 2-core machine would only measure each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts `n` nodes of `protocol` in this process; returns the certificates, the node map and
/// the shutdown switch.
fn start_cluster(
    protocol: Protocol,
    n: u32,
) -> (ClusterCerts, Vec<(NodeId, SocketAddr)>, watch::Sender<bool>) {
    let certs = ClusterCerts::generate(n).unwrap();
    let tuning = TransportTuning::default();
    let mut endpoints = Vec::new();
    let mut addrs = HashMap::new();
    for i in 0..n {
        let ep = node::endpoint(loopback(), certs.node(NodeId(i)).unwrap(), &tuning, None).unwrap();
        addrs.insert(NodeId(i), ep.local_addr().unwrap());
        endpoints.push(ep);
    }
    let (tx, rx) = watch::channel(false);
    for (i, ep) in endpoints.into_iter().enumerate() {
        let id = NodeId(i as u32);
        let mut core = paxos::Config::new(protocol, id, (0..n).map(NodeId).collect());
        core.seed = 42;
        let config = RuntimeConfig {
            core,
            addrs: addrs.clone(),
            wal: None,
            recovered: None,
            rejoin_without_state: false,
            codec: wire::Codec::default(),
        };
        let rx = rx.clone();
        tokio::spawn(async move {
            runtime::run(ep, config, Arc::new(Metrics::default()), rx)
                .await
                .unwrap();
        });
    }
    let mut nodes: Vec<_> = addrs.into_iter().collect();
    nodes.sort();
    (certs, nodes, tx)
}

/// Polls every node's status until all of them name the same leader.
async fn wait_for_leader(ep: &quinn::Endpoint, nodes: &[(NodeId, SocketAddr)]) -> NodeId {
    let start = Instant::now();
    let mut conns = HashMap::new();
    loop {
        let mut leaders = Vec::new();
        for &(id, addr) in nodes {
            if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(id) {
                if let Ok(c) = Connection::open(ep, id, addr).await {
                    e.insert(c);
                }
            }
            if let Some(c) = conns.get_mut(&id) {
                if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), c.status()).await {
                    let leads = matches!(s.role, Role::Leader | Role::Single);
                    leaders.push((leads, if leads { Some(id) } else { s.leader }));
                }
            }
        }
        if leaders.len() == nodes.len() {
            if let Some((_, Some(l))) = leaders.iter().find(|(is, _)| *is) {
                if leaders.iter().all(|(_, x)| *x == Some(*l)) {
                    return *l;
                }
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes both result files and checks them: the log parses back into one histogram per
/// second whose counts add up to `completed`, and the JSON has every field.
fn check_files(result: &LoadResult) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hist.hlog");
    let json = dir.path().join("summary.json");
    result.write_interval_log(&log).unwrap();
    result.write_summary_json(&json).unwrap();

    let bytes = std::fs::read(&log).unwrap();
    let mut deserializer = Deserializer::new();
    let mut intervals = 0;
    let mut total = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(h) = entry.unwrap() {
            let raw = base64_decode(h.encoded_histogram());
            let hist: Histogram<u64> = deserializer
                .deserialize(&mut std::io::Cursor::new(raw))
                .unwrap();
            assert_eq!(h.start_timestamp(), Duration::from_secs(intervals));
            intervals += 1;
            total += hist.len();
        }
    }
    assert_eq!(intervals as usize, result.intervals.len());
    assert_eq!(total, result.summary.completed);

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let fields = [
        "offered_ops",
        "throughput_ops",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "mean_us",
        "completed",
        "errors",
        "timeouts",
        "send_lag_p99_us",
        "generator_bound",
        "pacing_us",
        "warmup_s",
        "duration_s",
    ];
    let obj = v.as_object().unwrap();
    for f in fields {
        assert!(obj.contains_key(f), "summary.json lacks {f}: {v}");
    }
    // The generator's CPU: both fields, or neither where it could not be read.
    let cpu = ["generator_cpu_us_per_request", "generator_cpu"];
    let present = cpu.iter().filter(|f| obj.contains_key(**f)).count();
    assert!(present == 0 || present == cpu.len(), "{v}");
    assert_eq!(present > 0, result.summary.generator_cpu.is_some(), "{v}");
    assert_eq!(obj.len(), fields.len() + present, "{v}");
    // It reads back (the CPU figures exactly; a float's last digit may differ via a Value).
    let back: loadgen::LoadSummary = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back.generator_cpu, result.summary.generator_cpu);
    assert_eq!(
        back.generator_cpu_us_per_request,
        result.summary.generator_cpu_us_per_request
    );
    assert_eq!(back.completed, result.summary.completed);
    assert_eq!(back.pacing_us, result.summary.pacing_us);
}

/// Standard base64 (the interval log's histogram encoding), so the test needs no extra crate.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(val(c)) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_closed_loop_against_a_three_node_multi_paxos_cluster() {
    let _turn = SERIAL.lock().await;
    let (certs, nodes, shutdown) = start_cluster(Protocol::MultiPaxos, 3);
    let ep =
        node::client_endpoint_on(loopback(), certs.client(), &TransportTuning::default()).unwrap();
    wait_for_leader(&ep, &nodes).await;
    let workload = Workload {
        keys: 1_000,
        distribution: KeyDistribution::Zipf { theta: 0.99 },
        read_fraction: 0.2,
        value_size: 64,
        seed: 5,
        ..Workload::default()
    };

    let mut open = LoadConfig::new(
        ep.clone(),
        nodes.clone(),
        Mode::Open {
            rate: 2_000.0,
            arrivals: Arrivals::Poisson,
        },
    );
    open.workload = workload.clone();
    open.warmup = Duration::from_millis(500);
    open.duration = Duration::from_secs(2);
    let r = loadgen::run(open).await.unwrap();
    eprintln!("open loop: {}", r.summary);
    assert!(r.summary.completed > 0, "{}", r.summary);
    assert_eq!(r.summary.errors, 0, "{}", r.summary);
    assert_eq!(r.summary.offered_ops, Some(2_000.0));
    assert_eq!(r.intervals.len(), 2);
    // On a multi-thread runtime the generator's tasks run on either worker, and one thread's
    // clock would miss some of them: no CPU figure rather than a wrong one.
    assert_eq!(r.summary.generator_cpu, None, "{}", r.summary);
    assert_eq!(r.summary.generator_cpu_us_per_request, None);
    // Every request of the window is accounted for once: about 4 000 were scheduled.
    let accounted = r.summary.completed + r.summary.errors + r.summary.timeouts;
    assert!((3_000..5_000).contains(&accounted), "{accounted}");
    check_files(&r);

    let mut closed = LoadConfig::new(
        ep.clone(),
        nodes.clone(),
        Mode::Closed {
            clients: 4,
            depth: 8,
        },
    );
    closed.workload = workload;
    closed.target = Target::All;
    closed.warmup = Duration::from_millis(500);
    closed.duration = Duration::from_secs(2);
    let r = loadgen::run(closed).await.unwrap();
    eprintln!("closed loop: {}", r.summary);
    assert!(r.summary.completed > 0, "{}", r.summary);
    assert_eq!(r.summary.errors, 0, "{}", r.summary);
    assert_eq!(r.summary.offered_ops, None);
    check_files(&r);

    shutdown.send_replace(true);
}

/// Nothing answers: every scheduled request of the window is reported as a timeout, none is
/// dropped, and the run still ends (after the window plus the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_dead_node_are_counted_as_timeouts() {
    let _turn = SERIAL.lock().await;
    let certs = ClusterCerts::generate(1).unwrap();
    // A port nothing listens on: bind a UDP socket, note its address, close it.
    let addr = std::net::UdpSocket::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap();
    let ep =
        node::client_endpoint_on(loopback(), certs.client(), &TransportTuning::default()).unwrap();
    let mut cfg = LoadConfig::new(
        ep,
        vec![(NodeId(0), addr)],
        Mode::Open {
            rate: 500.0,
            arrivals: Arrivals::Constant,
        },
    );
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_secs(1);
    cfg.timeout = Duration::from_millis(300);
    let r = loadgen::run(cfg).await.unwrap();
    assert_eq!(r.summary.completed, 0, "{}", r.summary);
    assert_eq!(r.summary.timeouts, 500, "{}", r.summary);
    assert_eq!(r.summary.errors, 0, "{}", r.summary);
    check_files(&r);
}

/// A single Unreplicated node and a client endpoint, once the node answers as `Single`.
async fn single_node() -> (
    quinn::Endpoint,
    Vec<(NodeId, SocketAddr)>,
    watch::Sender<bool>,
) {
    let (certs, nodes, shutdown) = start_cluster(Protocol::Unreplicated, 1);
    let ep =
        node::client_endpoint_on(loopback(), certs.client(), &TransportTuning::default()).unwrap();
    wait_for_leader(&ep, &nodes).await;
    (ep, nodes, shutdown)
}

/// Runs the generator as `paxbench run` and `paxbench load` do: alone on a current-thread
/// runtime of its own, not sharing a runtime's workers with the node under test.
fn run_on_own_thread(cfg: LoadConfig) -> LoadResult {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(loadgen::run(cfg))
    })
    .join()
    .unwrap()
    .unwrap()
}

/// At a low rate the generator sends every request of its schedule, each timed from its own
/// intended instant, and reports how late the sends left. How precisely they leave is a
/// measurement, printed here, not a bound: on an idle 2-core machine the median send lag was
/// 10-60 µs, but on the same machine shared and busy it read 260-450 µs while a thread
/// sleeping 200 µs still woke within ~90 µs (`pacer::tests::wakes_soon_after_its_instant`
/// checks the pacer's own wake-ups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_rate_open_loop_sends_its_whole_schedule() {
    let _turn = SERIAL.lock().await;
    let (ep, nodes, shutdown) = single_node().await;
    let mut cfg = LoadConfig::new(
        ep,
        nodes,
        Mode::Open {
            rate: 1_000.0,
            arrivals: Arrivals::Poisson,
        },
    );
    cfg.warmup = Duration::from_millis(200);
    cfg.duration = Duration::from_secs(1);
    let r = run_on_own_thread(cfg);
    let lag = &r.send_lag;
    eprintln!(
        "send lag p50 {} µs p90 {} µs; {}",
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.9),
        r.summary
    );
    assert_eq!(
        r.summary.pacing_us, 200,
        "the automatic pacing of 1,000 ops/s"
    );
    // About 1,200 Poisson arrivals in 1.2 s; every one was sent, answered and timed.
    assert!((1_000..1_400).contains(&lag.len()), "{} sends", lag.len());
    assert_eq!(r.summary.timeouts + r.summary.errors, 0, "{}", r.summary);
    assert!(
        (800..1_200).contains(&r.summary.completed),
        "{} completed in the 1 s window",
        r.summary.completed
    );
    shutdown.send_replace(true);
}

/// Timeouts are exact: with a timeout shorter than many round trips, every request is either
/// answered within the timeout or counted as a timeout, never recorded as a success slower
/// than the timeout (which a deadline check on a coarse tick, or a deadline queue that is a
/// little out of order as closed loop's is, would let through). Both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_the_timeout_is_a_timeout() {
    let _turn = SERIAL.lock().await;
    let (ep, nodes, shutdown) = single_node().await;
    let timeout = Duration::from_micros(100);
    for mode in [
        Mode::Open {
            rate: 2_000.0,
            arrivals: Arrivals::Poisson,
        },
        Mode::Closed {
            clients: 2,
            depth: 4,
        },
    ] {
        let mut cfg = LoadConfig::new(ep.clone(), nodes.clone(), mode);
        cfg.warmup = Duration::from_millis(200);
        cfg.duration = Duration::from_secs(1);
        cfg.timeout = timeout;
        let r = loadgen::run(cfg).await.unwrap();
        eprintln!("{mode:?}: {}", r.summary);
        let s = &r.summary;
        assert!(
            s.timeouts > 0,
            "nothing timed out, the test shows nothing: {s}"
        );
        assert_eq!(s.errors, 0, "{s}");
        if s.completed > 0 {
            assert!(s.max_us < timeout.as_micros() as u64, "{s}");
        }
        if let Mode::Open { .. } = mode {
            // Every request of the window is accounted for once (~2 000 scheduled).
            assert!((1_500..2_500).contains(&(s.completed + s.timeouts)), "{s}");
        }
    }
    shutdown.send_replace(true);
}

/// A closed-loop client whose requests all time out keeps issuing: each timeout frees its slot
/// and the next request goes at once. (Nothing else wakes the driver when no reply ever comes;
/// it once slept until the end of the run after the first timeouts, and counted nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_keeps_going_when_nothing_answers() {
    let _turn = SERIAL.lock().await;
    let (ep, _nodes, shutdown) = single_node().await;
    // A UDP socket that never answers: the QUIC handshake cannot complete.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nodes = vec![(NodeId(0), silent.local_addr().unwrap())];
    let mut cfg = LoadConfig::new(
        ep,
        nodes,
        Mode::Closed {
            clients: 1,
            depth: 1,
        },
    );
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(1500);
    cfg.timeout = Duration::from_millis(10);
    let r = loadgen::run(cfg).await.unwrap();
    let s = &r.summary;
    eprintln!("{s}");
    assert_eq!(s.completed, 0, "{s}");
    // The connection attempt holds the driver for its 500 ms limit; after that every 10 ms
    // timeout frees the slot for the next request: dozens, not the one issued at the start.
    assert!(s.timeouts >= 20, "{s}");
    shutdown.send_replace(true);
}

/// A closed loop with half reads on a few hot keys, spread over all three nodes of a
/// Multi-Paxos cluster (so two thirds of the requests are redirected), recording a history
/// from the start of the warm-up. The history must be well formed: every operation returned
/// after it was invoked, every read saw either nothing or a value some recorded `Put` of that
/// key wrote (and that `Put` was invoked before the read returned), writes carry their own
/// ids, a redirected request is one operation, and the operations add up to the summary's
/// counts. Then a small cap: the history is truncated by the cap rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_on_hot_keys_records_a_well_formed_history() {
    use std::collections::HashMap;
    let _turn = SERIAL.lock().await;
    let (certs, nodes, shutdown) = start_cluster(Protocol::MultiPaxos, 3);
    let ep =
        node::client_endpoint_on(loopback(), certs.client(), &TransportTuning::default()).unwrap();
    wait_for_leader(&ep, &nodes).await;
    let (clients, depth) = (4usize, 4usize);
    let config = |history: usize, duration: Duration| {
        let mut c = LoadConfig::new(ep.clone(), nodes.clone(), Mode::Closed { clients, depth });
        c.workload = Workload {
            keys: 1_000,
            read_fraction: 0.5,
            hot_keys: 4,
            hot_fraction: 0.5,
            seed: 9,
            ..Workload::default()
        };
        c.target = Target::All;
        c.warmup = Duration::from_millis(300);
        c.duration = duration;
        c.history = Some(history);
        c
    };
    let r = loadgen::run(config(1_000_000, Duration::from_millis(1_500)))
        .await
        .unwrap();
    let s = &r.summary;
    eprintln!("closed loop with a history: {s}");
    assert!(s.completed > 100, "{s}");
    let h = r.history.as_ref().expect("a history was asked for");
    assert!(!h.truncated && h.cutoff_ns.is_none());
    assert_eq!(h.window_offset_ns, 300_000_000);

    // Every write has its own value, naming its session; keep them by key.
    let mut written: HashMap<&[u8], HashMap<&[u8], u64>> = HashMap::new();
    for op in &h.ops {
        if let Call::Put(v) = &op.call {
            let (client, _request) = loadgen::value_id(v).expect("a value carries its id");
            assert_eq!(client, op.client);
            let prev = written
                .entry(op.key.as_slice())
                .or_default()
                .insert(v.as_slice(), op.invoked_ns);
            assert!(prev.is_none(), "a value written twice");
        }
    }
    let (mut reads_seen, mut hot_ops) = (0, 0);
    for op in &h.ops {
        // The generator drained: everything returned or was given up on.
        let ret = op
            .returned_ns
            .expect("every operation was answered or given up on");
        assert!(op.invoked_ns <= ret, "{op:?}");
        if op.key.as_slice() < b"key-0000000004".as_slice() {
            hot_ops += 1;
        }
        match (&op.call, &op.ret) {
            (Call::Get, Ret::Read(Some(v))) => {
                let invoked = written
                    .get(op.key.as_slice())
                    .and_then(|w| w.get(v.as_slice()))
                    .unwrap_or_else(|| panic!("a read saw a value no recorded put wrote: {op:?}"));
                assert!(
                    *invoked <= ret,
                    "a read saw a write invoked after it returned"
                );
                reads_seen += 1;
            }
            (Call::Get, Ret::Read(None) | Ret::Unknown) => {}
            (Call::Put(_), Ret::Done | Ret::Unknown) => {}
            other => panic!("an outcome that does not fit its call: {other:?}"),
        }
    }
    assert!(
        reads_seen > 10,
        "reads and writes of hot keys should meet: {reads_seen}"
    );
    assert!(
        hot_ops * 3 > h.ops.len(),
        "{hot_ops} of {} on hot keys",
        h.ops.len()
    );

    // The warm-up is in the history; from the window on, the operations are the summary's
    // requests. The summary counts requests *meant* for the window; at most one per slot
    // (clients × depth) was meant for the warm-up and sent in the window. A redirected
    // request counted twice would put two thirds of them over.
    let slots = (clients * depth) as u64;
    let in_window = |definite: Option<bool>| {
        h.ops
            .iter()
            .filter(|o| o.invoked_ns >= h.window_offset_ns)
            .filter(|o| definite.is_none_or(|d| d == (o.ret != Ret::Unknown)))
            .count() as u64
    };
    assert!(
        h.ops.iter().any(|o| o.invoked_ns < h.window_offset_ns),
        "warm-up"
    );
    let total = s.completed + s.errors + s.timeouts;
    let (all, done, unknown) = (
        in_window(None),
        in_window(Some(true)),
        in_window(Some(false)),
    );
    assert!((total..=total + slots).contains(&all), "{all} ops vs {s}");
    assert!(
        (s.completed..=s.completed + slots).contains(&done),
        "{done} vs {s}"
    );
    let failed = s.errors + s.timeouts;
    assert!(
        (failed..=failed + slots).contains(&unknown),
        "{unknown} vs {s}"
    );

    // The timeline: 15 buckets; it counts completions by arrival, so it differs from the
    // summary only by the requests in flight at the window's edges.
    assert_eq!(r.timeline.buckets.len(), 15);
    let tl: u64 = r.timeline.buckets.iter().map(|b| b.completed).sum();
    assert!(tl.abs_diff(s.completed) <= slots, "timeline {tl} vs {s}");
    assert!(r
        .timeline
        .buckets
        .iter()
        .all(|b| b.completed == 0 || b.p99_us().is_some()));

    // A cap of 200: truncated, writes kept, only reads that returned before the cutoff.
    let r = loadgen::run(config(200, Duration::from_millis(500)))
        .await
        .unwrap();
    let h = r.history.unwrap();
    let cutoff = h.cutoff_ns.expect("the cap was reached");
    assert!(h.truncated && h.ops.len() <= 200, "{}", h.ops.len());
    assert!(h.ops.iter().any(|o| matches!(o.call, Call::Put(_))));
    for op in h.ops.iter().filter(|o| o.call == Call::Get) {
        assert!(op.returned_ns.is_some_and(|r| r < cutoff), "{op:?}");
    }
    shutdown.send_replace(true);
}

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`), a clock the generator does not use.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The generator's reading of its own CPU, run as `paxbench run` runs it: on a current-thread
/// runtime whose thread also made the client endpoint, with the node on a thread of its own
/// (so the generator's thread runs nothing else). The figure is given, split into user and
/// system time and wake-ups; it counts the requests sent in the window (constant arrivals:
/// 2,000 in 1 s), its µs per request is that time over those requests, and it is no more
/// than the thread spent over the whole run by another clock (connecting, warm-up and drain
/// included). The multi-thread test above checks that no figure is given there.
#[cfg(target_os = "linux")]
#[test]
fn the_generator_reads_its_own_cpu_on_a_current_thread_runtime() {
    let _turn = SERIAL.blocking_lock();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let (certs, nodes, shutdown) = start_cluster(Protocol::Unreplicated, 1);
                ready_tx.send((certs, nodes)).unwrap();
                let _ = stop_rx.await;
                shutdown.send_replace(true);
            });
    });
    let (certs, nodes) = ready_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (before, r, after) = rt.block_on(async {
        let ep = node::client_endpoint_on(loopback(), certs.client(), &TransportTuning::default())
            .unwrap();
        wait_for_leader(&ep, &nodes).await;
        let mut cfg = LoadConfig::new(
            ep,
            nodes,
            Mode::Open {
                rate: 2_000.0,
                arrivals: Arrivals::Constant,
            },
        );
        cfg.warmup = Duration::from_millis(300);
        cfg.duration = Duration::from_secs(1);
        let before = thread_cpu();
        let r = loadgen::run(cfg).await.unwrap();
        (before, r, thread_cpu())
    });
    let _ = stop_tx.send(());
    node.join().unwrap();
    let s = &r.summary;
    eprintln!("{s}");
    let cpu = s
        .generator_cpu
        .expect("a current-thread runtime has a CPU figure");
    assert_eq!(cpu.scope, loadgen::CpuScope::Thread);
    assert!((1_900..=2_001).contains(&cpu.requests), "{cpu:?}");
    // The kernel splits a thread's time into user and system by sampling ticks, so a thread
    // that spends ~70 ms mostly in syscalls can be charged 0 user time: check only the sum.
    let busy = cpu.user_s + cpu.system_s;
    assert!(busy > 0.0, "{cpu:?}");
    let whole = (after - before).as_secs_f64();
    // getrusage rounds to µs and splits user and system by sampling: allow 5 ms.
    assert!(
        busy <= whole + 0.005,
        "window {busy} s > whole run {whole} s"
    );
    let per = s.generator_cpu_us_per_request.unwrap();
    assert!(
        (per - busy * 1e6 / cpu.requests as f64).abs() < 1e-6,
        "{per}"
    );
    // It slept between sends, hundreds of times a second.
    assert!(cpu.voluntary_switches >= 100, "{cpu:?}");
    assert!(s.to_string().contains(" µs/request"), "{s}");
    check_files(&r);
}

/// The live Unreplicated node of [`single_node`] and a dead node 1 (a port nothing listens
/// on), under 3 s of open-loop load at 400 ops/s with a 300 ms timeout, `tweak`ed; the
/// generator on a thread of its own ([`run_on_own_thread`]).
async fn against_a_live_and_a_dead_node(tweak: impl FnOnce(&mut LoadConfig)) -> LoadResult {
    let (ep, mut nodes, shutdown) = single_node().await;
    // A port nothing listens on: bind a UDP socket, note its address, close it.
    let dead = std::net::UdpSocket::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap();
    nodes.push((NodeId(1), dead));
    let mut cfg = LoadConfig::new(
        ep,
        nodes,
        Mode::Open {
            rate: 400.0,
            arrivals: Arrivals::Constant,
        },
    );
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_secs(3);
    cfg.timeout = Duration::from_millis(300);
    tweak(&mut cfg);
    let r = run_on_own_thread(cfg);
    shutdown.send_replace(true);
    r
}

/// A node that cannot be reached does not hold up the others: the generator connects to it in
/// the background, and while that fails its requests time out, but the live node's requests
/// are sent on time and all complete (a connect attempt awaited in line stalled every node's
/// sends for the connect timeout, once a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_does_not_stall_the_requests_to_the_others() {
    let _turn = SERIAL.lock().await;
    let r = against_a_live_and_a_dead_node(|cfg| cfg.target = Target::All).await;
    // 1,200 requests, every other one to each node.
    let s = &r.summary;
    assert_eq!(s.completed + s.timeouts + s.errors, 1_200, "{s}");
    assert!(
        s.completed >= 598,
        "the live node's 600 requests complete: {s}"
    );
    assert!(s.timeouts >= 598, "the dead node's 600 time out: {s}");
}

/// A read node that does not answer is passed over: after its first `Get` times out (or it
/// cannot be connected to), the `Get`s go to the other read node, and it is only probed now
/// and then, so reads at a dead learner cost a timeout a second, not its share of the reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_pass_over_a_read_node_that_does_not_answer() {
    let _turn = SERIAL.lock().await;
    let r = against_a_live_and_a_dead_node(|cfg| {
        cfg.target = Target::Nodes(vec![NodeId(0)]);
        cfg.read_nodes = vec![NodeId(0), NodeId(1)];
        cfg.workload.read_fraction = 0.5;
    })
    .await;
    // 1,200 requests, about 600 of them Gets: half of those would go to the dead node.
    let s = &r.summary;
    assert_eq!(s.completed + s.timeouts + s.errors, 1_200, "{s}");
    assert!(s.timeouts < 30, "probes only: {s}");
}
