//! Runs the batch-100 Multi-Paxos path in a loop for profiling (`perf record`), without
//! criterion's own work in the samples.
use std::time::{Duration, Instant};

use bytes::Bytes;
use paxos::testing::LocalCluster;
use paxos::{ClientId, Command, Op, Protocol, RequestId};

fn main() {
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let cache: usize = std::env::var("CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
        c.max_batch = batch;
        c.reply_cache_per_client = cache;
    });
    c.track_durable = false;
    let leader = c.elect(Duration::from_secs(5)).expect("leader");
    let value = Bytes::from(vec![0xAB; 64]);
    let nkeys: u64 = std::env::var("KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let keys: Vec<Bytes> = (0..nkeys)
        .map(|i| Bytes::from(format!("key-{i:012}")))
        .collect();
    let mut request = 0u64;
    let start = Instant::now();
    let mut busy = Duration::ZERO;
    let total = 2_000_000u64;
    while request < total {
        let cmds: Vec<Command> = (0..20_000)
            .map(|_| {
                request += 1;
                let key = keys[(request % nkeys) as usize].clone();
                Command {
                    client: ClientId(1),
                    request: RequestId(request),
                    op: Op::Put {
                        key,
                        value: value.clone(),
                    },
                }
            })
            .collect();
        let t = Instant::now();
        for cmd in cmds {
            c.request(leader, cmd);
        }
        c.run();
        busy += t.elapsed();
        assert_eq!(c.replies.len(), 20_000);
        c.replies.clear();
    }
    println!(
        "batch {batch}: {:.0} commands/s in the core ({:.2?} total)",
        total as f64 / busy.as_secs_f64(),
        start.elapsed()
    );
}
