//! The wire counters of a node's status (`NodeStatus::wire`), end to end: a 3-node Multi-Paxos
//! cluster served in this process, over QUIC and over TCP, takes puts, and the counters move
//! as they must. Every Accept the leader sends is received by a follower (loopback loses
//! nothing; the relation is asserted exactly, over a span bounded by settled readings); the
//! bytes grow with the puts at least by the payload they carry; QUIC counts datagrams, TCP
//! reports none (`None`, not 0); a follower restarted does not make the leader's totals go
//! backwards. Waits poll the nodes; nothing sleeps in the hope that
//! something happened.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::client::KvClient;
use paxos::{MessageKind, Op, Outcome, Role};
use support::Cluster;
use wire::{NodeStatus, Traffic};

const TCP: &str = "\n[transport]\ntransport = \"tcp\"\n";

/// Every put carries a value this long: the floor of what the puts add to the byte counts.
const VALUE_LEN: usize = 256;

const ACCEPT: usize = MessageKind::Accept as usize;
const ACCEPTED: usize = MessageKind::Accepted as usize;

/// `n` puts of distinct `VALUE_LEN`-byte values, from `first` on, each acknowledged.
async fn puts(client: &mut KvClient, first: usize, n: usize) {
    for i in first..first + n {
        let value = format!("{i:0>width$}", width = VALUE_LEN);
        let op = Op::Put {
            key: Bytes::from(format!("k{}", i % 16)),
            value: Bytes::from(value),
        };
        assert_eq!(client.call(op).await.unwrap(), Outcome::Done, "put {i}");
    }
}

/// Every node's status, by id (all three must answer).
async fn statuses(client: &mut KvClient) -> Vec<NodeStatus> {
    let mut s = client.statuses().await;
    assert_eq!(s.len(), 3, "every node answers: {s:?}");
    s.sort_by_key(|s| s.node);
    s
}

/// How many Accepts (or Accepteds) were sent and not (yet) received, over the whole cluster:
/// what every node sent of the kind, less what every node received of it.
fn unreceived(s: &[NodeStatus], kind: usize) -> i128 {
    let sent: u64 = s.iter().map(|s| s.counters.sent[kind]).sum();
    let received: u64 = s.iter().map(|s| s.wire.received[kind]).sum();
    i128::from(sent) - i128::from(received)
}

/// Statuses once nothing of the protocol's own traffic is in flight: two readings 50 ms
/// apart in which the Accept and Accepted counts have not moved. Multi-Paxos sends Accepts only
/// for proposals (and re-sends after `retry_timeout`, counted as sent again), so with no put
/// outstanding the counts settle as soon as the last ones land. Bounded: 5 s.
async fn settled(client: &mut KvClient) -> Vec<NodeStatus> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let key = |s: &[NodeStatus]| {
        s.iter()
            .map(|s| {
                (
                    s.counters.sent[ACCEPT],
                    s.counters.sent[ACCEPTED],
                    s.wire.received[ACCEPT],
                    s.wire.received[ACCEPTED],
                )
            })
            .collect::<Vec<_>>()
    };
    let mut last = statuses(client).await;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = statuses(client).await;
        if key(&now) == key(&last) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the Accept counts never settled: {:?}",
            key(&now)
        );
        last = now;
    }
}

fn leader(s: &[NodeStatus]) -> &NodeStatus {
    let leaders: Vec<&NodeStatus> = s.iter().filter(|s| s.role == Role::Leader).collect();
    assert_eq!(leaders.len(), 1, "one leader: {s:?}");
    leaders[0]
}

/// What `after` counted more than `before`, for one class of traffic.
fn grown(before: &Traffic, after: &Traffic) -> (u64, u64) {
    assert!(
        after.bytes_sent >= before.bytes_sent && after.bytes_received >= before.bytes_received,
        "traffic never goes backwards: {before:?} then {after:?}"
    );
    (
        after.bytes_sent - before.bytes_sent,
        after.bytes_received - before.bytes_received,
    )
}

