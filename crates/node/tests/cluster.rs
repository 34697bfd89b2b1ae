//! Clusters over real quinn on loopback, inside one process (each node in its own tracing span):
//! commands succeed on 3 and 5 nodes for both protocols, the leader fails over, a node restarted
//! without durable state rejoins without a vote, configured learners execute and never vote,
//! and bad clients and peers are refused while the
//! cluster keeps serving. Waits poll the nodes' status; nothing sleeps in the hope that
//! something happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::client::{Connection, KvClient};
use node::runtime::{self, Metrics, RuntimeConfig};
use node::{ClusterCerts, TransportTuning};
use paxos::{MessageKind, NodeId, Op, Outcome, Protocol, ReadMode, Role};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use wire::Codec;

struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct TestCluster {
    protocol: Protocol,
    /// How the leader answers reads (`log` unless a test starts with `start_with`).
    reads: ReadMode,
    /// The learners (`paxos::Config::learners`): none unless a test starts with
    /// `start_with_learners`.
    learners: Vec<NodeId>,
    certs: ClusterCerts,
    addrs: HashMap<NodeId, SocketAddr>,
    metrics: Vec<Arc<Metrics>>,
    running: Vec<Option<Running>>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn core_config(protocol: Protocol, id: NodeId, n: u32) -> paxos::Config {
    let mut c = paxos::Config::new(protocol, id, (0..n).map(NodeId).collect());
    c.seed = 42;
    c
}

impl TestCluster {
    async fn start(protocol: Protocol, n: u32) -> TestCluster {
        TestCluster::start_with(protocol, n, ReadMode::Log).await
    }

    async fn start_with(protocol: Protocol, n: u32, reads: ReadMode) -> TestCluster {
        TestCluster::start_full(protocol, n, reads, Vec::new()).await
    }

    /// `voters` voting nodes and then `learners` learners.
    async fn start_with_learners(protocol: Protocol, voters: u32, learners: u32) -> TestCluster {
        let ids = (voters..voters + learners).map(NodeId).collect();
        TestCluster::start_full(protocol, voters + learners, ReadMode::Log, ids).await
    }

    async fn start_full(
        protocol: Protocol,
        n: u32,
        reads: ReadMode,
        learners: Vec<NodeId>,
    ) -> TestCluster {
        let certs = ClusterCerts::generate(n).unwrap();
        let tuning = TransportTuning::default();
        let mut endpoints = Vec::new();
        let mut addrs = HashMap::new();
        for i in 0..n {
            let ep =
                node::endpoint(loopback(), certs.node(NodeId(i)).unwrap(), &tuning, None).unwrap();
            addrs.insert(NodeId(i), ep.local_addr().unwrap());
            endpoints.push(ep);
        }
        let mut c = TestCluster {
            protocol,
            reads,
            learners,
            certs,
            addrs,
            metrics: (0..n).map(|_| Arc::new(Metrics::default())).collect(),
            running: (0..n).map(|_| None).collect(),
        };
        for (i, ep) in endpoints.into_iter().enumerate() {
            c.launch(NodeId(i as u32), ep, false);
        }
        c
    }

    fn launch(&mut self, id: NodeId, endpoint: quinn::Endpoint, rejoin_without_state: bool) {
        let n = self.running.len() as u32;
        let config = RuntimeConfig {
            core: paxos::Config {
                reads: self.reads,
                learners: self.learners.clone(),
                ..core_config(self.protocol, id, n)
            },
            addrs: self.addrs.clone(),
            wal: None,
            recovered: None,
            rejoin_without_state,
            codec: Codec::default(),
        };
        let (tx, rx) = watch::channel(false);
        let metrics = self.metrics[id.0 as usize].clone();
        let task = tokio::spawn(
            async move {
                runtime::run(endpoint, config, metrics, rx).await.unwrap();
            }
            .instrument(tracing::info_span!("node", id = id.0)),
        );
        self.running[id.0 as usize] = Some(Running { shutdown: tx, task });
    }

    /// Stops a node; returns when it stopped serving (its endpoint then drains in the
    /// background of this call, which returns only once the node released its socket).
    async fn stop(&mut self, id: NodeId) -> Instant {
        let r = self.running[id.0 as usize].take().expect("node is running");
        r.shutdown.send_replace(true);
        let stopped = Instant::now();
        r.task.await.unwrap();
        stopped
    }

    /// Restarts a stopped node on its old address, without any state. The stopped endpoint's
    /// driver releases the socket just after the node's tasks end, so binding is retried until
    /// it succeeds (bounded).
    async fn restart_without_state(&mut self, id: NodeId) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let ep = loop {
            match node::endpoint(
                self.addrs[&id],
                self.certs.node(id).unwrap(),
                &TransportTuning::default(),
                None,
            ) {
                Ok(ep) => break ep,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "address not released yet");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot bind the restarted node's address: {e}"),
            }
        };
        self.launch(id, ep, true);
    }

    fn client(&self, id: u64) -> KvClient {
        let ep =
            node::client_endpoint_on(loopback(), self.certs.client(), &TransportTuning::default())
                .unwrap();
        let mut nodes: Vec<_> = self.addrs.iter().map(|(k, v)| (*k, *v)).collect();
        nodes.sort();
        KvClient::new(ep, nodes, node::client::new_session(id))
    }

    /// Waits (polling status, at most `limit`) until one live node leads and every live node
    /// agrees; returns it. Basic Paxos has no leader: waits until every node answers.
    async fn ready(&self, client: &mut KvClient, limit: Duration) -> Option<NodeId> {
        let live = self.running.iter().filter(|r| r.is_some()).count();
        let ready = client.wait_ready(live, limit).await.ok()?;
        Some(ready.unwrap_or(NodeId(0)))
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        key: Bytes::copy_from_slice(key.as_bytes()),
    }
}

