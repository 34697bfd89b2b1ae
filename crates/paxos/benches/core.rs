//! Commands per second through the whole core path — leader, acceptors, commit, execution,
//! replies — of an in-process 3-node cluster with no network (`paxos::testing::LocalCluster`,
//! writes durable at once). Every command is a put of a 64-byte value under a 16-byte key drawn
//! round-robin from 100 000 keys (or 1 000 for the hot-key variant: with three replicas' maps in
//! one process, 100 000 keys make every put a cache miss, which a real node on its own core sees
//! far less). Each iteration hands `COMMANDS` fresh requests to the leader at once and runs until
//! every one is answered, so batches fill to their limit.
//!
//! `snapshot` measures what a durable snapshot costs the event loop: copying a state of 100 000
//! keys, and that copy followed by `COMMANDS` puts (which pay for any sharing the copy left).

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use paxos::testing::LocalCluster;
use paxos::{ClientId, Command, KvState, NodeId, Op, Protocol, RequestId};

const COMMANDS: usize = 20_000;

/// Fresh commands (new request ids every call, so nothing is answered from the reply cache).
struct Workload {
    next_request: u64,
    value: Bytes,
    keys: u64,
}

impl Workload {
    fn new(keys: u64) -> Self {
        Workload {
            next_request: 0,
            value: Bytes::from(vec![0xAB; 64]),
            keys,
        }
    }

    fn commands(&mut self, n: usize) -> Vec<Command> {
        (0..n)
            .map(|_| {
                self.next_request += 1;
                let key = Bytes::from(format!("key-{:012}", self.next_request % self.keys));
                Command {
                    client: ClientId(1),
                    request: RequestId(self.next_request),
                    op: Op::Put {
                        key,
                        value: self.value.clone(),
                    },
                }
            })
            .collect()
    }
}

fn drive(c: &mut LocalCluster, to: NodeId, cmds: Vec<Command>) {
    let n = cmds.len();
    for cmd in cmds {
        c.request(to, cmd);
    }
    c.run();
    assert_eq!(c.replies.len(), n, "every command answered");
    c.replies.clear();
}

fn multi_paxos(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("multi_paxos_3_nodes");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    group.measurement_time(Duration::from_secs(5));
    for (name, batch, keys) in [
        ("batch", 1usize, 100_000),
        ("batch", 10, 100_000),
        ("batch", 100, 100_000),
        ("batch", 1000, 100_000),
        ("batch_hot_keys", 100, 1_000),
    ] {
        let mut cluster = LocalCluster::new(Protocol::MultiPaxos, 3, |c| c.max_batch = batch);
        cluster.track_durable = false;
        let leader = cluster.elect(Duration::from_secs(5)).expect("leader");
        let mut load = Workload::new(keys);
        group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, _| {
            b.iter_batched(
                || load.commands(COMMANDS),
                |cmds| drive(&mut cluster, leader, cmds),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn basic_paxos(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("basic_paxos_3_nodes");
    const N: usize = 2_000;
    group.throughput(Throughput::Elements(N as u64));
    let mut cluster = LocalCluster::new(Protocol::BasicPaxos, 3, |_| {});
    cluster.track_durable = false;
    let mut load = Workload::new(100_000);
    group.bench_function("uncontended_batch_1", |b| {
        b.iter_batched(
            || load.commands(N),
            |cmds| drive(&mut cluster, NodeId(0), cmds),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn unreplicated(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("unreplicated");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    let mut cluster = LocalCluster::new(Protocol::Unreplicated, 1, |_| {});
    let mut load = Workload::new(100_000);
    group.bench_function("single_node", |b| {
        b.iter_batched(
            || load.commands(COMMANDS),
            |cmds| drive(&mut cluster, NodeId(0), cmds),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn snapshot(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("snapshot");
    let mut load = Workload::new(100_000);
    let mut kv = KvState::default();
    for cmd in load.commands(100_000) {
        kv.apply(&cmd);
    }
    group.bench_function("copy_100k_keys", |b| b.iter(|| kv.clone()));
    group.throughput(Throughput::Elements(COMMANDS as u64));
    group.bench_function("copy_then_puts", |b| {
        b.iter_batched(
            || load.commands(COMMANDS),
            |cmds| {
                let copy = kv.clone();
                for cmd in &cmds {
                    kv.apply(cmd);
                }
                copy
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, multi_paxos, basic_paxos, unreplicated, snapshot);
criterion_main!(benches);
