//! `transport = "tcp"`: clusters served in this process from a cluster file that asks for TLS
//! over TCP. Every protocol serves puts and gets; the node's status reports the kernel's RTT to
//! every peer; a peer whose hello contradicts its certificate, a peer or a client with a
//! certificate from another CA are refused; a garbage frame closes only its own connection; a
//! node stopped and started again rejoins. Waits poll the nodes; nothing sleeps in the hope that
//! something happened.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::client::{ClientEndpoint, KvClient};
use node::{ClientCerts, ClusterCerts, NodeCerts, TransportTuning};
use paxos::{NodeId, Op, Outcome, Protocol, Role};
use support::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{Codec, NodeStatus, PeerFrame, PeerHello};

const TCP: &str = "\n[transport]\ntransport = \"tcp\"\n";

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

/// Polls `counter` until it passes `before`, for at most 5 s.
async fn counted(counter: &AtomicU64, before: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::Relaxed) <= before {
        assert!(Instant::now() < deadline, "the node did not count {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads from `stream` until it ends or fails, for at most 5 s: what a refused or closed
/// connection does. Anything it reads first (TLS session tickets are consumed inside) is
/// dropped.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the node kept the connection open")
}

/// Puts 30 values to 5 keys and reads each back.
async fn puts_and_gets(client: &mut KvClient) {
    for i in 0..30 {
        let out = client
            .call(put(&format!("k{}", i % 5), &format!("v{i}")))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Done);
    }
    for k in 0..5 {
        let last = (0..30).filter(|i| i % 5 == k).max().unwrap();
        let out = client.call(get(&format!("k{k}"))).await.unwrap();
        assert_eq!(out, Outcome::Value(Some(Bytes::from(format!("v{last}")))));
    }
}

/// Every node lists every other one with a measured (nonzero) round trip.
fn linked_with_rtts(statuses: &[NodeStatus], n: usize) {
    assert_eq!(statuses.len(), n, "{statuses:?}");
    for s in statuses {
        let peers: Vec<NodeId> = s.peer_rtt_us.iter().map(|(p, _)| *p).collect();
        let others: Vec<NodeId> = statuses
            .iter()
            .map(|o| o.node)
            .filter(|o| *o != s.node)
            .collect();
        assert_eq!(peers, others, "node {} links: {statuses:?}", s.node);
        assert!(
            s.peer_rtt_us.iter().all(|(_, rtt)| *rtt > 0),
            "the kernel's RTT, never a made-up zero: {statuses:?}"
        );
    }
}