async fn puts_and_gets(protocol: Protocol, n: u32) {
    let cluster = TestCluster::start(protocol, n).await;
    let mut client = cluster.client(1);
    cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("cluster ready");
    for i in 0..50 {
        let out = client
            .call(put(&format!("k{}", i % 7), &format!("v{i}")))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Done);
    }
    for k in 0..7 {
        let last = (0..50).filter(|i| i % 7 == k).max().unwrap();
        let out = client.call(get(&format!("k{k}"))).await.unwrap();
        assert_eq!(out, Outcome::Value(Some(Bytes::from(format!("v{last}")))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_paxos_serves_puts_and_gets_on_3_nodes() {
    puts_and_gets(Protocol::MultiPaxos, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_paxos_serves_puts_and_gets_on_5_nodes() {
    puts_and_gets(Protocol::MultiPaxos, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_paxos_serves_puts_and_gets_on_3_nodes() {
    puts_and_gets(Protocol::BasicPaxos, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_paxos_serves_puts_and_gets_on_5_nodes() {
    puts_and_gets(Protocol::BasicPaxos, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreplicated_serves_puts_and_gets() {
    puts_and_gets(Protocol::Unreplicated, 1).await;
}

/// With `reads = "lease"` over QUIC, the leader answers gets from its own state (its status
/// counts them), with the values the puts wrote; and after the leader is killed, its successor
/// serves puts and reads that see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reads_are_served_locally_and_survive_a_failover() {
    let mut cluster = TestCluster::start_with(Protocol::MultiPaxos, 3, ReadMode::Lease).await;
    let mut client = cluster.client(3);
    let old = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    for i in 0..20 {
        let out = client
            .call(put(&format!("k{}", i % 4), &format!("v{i}")))
            .await;
        assert_eq!(out.unwrap(), Outcome::Done);
    }
    let local = |s: &[wire::NodeStatus]| s.iter().map(|s| s.counters.local_reads).sum::<u64>();
    let before = local(&client.statuses().await);
    for k in 0..4 {
        let last = (0..20).filter(|i| i % 4 == k).max().unwrap();
        let out = client.call(get(&format!("k{k}"))).await.unwrap();
        assert_eq!(out, Outcome::Value(Some(Bytes::from(format!("v{last}")))));
    }
    let after = local(&client.statuses().await);
    assert!(after >= before + 4, "local reads {before} -> {after}");
    let killed = cluster.stop(old).await;
    assert_eq!(client.call(put("k0", "new")).await.unwrap(), Outcome::Done);
    let failover = killed.elapsed();
    assert_eq!(
        client.call(get("k0")).await.unwrap(),
        Outcome::Value(Some(Bytes::from("new")))
    );
    eprintln!("failover with leases: {failover:?} from killing leader {old} to the first commit");
}

/// Kills the leader and measures the time to the first command committed under its successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_fails_over() {
    let mut cluster = TestCluster::start(Protocol::MultiPaxos, 3).await;
    let mut client = cluster.client(2);
    let old = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    assert_eq!(client.call(put("a", "1")).await.unwrap(), Outcome::Done);
    let before = client.leadership().await.expect("a leader");
    assert_eq!(before.0, old);
    assert_eq!(
        client.leadership().await,
        Some(before),
        "no election: same answer"
    );
    let killed = cluster.stop(old).await;
    assert_eq!(client.call(put("a", "2")).await.unwrap(), Outcome::Done);
    let failover = killed.elapsed();
    let new = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("a new leader");
    assert_ne!(new, old);
    let after = client.leadership().await.expect("a new leader");
    assert!(
        after != before && after.1 > before.1,
        "{before:?} then {after:?}"
    );
    assert_eq!(
        client.call(get("a")).await.unwrap(),
        Outcome::Value(Some(Bytes::from("2")))
    );
    eprintln!("failover: {failover:?} from killing leader {old} to the first commit under {new}");
    assert!(failover < Duration::from_secs(10));
}

/// A follower restarted without durable state catches up and the cluster keeps serving; it
/// never votes (the core's `rejoin_without_state`), so it can never become leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_without_state_rejoins_as_a_learner() {
    let mut cluster = TestCluster::start(Protocol::MultiPaxos, 3).await;
    let mut client = cluster.client(3);
    let leader = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    for i in 0..20 {
        client.call(put("k", &format!("{i}"))).await.unwrap();
    }
    let follower = NodeId((leader.0 + 1) % 3);
    cluster.stop(follower).await;
    cluster.restart_without_state(follower).await;
    for i in 20..40 {
        client.call(put("k", &format!("{i}"))).await.unwrap();
    }
    // The learner catches up to the leader's executed slot.
    let statuses = wait_caught_up(&mut client, &[follower], leader).await;
    let s = statuses.iter().find(|s| s.node == follower).unwrap();
    assert_ne!(s.role, Role::Leader);
}

/// Polls (at most 10 s) until every node of `nodes` has executed as far as `leader`; returns the
/// statuses that showed it.
async fn wait_caught_up(
    client: &mut KvClient,
    nodes: &[NodeId],
    leader: NodeId,
) -> Vec<wire::NodeStatus> {
    let start = Instant::now();
    loop {
        let statuses = client.statuses().await;
        let of = |id: NodeId| statuses.iter().find(|s| s.node == id).map(|s| s.executed);
        if nodes
            .iter()
            .all(|n| of(*n).is_some() && of(*n) == of(leader))
        {
            return statuses;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{nodes:?} did not catch up with {leader}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Learners execute what the voters choose and never vote: on 3 voters + 2 learners, writes
/// commit, the learners catch up to the leader's executed slot, send no Promise or Accepted and
/// never campaign; with the leader killed, a voter takes over (2 of the 3 voters are a quorum)
/// and the learners follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_execute_and_never_vote_across_a_failover() {
    const LEARNERS: [NodeId; 2] = [NodeId(3), NodeId(4)];
    let mut cluster = TestCluster::start_with_learners(Protocol::MultiPaxos, 3, 2).await;
    let mut client = cluster.client(5);
    let leader = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    assert!(leader.0 < 3, "learner {leader} leads");
    for i in 0..20 {
        assert_eq!(
            client.call(put("k", &format!("{i}"))).await.unwrap(),
            Outcome::Done
        );
    }
    let statuses = wait_caught_up(&mut client, &LEARNERS, leader).await;
    let never_voted = |statuses: &[wire::NodeStatus]| {
        for s in statuses.iter().filter(|s| LEARNERS.contains(&s.node)) {
            assert_ne!(s.role, Role::Leader, "{s:?}");
            assert_eq!(s.counters.sent[MessageKind::Promise as usize], 0, "{s:?}");
            assert_eq!(s.counters.sent[MessageKind::Accepted as usize], 0, "{s:?}");
            assert_eq!(s.counters.campaigns, 0, "{s:?}");
            assert!(s.counters.commands_executed >= 20, "{s:?}");
        }
    };
    never_voted(&statuses);
    cluster.stop(leader).await;
    assert_eq!(client.call(put("k", "after")).await.unwrap(), Outcome::Done);
    let new = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("a new leader");
    assert!(new != leader && new.0 < 3, "{new} leads after {leader}");
    let statuses = wait_caught_up(&mut client, &LEARNERS, new).await;
    never_voted(&statuses);
}

/// Membership change over QUIC: on 3 voters + 2 learners, writes go on while a follower is
/// replaced by learner n3 and then the leader by learner n4, each through a `Reconfigure`
/// decided in the log. The removed leader steps down, a voter of the new configuration takes
/// over, the promoted nodes vote (they send Accepted), and every acknowledged write is still
/// readable. Prints the write throughput before, across and after each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_and_then_the_leader_are_replaced_under_load() {
    let cluster = TestCluster::start_with_learners(Protocol::MultiPaxos, 3, 2).await;
    let mut client = cluster.client(5);
    let leader = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    let follower = (0..3).map(NodeId).find(|n| *n != leader).unwrap();
    let mut acked = Vec::new();
    let mut next = 0u32;
    // Sequential writes for `d`; returns writes per second.
    async fn writes(
        client: &mut KvClient,
        next: &mut u32,
        acked: &mut Vec<u32>,
        d: Duration,
    ) -> f64 {
        let start = Instant::now();
        let first = acked.len();
        while start.elapsed() < d && *next < 100_000 {
            let i = *next;
            *next += 1;
            if let Ok(Outcome::Done) = client.call(put(&format!("k{i}"), &format!("v{i}"))).await {
                acked.push(i);
            }
        }
        (acked.len() - first) as f64 / start.elapsed().as_secs_f64()
    }
    let change = |add: NodeId, remove: NodeId| Op::Reconfigure {
        add: vec![add],
        remove: vec![remove],
    };
    let before = writes(
        &mut client,
        &mut next,
        &mut acked,
        Duration::from_millis(500),
    )
    .await;
    let t = Instant::now();
    assert_eq!(
        client.call(change(NodeId(3), follower)).await.unwrap(),
        Outcome::Done
    );
    let across_follower = writes(
        &mut client,
        &mut next,
        &mut acked,
        Duration::from_millis(500),
    )
    .await;
    let follower_change = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        client.call(change(NodeId(4), leader)).await.unwrap(),
        Outcome::Done
    );
    let across_leader = writes(&mut client, &mut next, &mut acked, Duration::from_secs(2)).await;
    let leader_change = t.elapsed();
    eprintln!(
        "writes/s: {before:.0} before, {across_follower:.0} over {follower_change:?} replacing \
         follower {follower}, {across_leader:.0} over {leader_change:?} replacing leader {leader}"
    );
    let new = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("a new leader");
    assert!(
        new != leader && new != follower,
        "{new} leads after the changes"
    );
    let last = writes(
        &mut client,
        &mut next,
        &mut acked,
        Duration::from_millis(300),
    )
    .await;
    assert!(last > 0.0, "writes go on after the changes");
    let statuses = wait_caught_up(&mut client, &[NodeId(3), NodeId(4)], new).await;
    for s in statuses.iter().filter(|s| s.node.0 >= 3) {
        assert!(s.counters.sent[MessageKind::Accepted as usize] > 0, "{s:?}");
        assert!(s.voting, "an added node says it votes: {s:?}");
    }
    let old = statuses
        .iter()
        .find(|s| s.node == leader)
        .expect("old leader answers");
    assert_ne!(old.role, Role::Leader, "{old:?}");
    assert!(!old.voting, "the removed leader says it no longer votes");
    let removed = statuses.iter().find(|s| s.node == follower);
    assert!(removed.is_some_and(|s| !s.voting), "{removed:?}");
    for i in acked.iter().step_by(7) {
        assert_eq!(
            client.call(get(&format!("k{i}"))).await.unwrap(),
            Outcome::Value(Some(Bytes::from(format!("v{i}")))),
            "acknowledged write {i}"
        );
    }
}

/// Garbage from a client closes that connection with a logged reason and a counter; a client
/// from another CA is refused at the handshake; a node whose hello contradicts its certificate
/// is refused. The cluster keeps serving the legitimate client throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_and_peers_are_refused_while_the_cluster_serves() {
    let cluster = TestCluster::start(Protocol::MultiPaxos, 3).await;
    let mut client = cluster.client(4);
    let leader = cluster
        .ready(&mut client, Duration::from_secs(10))
        .await
        .expect("leader");
    let target = leader.0 as usize;
    let addr = cluster.addrs[&leader];

    // Garbage frames on a legitimate connection.
    let ep = node::client_endpoint_on(
        loopback(),
        cluster.certs.client(),
        &TransportTuning::default(),
    )
    .unwrap();
    let conn = ep
        .connect(addr, &node::Identity::Node(leader).dns_name())
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 5, 0xEE, 1, 2, 3, 4])
        .await
        .unwrap();
    let reason = conn.closed().await;
    assert!(reason.to_string().contains("bad frame"), "{reason}");
    assert_eq!(
        cluster.metrics[target].bad_frames.load(Ordering::Relaxed),
        1
    );

    // A client certificate from another CA.
    let foreign = ClusterCerts::generate(1).unwrap();
    let foreign_node = &foreign;
    let ep = node::client_endpoint_on(loopback(), foreign.client(), &TransportTuning::default())
        .unwrap();
    let refused = match ep
        .connect(addr, &node::Identity::Node(leader).dns_name())
        .unwrap()
        .await
    {
        Err(e) => e.to_string(),
        Ok(c) => c.closed().await.to_string(),
    };
    assert!(!refused.is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.metrics[target]
        .handshakes_failed
        .load(Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the node did not count the refused handshake"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A peer whose node certificate comes from another CA.
    let before = cluster.metrics[target]
        .handshakes_failed
        .load(Ordering::Relaxed);
    let stranger = node::endpoint(
        loopback(),
        foreign_node.node(NodeId(0)).unwrap(),
        &TransportTuning::default(),
        None,
    )
    .unwrap();
    match node::connect_node(&stranger, addr, leader).await {
        Err(_) => {}
        Ok(c) => {
            c.closed().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.metrics[target]
        .handshakes_failed
        .load(Ordering::Relaxed)
        == before
    {
        assert!(
            Instant::now() < deadline,
            "the node did not count the foreign peer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A real node certificate (node 0) whose hello claims to be another node.
    if leader.0 > 0 {
        let impostor = node::endpoint(
            loopback(),
            cluster.certs.node(NodeId(0)).unwrap(),
            &TransportTuning::default(),
            None,
        )
        .unwrap();
        let conn = node::connect_node(&impostor, addr, leader).await.unwrap();
        let mut send = conn.open_uni().await.unwrap();
        let hello = Codec::default()
            .encode_to_bytes(&wire::PeerFrame::Hello(wire::PeerHello { node: NodeId(9) }))
            .unwrap();
        send.write_all(&hello).await.unwrap();
        let reason = conn.closed().await;
        assert!(reason.to_string().contains("hello"), "{reason}");
        assert!(
            cluster.metrics[target]
                .identities_refused
                .load(Ordering::Relaxed)
                >= 1
        );
    }

    // Through all of it, the legitimate client is served.
    assert_eq!(
        client.call(put("still", "here")).await.unwrap(),
        Outcome::Done
    );
    let mut status = Connection::open(
        &node::client_endpoint_on(
            loopback(),
            cluster.certs.client(),
            &TransportTuning::default(),
        )
        .unwrap(),
        leader,
        addr,
    )
    .await
    .unwrap();
    assert_eq!(status.status().await.unwrap().role, Role::Leader);
}