/// What every node's traffic of both classes must look like on this transport.
fn carrier_shape(s: &[NodeStatus], quic: bool) {
    for st in s {
        for (class, t) in [("peer", &st.wire.peer), ("client", &st.wire.client)] {
            assert!(
                t.bytes_sent > 0 && t.bytes_received > 0 && t.writes > 0,
                "node {} {class}: {t:?}",
                st.node
            );
            if quic {
                let (sent, received) = (t.datagrams_sent, t.datagrams_received);
                let (Some(sent), Some(received)) = (sent, received) else {
                    panic!("QUIC counts datagrams: node {} {class}: {t:?}", st.node)
                };
                assert!(sent > 0 && received > 0, "node {} {class}: {t:?}", st.node);
                // A datagram is at least a byte; a send operation carries at least one.
                assert!(t.bytes_sent >= sent && t.writes <= sent, "{class}: {t:?}");
            } else {
                assert_eq!(
                    (t.datagrams_sent, t.datagrams_received),
                    (None, None),
                    "TCP has no datagrams: node {} {class}",
                    st.node
                );
            }
        }
    }
}

/// Puts in two rounds (`small`, then `large`), each between settled readings, and the
/// relations the counters must keep.
async fn counters_move(extra: &str, quic: bool) {
    let cluster = Cluster::start(extra);
    let mut client = cluster.client(1, &[]);
    client
        .wait_ready(3, Duration::from_secs(10))
        .await
        .expect("cluster ready");
    // A first put, so that the leader's first proposals and the connections are behind us.
    puts(&mut client, 0, 1).await;
    let (small, large) = (20, 80);
    let dropped = |c: &Cluster| -> Vec<u64> {
        c.metrics
            .iter()
            .map(|m| m.frames_dropped.load(Ordering::Relaxed))
            .collect()
    };
    let s0 = settled(&mut client).await;
    let dropped0 = dropped(&cluster);
    puts(&mut client, 1, small).await;
    let s1 = settled(&mut client).await;
    puts(&mut client, 1 + small, large).await;
    let s2 = settled(&mut client).await;
    carrier_shape(&s2, quic);
    // No node dropped a frame for a full or unreachable peer queue while the puts ran.
    assert_eq!(
        dropped(&cluster),
        dropped0,
        "frames dropped during the puts"
    );

    let l = leader(&s2).node;
    assert_eq!(leader(&s0).node, l, "no election during the test");
    let li = l.0 as usize;
    for (from, to, n) in [(&s0, &s1, small), (&s1, &s2, large)] {
        // The relation: over a span that starts and ends with settled readings, every Accept
        // and every Accepted sent was received, exactly once. Loopback drops no datagram, and
        // QUIC and TCP deliver each stream byte once, in order; the frames a node drops for a
        // full or unreachable peer queue are counted, and none were (asserted above). So the
        // sent-but-not-received count is the same at both ends of the span (it need not be 0
        // over the whole run: a proposal sent while a peer link was still forming is lost).
        for kind in [ACCEPT, ACCEPTED] {
            assert_eq!(
                unreceived(to, kind),
                unreceived(from, kind),
                "{n} puts: kind {kind} sent {:?} received {:?}",
                to.iter().map(|s| s.counters.sent[kind]).collect::<Vec<_>>(),
                to.iter().map(|s| s.wire.received[kind]).collect::<Vec<_>>(),
            );
        }
        // Only the leader sends Accepts, and these puts go one at a time (each is answered
        // before the next is sent), so each is a slot of its own, proposed to both followers.
        let accepts_sent = to[li].counters.sent[ACCEPT] - from[li].counters.sent[ACCEPT];
        let accepts_received: u64 = (0..3)
            .filter(|&i| i != li)
            .map(|i| to[i].wire.received[ACCEPT] - from[i].wire.received[ACCEPT])
            .sum();
        assert_eq!(accepts_received, accepts_sent, "{n} puts");
        for i in (0..3).filter(|&i| i != li) {
            let got = to[i].wire.received[ACCEPT] - from[i].wire.received[ACCEPT];
            assert!(got >= n as u64, "follower {i}: {got} Accepts for {n} puts");
        }
        // Each put's value went to the leader from the client, and from the leader to both
        // followers in an Accept: the bytes grew by at least that much.
        let (peer_sent, _) = grown(&from[li].wire.peer, &to[li].wire.peer);
        let (_, client_received) = grown(&from[li].wire.client, &to[li].wire.client);
        let payload = (n * VALUE_LEN) as u64;
        assert!(
            peer_sent >= 2 * payload,
            "{n} puts: the leader sent {peer_sent} peer bytes for {payload} bytes of values"
        );
        assert!(
            client_received >= payload,
            "{n} puts: the leader received {client_received} client bytes"
        );
        for i in (0..3).filter(|&i| i != li) {
            let (_, peer_received) = grown(&from[i].wire.peer, &to[i].wire.peer);
            assert!(
                peer_received >= payload,
                "follower {i} received {peer_received} peer bytes"
            );
        }
        if quic {
            let d = |s: &NodeStatus| s.wire.peer.datagrams_sent.unwrap();
            assert!(d(&to[li]) > d(&from[li]), "{n} puts sent no datagram");
        }
    }
    // More puts, more bytes: the round of `large` puts carried more than the round of `small`.
    let peer_sent =
        |a: &NodeStatus, b: &NodeStatus| b.wire.peer.bytes_sent - a.wire.peer.bytes_sent;
    assert!(
        peer_sent(&s1[li], &s2[li]) > peer_sent(&s0[li], &s1[li]),
        "{small} then {large} puts: {} then {} bytes",
        peer_sent(&s0[li], &s1[li]),
        peer_sent(&s1[li], &s2[li])
    );
    // The runtime's own view is the status's (read again now: it only grew since).
    let now = cluster.metrics[li].wire_counters();
    assert!(now.received[ACCEPTED] >= s2[li].wire.received[ACCEPTED]);
    assert!(now.peer.bytes_sent >= s2[li].wire.peer.bytes_sent);
    reconnect_keeps_the_totals(cluster, client, &s2, li, quic).await;
}

