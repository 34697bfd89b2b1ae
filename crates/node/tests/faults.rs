//! Faults imposed during a run, through the nodes' emulated links: three Multi-Paxos nodes in
//! this process, each run by `node::serve::serve` from a cluster file, over quinn on 127.0.0.1.
//! With an empty `[emulation]` section the cluster commits as usual; the leader cut off from
//! both followers (each side told to block the other) loses the lead to a follower, which
//! commits without it while the old leader counts what its blocked links dropped; lifted, the
//! old leader catches up. Without `[emulation]`, an impairment is refused with an error that
//! says why. Every wait polls the nodes' status until a condition holds or a deadline passes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod support;
use support::Cluster;

use bytes::Bytes;
use node::client::{ClientError, KvClient};
use node::emulation::partition;
use paxos::{NodeId, Op, Outcome, Role};
use wire::{ClientFrame, Impairment, LinkImpairment, NodeStatus, ResponseFrame};

/// One cluster at a time: the machine has two cores and elections are timed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn status_of(statuses: &[NodeStatus], node: NodeId) -> Option<&NodeStatus> {
    statuses.iter().find(|s| s.node == node)
}

/// Polls every node's status until `done` says yes, for at most `limit`; returns the statuses
/// that satisfied it. `what` names the condition in the failure.
async fn poll_until(
    client: &mut KvClient,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[NodeStatus]) -> bool,
) -> Vec<NodeStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let statuses = client.statuses().await;
        if done(&statuses) {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last statuses: {statuses:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_catches_up_once_the_partition_is_lifted() {
    let _serial = SERIAL.lock().await;
    // An [emulation] section with nothing in it: no configured delay, but faults possible.
    let cluster = Cluster::start("\n[emulation]\n");
    assert_eq!(
        cluster.config.emulation.as_ref().map(|e| e.links.len()),
        Some(0)
    );
    let mut client = cluster.client(1, &[]);
    let old = client
        .wait_ready(3, Duration::from_secs(30))
        .await
        .expect("cluster ready")
        .expect("Multi-Paxos has a leader");
    assert_eq!(
        client.call(put("before", "1")).await.unwrap(),
        Outcome::Done
    );
    let (leader, old_ballot) = client.leadership().await.expect("a leader");
    assert_eq!(leader, old);
    let followers: Vec<NodeId> = (0..3).map(NodeId).filter(|&n| n != old).collect();

    // Every node has an emulated link, unimpaired, that has dropped nothing.
    let statuses = client.statuses().await;
    assert_eq!(statuses.len(), 3);
    for s in &statuses {
        let e = s.emulation.as_ref().expect("an emulated link");
        assert!(e.impairment.is_empty() && e.dropped_fault == 0, "{s:?}");
    }

    // A peer the node does not have is refused, and the connection stays usable.
    let err = client
        .impair(
            old,
            Impairment::to_each([NodeId(9)], LinkImpairment::BLOCKED),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Impair { .. }) && err.to_string().contains("has no peer 9"),
        "{err}"
    );

    // The partition: the leader blocks both followers, and each follower blocks the leader.
    let plan = partition(&[&[old], &followers]);
    assert_eq!(plan.len(), 3);
    for (node, impairment) in &plan {
        client.impair(*node, impairment.clone()).await.unwrap();
    }
    let cut_at = Instant::now();

    // The followers elect one of them, at a higher ballot, and it leads the other.
    let statuses = poll_until(
        &mut client,
        Duration::from_secs(30),
        "a follower leads at a higher ballot, followed by the other",
        |ss| {
            ss.iter().any(|s| {
                s.node != old
                    && s.role == Role::Leader
                    && s.ballot > old_ballot
                    && ss
                        .iter()
                        .filter(|o| o.node != old && o.node != s.node)
                        .all(|o| o.leader == Some(s.node))
            })
        },
    )
    .await;
    let new = statuses
        .iter()
        .find(|s| s.node != old && s.role == Role::Leader)
        .unwrap()
        .node;
    eprintln!(
        "node {} took over from node {} {:?} after the cut",
        new.0,
        old.0,
        cut_at.elapsed()
    );
    // Each side reports its half of the partition.
    let view = status_of(&statuses, old).expect("the old leader still answers clients");
    let imp = &view.emulation.as_ref().unwrap().impairment;
    for f in &followers {
        assert_eq!(imp.link(*f), Some(&LinkImpairment::BLOCKED), "{view:?}");
    }
    for f in &followers {
        let imp = &status_of(&statuses, *f)
            .unwrap()
            .emulation
            .as_ref()
            .unwrap()
            .impairment;
        assert_eq!(imp.links, vec![(old, LinkImpairment::BLOCKED)]);
    }

    // The majority commits without the old leader.
    let mut majority = cluster.client(2, &followers);
    for i in 0..5 {
        let outcome = majority
            .call(put(&format!("during-{i}"), "2"))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done);
    }
    let statuses = poll_until(
        &mut client,
        Duration::from_secs(10),
        "the old leader's blocked links dropped datagrams",
        |ss| {
            status_of(ss, old)
                .and_then(|s| s.emulation.as_ref())
                .is_some_and(|e| e.dropped_fault > 0)
        },
    )
    .await;
    let old_view = status_of(&statuses, old).unwrap();
    let new_view = status_of(&statuses, new).unwrap();
    eprintln!(
        "during the partition: old leader executed {:?}, dropped_fault {}; new leader executed {:?}",
        old_view.executed,
        old_view.emulation.as_ref().unwrap().dropped_fault,
        new_view.executed
    );
    assert!(
        old_view.executed < new_view.executed,
        "the cut-off node cannot have executed the majority's writes: {old_view:?} {new_view:?}"
    );
    let target = new_view.executed;
    // The counter the status reports is the node's own.
    assert!(
        cluster.metrics[old.0 as usize]
            .emulation
            .dropped_fault
            .load(Ordering::Relaxed)
            > 0
    );

    // Lifted everywhere: the old leader learns what it missed.
    for (node, _) in &plan {
        client.impair(*node, Impairment::none()).await.unwrap();
    }
    let lifted_at = Instant::now();
    let statuses = poll_until(
        &mut client,
        Duration::from_secs(60),
        "the old leader caught up with the new leader's executed slot",
        |ss| status_of(ss, old).is_some_and(|s| s.executed >= target),
    )
    .await;
    eprintln!(
        "old leader caught up {:?} after the lift: {:?}",
        lifted_at.elapsed(),
        status_of(&statuses, old)
    );
    for s in &statuses {
        assert!(s.emulation.as_ref().unwrap().impairment.is_empty(), "{s:?}");
    }
    // And the whole cluster serves the writes made during the partition.
    let got = client
        .call(Op::Get {
            key: Bytes::from_static(b"during-4"),
        })
        .await
        .unwrap();
    assert_eq!(got, Outcome::Value(Some(Bytes::from_static(b"2"))));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_emulation_section_impairments_are_refused_and_bad_ones_never_hurt() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start("");
    assert!(cluster.config.emulation.is_none());
    let mut client = cluster.client(1, &[]);
    client
        .wait_ready(3, Duration::from_secs(30))
        .await
        .expect("cluster ready");
    let statuses = client.statuses().await;
    assert!(
        statuses.iter().all(|s| s.emulation.is_none()),
        "{statuses:?}"
    );

    let err = client
        .impair(
            NodeId(2),
            Impairment::to_each([NodeId(0)], LinkImpairment::BLOCKED),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ClientError::Impair {
                node: NodeId(2),
                ..
            }
        ) && text.contains("node 2 has no emulated link: add an [emulation] section"),
        "{text}"
    );
    // Lifting is refused the same way: nothing is ever silently ignored.
    assert!(client.impair(NodeId(1), Impairment::none()).await.is_err());

    // A loss that is no probability is refused by the client before it leaves...
    let mut conn = cluster.connection(0).await;
    let bad = Impairment::to_each([NodeId(1)], LinkImpairment::loss(2.0));
    let err = conn.impair(bad.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("loss 2 is not a probability"),
        "{err}"
    );
    conn.status().await.expect("the connection is still usable");
    // ...and, sent anyway, the node closes that client's connection saying why, and runs on.
    conn.send(&[ClientFrame::Impair(bad)]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), conn.recv())
        .await
        .expect("the node answers a bad frame by closing")
        .unwrap_err();
    assert!(
        err.to_string().contains("LinkImpairment.loss is 2"),
        "the close reason names the field: {err}"
    );
    assert_eq!(
        cluster.metrics[0].bad_frames.load(Ordering::Relaxed),
        1,
        "counted as a bad frame"
    );
    let mut again = cluster.connection(0).await;
    let s = again.status().await.expect("the node still serves");
    assert_eq!(s.node, NodeId(0));
    // A well-formed impairment sent raw is answered with the refusal, not closed on.
    again
        .send(&[ClientFrame::Impair(Impairment::to_each(
            [NodeId(5)],
            LinkImpairment::delay_us(10),
        ))])
        .await
        .unwrap();
    match again.recv().await.unwrap() {
        ResponseFrame::Impaired(Err(why)) => assert!(why.contains("no emulated link"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.call(put("k", "v")).await.unwrap(), Outcome::Done);
    cluster.stop().await;
}
