//! Measures the transport on this machine (loopback):
//!
//! 1. Round trip of a 64-byte put to the unreplicated node through the whole runtime (client
//!    stream, event loop, core, reply), one request at a time, over QUIC and over TLS-on-TCP
//!    (`TCP_NODELAY`), twice each, alternating, so that drift on a shared machine shows.
//! 2. Messages per second one node pushes to two peers over its QUIC endpoint: 64-byte frames
//!    (Accepted messages), coalesced 64 per write as the runtime's writer does, decoded at the
//!    receivers.
//!
//! `cargo run --release -p node --example transport`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use node::client::Connection;
use node::runtime::{self, Metrics, RuntimeConfig};
use node::{ClientEndpoint, ClusterCerts, NodeEndpoint, Transport, TransportTuning};
use paxos::{Accepted, Ballot, Command, Message, NodeId, Op, Protocol, RequestId, Slot};
use wire::{ClientFrame, Codec, ResponseFrame};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for transport in [
        Transport::Quic,
        Transport::Tcp,
        Transport::Quic,
        Transport::Tcp,
    ] {
        rtt(transport).await;
    }
    fanout().await;
}

async fn rtt(transport: Transport) {
    let certs = ClusterCerts::generate(1).unwrap();
    let tuning = TransportTuning::default();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let node_certs = certs.node(NodeId(0)).unwrap();
    let (ep, cep): (NodeEndpoint, ClientEndpoint) = match transport {
        Transport::Quic => (
            node::endpoint(loopback, node_certs, &tuning, None)
                .unwrap()
                .into(),
            node::client_endpoint_on(loopback, certs.client(), &tuning)
                .unwrap()
                .into(),
        ),
        Transport::Tcp => (
            node::tcp_endpoint(loopback, node_certs, &tuning)
                .unwrap()
                .into(),
            node::tcp_client_endpoint(certs.client(), &tuning)
                .unwrap()
                .into(),
        ),
    };
    let addr = ep.local_addr().unwrap();
    let config = RuntimeConfig {
        core: paxos::Config::new(Protocol::Unreplicated, NodeId(0), vec![NodeId(0)]),
        addrs: HashMap::from([(NodeId(0), addr)]),
        wal: None,
        recovered: None,
        rejoin_without_state: false,
        codec: Codec::default(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(runtime::run(ep, config, Arc::new(Metrics::default()), rx));
    let mut conn = Connection::open(&cep, NodeId(0), addr).await.unwrap();
    let value = Bytes::from(vec![7u8; 64]);
    let mut samples = Vec::new();
    for i in 0..10_000u64 {
        let cmd = Command {
            client: node::client::new_session(1),
            request: RequestId(i + 1),
            op: Op::Put {
                key: Bytes::from_static(b"key"),
                value: value.clone(),
            },
        };
        let t = Instant::now();
        conn.send(&[ClientFrame::Request(cmd)]).await.unwrap();
        let ResponseFrame::Response(_) = conn.recv().await.unwrap() else {
            panic!("status?")
        };
        if i >= 1_000 {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{transport}: round trip, 64-byte put to the unreplicated node ({} samples): p50 {:?}  p90 {:?}  p99 {:?}",
        samples.len(),
        q(0.5),
        q(0.9),
        q(0.99)
    );
    conn.close();
    stop.send_replace(true);
    node.await.unwrap().unwrap();
}

async fn fanout() {
    let certs = ClusterCerts::generate(3).unwrap();
    let tuning = TransportTuning::default();
    let eps: Vec<_> = (0..3)
        .map(|i| {
            node::endpoint(
                "127.0.0.1:0".parse().unwrap(),
                certs.node(NodeId(i)).unwrap(),
                &tuning,
                None,
            )
            .unwrap()
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    for ep in &eps[1..] {
        let ep = ep.clone();
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    let (conn, _) = node::accept_incoming(incoming).await.unwrap();
                    let mut recv = conn.accept_uni().await.unwrap();
                    let codec = Codec::default();
                    let mut buf = BytesMut::new();
                    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                        buf.extend_from_slice(&chunk.bytes);
                        let mut n = 0;
                        while let Ok(Some(_m)) = codec.decode::<Message>(&mut buf) {
                            n += 1;
                        }
                        received.fetch_add(n, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    let codec = Codec::default();
    let msg = Message::Accepted(Accepted {
        ballot: Ballot::new(3, NodeId(0)),
        slot: Slot(123_456),
        executed: Slot(123_000),
    });
    let frame = codec.encode_to_bytes(&msg).unwrap();
    let mut writers = Vec::new();
    let run_for = Duration::from_secs(3);
    for peer in 1..3u32 {
        let conn = node::connect_node(
            &eps[0],
            eps[peer as usize].local_addr().unwrap(),
            NodeId(peer),
        )
        .await
        .unwrap();
        let frame = frame.clone();
        writers.push(tokio::spawn(async move {
            let mut send = conn.open_uni().await.unwrap();
            let start = Instant::now();
            let mut sent = 0u64;
            let mut buf = BytesMut::new();
            while start.elapsed() < run_for {
                // As the runtime's writer does: copy the turn's frames into one buffer, one write.
                for _ in 0..64 {
                    buf.extend_from_slice(&frame);
                }
                send.write_chunk(buf.split().freeze()).await.unwrap();
                sent += 64;
            }
            sent
        }));
    }
    let start = Instant::now();
    let mut sent = 0;
    for w in writers {
        sent += w.await.unwrap();
    }
    let secs_sent = start.elapsed().as_secs_f64();
    // Let the receivers drain what is in flight, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = start.elapsed().as_secs_f64().max(secs_sent);
    let got = received.load(Ordering::Relaxed);
    println!(
        "one node to two peers, {}-byte frames, 64 per write: {:.2} M messages/s delivered ({} of {} sent, {:.1} s)",
        frame.len(),
        got as f64 / secs / 1e6,
        got,
        sent,
        secs
    );
}