/// A follower stopped and started again: the leader's connection to it closes and a new one
/// replaces it, and the leader's totals do not go backwards. The old connection carried every
/// Accept of the puts (over 100 x 256 bytes); the new one only the catch-up of 16 keys, so
/// totals that forgot a closed connection's counts would fall.
async fn reconnect_keeps_the_totals(
    mut cluster: Cluster,
    mut client: KvClient,
    before: &[NodeStatus],
    li: usize,
    quic: bool,
) {
    let f = (0..3).find(|&i| i != li).unwrap();
    let target = before[li].executed;
    cluster.stop_node(paxos::NodeId(f as u32)).await;
    // A stopped QUIC node's socket may linger a moment after it stopped (cluster.rs waits for
    // it the same way): restart it once its address is free, within 5 s.
    let addr = cluster.config.nodes[f].addr;
    let deadline = Instant::now() + Duration::from_secs(5);
    while quic && std::net::UdpSocket::bind(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "node {f}'s address stayed in use"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.restart_node(paxos::NodeId(f as u32));
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let s = client.statuses().await;
        let caught_up = s.len() == 3
            && s.iter()
                .any(|s| s.node.0 as usize == f && s.executed >= target)
            && s.iter().any(|s| {
                s.node.0 as usize == li && s.peer_rtt_us.iter().any(|(p, _)| p.0 as usize == f)
            });
        if caught_up {
            let mut s = s;
            s.sort_by_key(|s| s.node);
            break s;
        }
        assert!(Instant::now() < deadline, "node {f} did not rejoin: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (b, a) = (&before[li].wire.peer, &after[li].wire.peer);
    grown(b, a);
    assert!(a.writes >= b.writes, "{b:?} then {a:?}");
    if quic {
        assert!(
            a.datagrams_sent.unwrap() >= b.datagrams_sent.unwrap(),
            "{b:?} then {a:?}"
        );
    }
    // The restarted node counts from zero again, as a restart should.
    assert!(
        after[f].wire.received[ACCEPT] < before[f].wire.received[ACCEPT],
        "node {f} restarted: {:?} then {:?}",
        before[f].wire.received,
        after[f].wire.received
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_counters_move_with_the_puts_over_quic() {
    counters_move("", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_counters_move_with_the_puts_over_tcp() {
    counters_move(TCP, false).await;
}
