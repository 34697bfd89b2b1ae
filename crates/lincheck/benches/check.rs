//! Operations checked per second on histories shaped like a benchmark run's: closed-loop
//! clients against a linearizable store, each operation taking effect at a random instant of
//! its interval, a few writes timing out (unknown outcome, half of them applied).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lincheck::{check, Call, Operation, Register, Ret, Verdict};

/// SplitMix64, so the bench needs no random-number crate and every run checks the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `ops` operations by `clients` closed-loop clients on `keys` keys: 50 % gets, 40 % puts,
/// 10 % deletes; latency 50 µs to 2 ms, 0 to 100 µs between a client's operations; 1 write in
/// 200 has an unknown outcome.
fn history(ops: usize, keys: u64, clients: u64, seed: u64) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut now = vec![0u64; clients as usize];
    // (true instant, operation, applied): filled in in true-instant order below.
    let mut planned: Vec<(u64, Operation, bool)> = Vec::with_capacity(ops);
    for i in 0..ops {
        let client = i as u64 % clients;
        let invoked = now[client as usize];
        let latency = 50_000 + rng.below(1_950_000);
        let returned = invoked + latency;
        now[client as usize] = returned + rng.below(100_000);
        let call = match rng.below(10) {
            0..5 => Call::Get,
            5..9 => Call::Put(format!("c{client}-{i}").into_bytes()),
            _ => Call::Delete,
        };
        let unknown = call != Call::Get && rng.below(200) == 0;
        let applied = !unknown || rng.below(2) == 0;
        let op = Operation {
            client,
            key: format!("key{}", rng.below(keys)).into_bytes(),
            call,
            invoked_ns: invoked,
            returned_ns: (!unknown).then_some(returned),
            ret: if unknown { Ret::Unknown } else { Ret::Done },
        };
        planned.push((invoked + rng.below(latency + 1), op, applied));
    }
    planned.sort_by_key(|(at, _, _)| *at);
    let mut registers: HashMap<Vec<u8>, Register> = HashMap::new();
    let mut out: Vec<Operation> = planned
        .into_iter()
        .map(|(_, mut op, applied)| {
            if applied {
                let answer = registers.entry(op.key.clone()).or_default().apply(&op.call);
                if op.ret != Ret::Unknown {
                    op.ret = answer;
                }
            }
            op
        })
        .collect();
    out.sort_by_key(|op| op.invoked_ns);
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    let cases = [
        (
            "100k-ops-1000-keys-8-clients",
            history(100_000, 1_000, 8, 1),
        ),
        ("10k-ops-10-keys-8-clients", history(10_000, 10, 8, 2)),
        ("10k-ops-1-key-8-clients", history(10_000, 1, 8, 3)),
    ];
    for (name, h) in &cases {
        // A bench of a wrong verdict would measure nothing useful.
        let report = check(h, Duration::from_secs(60)).expect("well-formed");
        assert_eq!(report.verdict, Verdict::Linearizable, "{name}: {report}");
        group.throughput(Throughput::Elements(h.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), h, |b, h| {
            b.iter(|| check(black_box(h), Duration::from_secs(60)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