async fn serves_over_tcp(protocol: Protocol, n: u32) {
    let cluster = Cluster::start_with(protocol, n, TCP);
    assert_eq!(cluster.config.transport(), node::Transport::Tcp);
    let mut client = cluster.client(1, &[]);
    client
        .wait_ready(n as usize, Duration::from_secs(10))
        .await
        .expect("cluster ready");
    puts_and_gets(&mut client).await;
    linked_with_rtts(&client.statuses().await, n as usize);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_paxos_serves_puts_and_gets_over_tcp() {
    serves_over_tcp(Protocol::MultiPaxos, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_paxos_serves_puts_and_gets_over_tcp() {
    serves_over_tcp(Protocol::BasicPaxos, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreplicated_serves_puts_and_gets_over_tcp() {
    serves_over_tcp(Protocol::Unreplicated, 1).await;
}

/// The nodes listen on TCP only: a QUIC client finds nothing at their address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_cluster_does_not_answer_quic() {
    let cluster = Cluster::start_with(Protocol::Unreplicated, 1, TCP);
    let mut client = cluster.client(2, &[]);
    client
        .wait_ready(1, Duration::from_secs(10))
        .await
        .expect("ready over TCP");
    let certs = cluster.config.client_certs().unwrap();
    let quic =
        node::client_endpoint_on("127.0.0.1:0".parse().unwrap(), &certs, &Default::default())
            .unwrap();
    let mut over_quic = KvClient::new(quic, vec![(NodeId(0), cluster.config.nodes[0].addr)], {
        node::client::new_session(3)
    });
    over_quic.max_attempts = 1;
    assert!(
        over_quic.call(put("k", "v")).await.is_err(),
        "a QUIC client was served by a TCP node"
    );
    cluster.stop().await;
}

/// A peer (node 0's genuine certificate, dialing node 2 as the lower id does) whose hello
/// claims another node, and a peer whose node certificate comes from another CA, are refused,
/// each counted; the cluster keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_a_wrong_identity_are_refused_over_tcp() {
    let cluster = Cluster::start_with(Protocol::MultiPaxos, 3, TCP);
    let mut client = cluster.client(4, &[]);
    client
        .wait_ready(3, Duration::from_secs(10))
        .await
        .expect("cluster ready");
    let tuning = TransportTuning::default();
    let target = cluster.config.nodes[2].addr;
    let metrics = &cluster.metrics[2];

    // A hello that contradicts the certificate.
    let n0 = &cluster.config.nodes[0];
    let own = NodeCerts::load(NodeId(0), &cluster.config.ca, &n0.cert, &n0.key).unwrap();
    let impostor = node::tcp_endpoint("127.0.0.1:0".parse().unwrap(), &own, &tuning).unwrap();
    let before = metrics.identities_refused.load(Ordering::Relaxed);
    let mut stream = impostor.dialer().dial(target, NodeId(2)).await.unwrap();
    let hello = Codec::default()
        .encode_to_bytes(&PeerFrame::Hello(PeerHello { node: NodeId(9) }))
        .unwrap();
    stream.write_all(&hello).await.unwrap();
    stream.flush().await.unwrap();
    read_until_closed(&mut stream).await.ok();
    counted(&metrics.identities_refused, before, "the lying hello").await;

    // A node certificate of another CA, presented to a node that trusts only its own CA.
    let foreign = ClusterCerts::generate(1).unwrap();
    let stranger = NodeCerts::new(
        NodeId(0),
        own.ca().clone(),
        foreign.node(NodeId(0)).unwrap().chain().to_vec(),
        foreign.node(NodeId(0)).unwrap().key().clone_key(),
    )
    .unwrap();
    let stranger = node::tcp_endpoint("127.0.0.1:0".parse().unwrap(), &stranger, &tuning).unwrap();
    let before = metrics.handshakes_failed.load(Ordering::Relaxed);
    match stranger.dialer().dial(target, NodeId(2)).await {
        Err(e) => panic!("this side's handshake completes first: {e}"),
        Ok(mut stream) => {
            let refused = read_until_closed(&mut stream).await.unwrap_err();
            assert!(refused.contains("UnknownCA"), "{refused}");
        }
    }
    counted(&metrics.handshakes_failed, before, "the foreign peer").await;

    assert_eq!(
        client.call(put("still", "here")).await.unwrap(),
        Outcome::Done
    );
    linked_with_rtts(&client.statuses().await, 3);
    cluster.stop().await;
}

/// A client whose certificate comes from another CA is refused at the handshake (the node
/// sends `unknown_ca`, and counts it), while the legitimate client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused_over_tcp() {
    let cluster = Cluster::start_with(Protocol::MultiPaxos, 3, TCP);
    let mut client = cluster.client(5, &[]);
    let leader = client
        .wait_ready(3, Duration::from_secs(10))
        .await
        .expect("cluster ready")
        .expect("a leader");
    let certs = cluster.config.client_certs().unwrap();
    let foreign = ClusterCerts::generate(1).unwrap();
    let stranger = ClientCerts::new(
        certs.ca().clone(),
        foreign.client().chain().to_vec(),
        foreign.client().key().clone_key(),
    )
    .unwrap();
    let dialer = node::tcp_client_endpoint(&stranger, &TransportTuning::default()).unwrap();
    let metrics = &cluster.metrics[leader.0 as usize];
    let before = metrics.handshakes_failed.load(Ordering::Relaxed);
    let addr = cluster.config.nodes[leader.0 as usize].addr;
    let mut stream = dialer.dial(addr, leader).await.unwrap();
    let refused = read_until_closed(&mut stream).await.unwrap_err();
    assert!(refused.contains("UnknownCA"), "{refused}");
    counted(&metrics.handshakes_failed, before, "the foreign client").await;

    // The same through the client library: the request fails, nothing is served.
    let mut kv = KvClient::new(
        ClientEndpoint::from(dialer),
        vec![(leader, addr)],
        node::client::new_session(6),
    );
    kv.max_attempts = 1;
    assert!(kv.call(put("k", "stranger")).await.is_err());

    assert_eq!(client.call(put("k", "ours")).await.unwrap(), Outcome::Done);
    assert_eq!(
        client.call(get("k")).await.unwrap(),
        Outcome::Value(Some(Bytes::from("ours")))
    );
    cluster.stop().await;
}

/// Garbage on one client connection closes that connection, with a counter; the client's
/// other connection, the other clients and the peer links carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_frame_closes_only_its_connection_over_tcp() {
    let cluster = Cluster::start_with(Protocol::MultiPaxos, 3, TCP);
    let mut client = cluster.client(7, &[]);
    let leader = client
        .wait_ready(3, Duration::from_secs(10))
        .await
        .expect("cluster ready")
        .expect("a leader");
    let mut other = cluster.connection(leader.0).await;
    let certs = cluster.config.client_certs().unwrap();
    let dialer = node::tcp_client_endpoint(&certs, &TransportTuning::default()).unwrap();
    let addr = cluster.config.nodes[leader.0 as usize].addr;
    let metrics = &cluster.metrics[leader.0 as usize];
    let before = metrics.bad_frames.load(Ordering::Relaxed);
    let mut stream = dialer.dial(addr, leader).await.unwrap();
    stream
        .write_all(&[0, 0, 0, 5, 0xEE, 1, 2, 3, 4])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    read_until_closed(&mut stream).await.ok();
    assert_eq!(metrics.bad_frames.load(Ordering::Relaxed), before + 1);

    assert_eq!(other.status().await.unwrap().role, Role::Leader);
    assert_eq!(
        client.call(put("after", "garbage")).await.unwrap(),
        Outcome::Done
    );
    linked_with_rtts(&client.statuses().await, 3);
    cluster.stop().await;
}

/// A follower and then the leader are stopped and started again (with their write-ahead
/// logs, so each rejoins as a voter): the cluster keeps committing without each (a new leader is
/// elected over TCP when the leader goes), and each restarted node is linked to every peer again
/// and catches up to the leader's executed slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_restarted_nodes_rejoin_over_tcp() {
    let mut cluster = Cluster::start_configured(
        3,
        |file| {
            file.durability = node::config::Durability::Fsync;
            file.transport.transport = Some(node::Transport::Tcp);
        },
        "",
    );
    let mut client = cluster.client(8, &[]);
    let leader = client
        .wait_ready(3, Duration::from_secs(10))
        .await
        .expect("cluster ready")
        .expect("a leader");
    let follower = NodeId((leader.0 + 1) % 3);
    let mut next = 0;
    for round in [follower, leader] {
        for _ in 0..10 {
            let out = client.call(put("k", &next.to_string())).await.unwrap();
            assert_eq!(out, Outcome::Done);
            next += 1;
        }
        cluster.stop_node(round).await;
        for _ in 0..10 {
            let out = client.call(put("k", &next.to_string())).await.unwrap();
            assert_eq!(out, Outcome::Done, "with node {round} down");
            next += 1;
        }
        cluster.restart_node(round);
        let now_leading = client
            .wait_ready(3, Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("node {round} did not rejoin: {e}"))
            .expect("a leader");
        // Catches up: the same executed slot as the leader once writes stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = client.statuses().await;
            let of = |id: NodeId| statuses.iter().find(|s| s.node == id).map(|s| s.executed);
            if statuses.len() == 3 && of(round) == of(now_leading) {
                linked_with_rtts(&statuses, 3);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {round} did not catch up: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        client.call(get("k")).await.unwrap(),
        Outcome::Value(Some(Bytes::from((next - 1).to_string())))
    );
    cluster.stop().await;
}
