//! Encode and decode throughput of the frames that dominate a Multi-Paxos run: an Accept carrying
//! a full batch (100 puts, 16-byte keys, 64-byte values) and the small Accepted that answers it.
//!
//! Each case runs twice, under `msgs/` (Throughput::Elements, messages per second) and `bytes/`
//! (Throughput::Bytes, frame bytes per second, length prefix included). An iteration encodes or
//! decodes 16 frames in one buffer, as the runtime does with coalesced writes and reads.
//!
//! `cargo bench -p wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use paxos::{
    Accept, Accepted, Ballot, ClientId, Command, Message, NodeId, Op, RequestId, Slot, Time, Value,
};
use wire::{decode_frame, encode_frame};

/// Frames per iteration: one writer turn / one read's worth.
const FRAMES: usize = 16;

fn accept_batch() -> Message {
    let cmds = (0..100u64)
        .map(|i| Command {
            // A session begun in December 2026 with a generator's 32-bit nonce.
            client: ClientId::new(Time(1_796_000_000_000_000_000), 0x9e37_0000 + i % 8),
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
        value: Value::stamped(Time(1_796_000_001_000_000_000), cmds),
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
            let n = FRAMES as u64;
            group.throughput(if per_msg {
                Throughput::Bytes(n * len as u64)
            } else {
                Throughput::Elements(n)
            });

            // Encode FRAMES frames into a reused buffer, as a writer task coalesces one loop turn.
            let mut out = BytesMut::with_capacity(FRAMES * len);
            group.bench_function(format!("encode/{name}"), |b| {
                b.iter(|| {
                    out.clear();
                    for _ in 0..FRAMES {
                        encode_frame(black_box(msg), &mut out).unwrap();
                    }
                })
            });

            // Decode a read buffer holding FRAMES coalesced frames, as one QUIC read delivers
            // them, and drop each message, as the node does once it has handled it. Dropping is
            // timed on purpose: keeping every decoded batch alive until criterion drops it makes
            // the allocator fetch fresh pages inside the timed loop, which a node in steady state
            // does not do. Filling the buffer is not timed.
            let mut stream = BytesMut::new();
            for _ in 0..FRAMES {
                encode_frame(msg, &mut stream).unwrap();
            }
            group.bench_function(format!("decode/{name}"), |b| {
                b.iter_batched_ref(
                    || stream.clone(),
                    |buf| {
                        while let Some(m) = decode_frame::<Message>(buf).unwrap() {
                            black_box(m);
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
