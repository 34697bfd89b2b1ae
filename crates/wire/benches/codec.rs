//! Encode and decode throughput of the frames that dominate a Multi-Paxos run: an Accept carrying
//! a full batch (100 puts, 16-byte keys, 64-byte values) and the small Accepted that answers it.
//!
//! Each case runs twice, under `msgs/` (Throughput::Elements, messages per second) and `bytes/`
//! (Throughput::Bytes, frame bytes per second, length prefix included).
//!
//! `cargo bench -p wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use paxos::{
    Accept, Accepted, Ballot, ClientId, Command, Message, NodeId, Op, RequestId, Slot, Value,
};
use wire::{decode_frame, encode_frame};

fn accept_batch() -> Message {
    let cmds = (0..100u64)
        .map(|i| Command {
            client: ClientId(1000 + i % 8),
            request: RequestId(1_000_000 + i),
            op: Op::Put {
                key: Bytes::from(format!("key-{i:012}").into_bytes()),
                value: Bytes::from(vec![b'v'; 64]),
            },
        })
        .collect();
    Message::Accept(Accept {
        ballot: Ballot::new(7, NodeId(1)),
        slot: Slot(123_456),
        value: Value::batch(cmds),
        commit: Slot(123_440),
        truncate: Slot(113_000),
    })
}

fn accepted() -> Message {
    Message::Accepted(Accepted {
        ballot: Ballot::new(7, NodeId(1)),
        slot: Slot(123_456),
        executed: Slot(123_440),
    })
}

fn bench(c: &mut Criterion) {
    let cases = [("accept_100x64B", accept_batch()), ("accepted", accepted())];
    for (unit, per_msg) in [("msgs", false), ("bytes", true)] {
        let mut group = c.benchmark_group(unit);
        for (name, msg) in &cases {
            let mut frame = BytesMut::new();
            let len = encode_frame(msg, &mut frame).unwrap();
            assert_eq!(len, frame.len());
            group.throughput(if per_msg {
                Throughput::Bytes(len as u64)
            } else {
                Throughput::Elements(1)
            });

            // Encode into a reused buffer, as a writer task does between writes.
            let mut out = BytesMut::with_capacity(2 * len);
            group.bench_function(format!("encode/{name}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode_frame(black_box(msg), &mut out).unwrap();
                })
            });

            // Decode off a read buffer; the setup (a fresh buffer holding one frame) and dropping
            // the decoded message are not timed.
            group.bench_function(format!("decode/{name}"), |b| {
                b.iter_batched(
                    || frame.clone(),
                    |mut buf| decode_frame::<Message>(&mut buf).unwrap().unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
