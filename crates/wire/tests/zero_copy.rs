//! Keys and values of decoded frames are slices of the read buffer, not copies.

use bytes::{Bytes, BytesMut};
use paxos::{Accept, Ballot, ClientId, Command, Message, NodeId, Op, RequestId, Slot, Time, Value};
use wire::{decode_frame, encode_frame};

#[test]
fn decoded_batches_borrow_the_read_buffer() {
    let cmds: Vec<Command> = (0..100u64)
        .map(|i| Command {
            client: ClientId(i.into()),
            request: RequestId(i),
            op: Op::Put {
                key: Bytes::from(vec![i as u8; 16]),
                value: Bytes::from(vec![7; 64]),
            },
        })
        .collect();
    let msg = Message::Accept(Accept {
        ballot: Ballot::new(1, NodeId(0)),
        slot: Slot(1),
        value: Value::stamped(Time(1_796_000_001_000_000_000), cmds),
        commit: Slot(0),
        truncate: Slot(0),
    });
    let mut buf = BytesMut::new();
    encode_frame(&msg, &mut buf).unwrap();
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();

    let decoded = decode_frame::<Message>(&mut buf).unwrap().unwrap();
    assert_eq!(decoded, msg);
    let Message::Accept(Accept { value, .. }) = decoded else {
        unreachable!()
    };
    for cmd in value.commands() {
        let Op::Put { key, value } = &cmd.op else {
            unreachable!()
        };
        assert!(range.contains(&(key.as_ptr() as usize)), "key was copied");
        assert!(
            range.contains(&(value.as_ptr() as usize)),
            "value was copied"
        );
    }
}

#[test]
fn the_benchmark_accept_is_as_large_as_the_docs_say() {
    let cmds: Vec<Command> = (0..100u64)
        .map(|i| Command {
            // A session begun in December 2026 with a generator's 32-bit nonce.
            client: ClientId::new(Time(1_796_000_000_000_000_000), 0x9e37_0000 + i % 8),
            request: RequestId(1_000_000 + i),
            op: Op::Put {
                key: Bytes::from(vec![b'k'; 16]),
                value: Bytes::from(vec![b'v'; 64]),
            },
        })
        .collect();
    let msg = Message::Accept(Accept {
        ballot: Ballot::new(7, NodeId(1)),
        slot: Slot(123_456),
        value: Value::stamped(Time(1_796_000_001_000_000_000), cmds),
        commit: Slot(123_440),
        truncate: Slot(113_000),
    });
    assert_eq!(encode_frame(&msg, &mut BytesMut::new()), Ok(9_727));
}
