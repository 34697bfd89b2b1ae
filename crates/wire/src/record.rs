//! Encoding of [`paxos::Record`]s, the durable changes a node's write-ahead log holds.
//!
//! A record body is a tag byte and a payload built from the same pieces as peer frames (see the
//! crate docs for `slot`, `ballot`, `value` and `state`):
//!
//! ```text
//! record = tag:u8 payload                 nothing may follow the payload
//!
//! tag   record        payload
//! 0x01  Promise       ballot
//! 0x02  SlotPromise   slot ballot
//! 0x03  Accept        slot ballot value
//! 0x04  Snapshot      upto:slot state
//! ```
//!
//! Record tags are their own tag space (records never travel as frames). The body carries no
//! length or checksum: the log frames each body with both (crate `node`, module `wal`). An
//! Accept of 100 puts with 16-byte keys and 64-byte values is about 8 800 bytes.
//!
//! ```
//! use bytes::BytesMut;
//! use paxos::{Ballot, NodeId, Record, Slot};
//! use wire::record::{decode_record, encode_record};
//!
//! let record = Record::SlotPromise(Slot(9), Ballot::new(4, NodeId(2)));
//! let mut buf = BytesMut::new();
//! encode_record(&record, &mut buf);
//! assert_eq!(decode_record(buf.freeze())?, record);
//! # Ok::<(), wire::WireError>(())
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use paxos::Record;

use crate::coding::{Reader, Writer};
use crate::command::{put_ballot, put_slot, put_value, read_ballot, read_slot, read_value};
use crate::error::WireError;
use crate::peer::{put_state, read_state};

/// Record tags: the first byte of every record body.
mod tag {
    pub const PROMISE: u8 = 0x01;
    pub const SLOT_PROMISE: u8 = 0x02;
    pub const ACCEPT: u8 = 0x03;
    pub const SNAPSHOT: u8 = 0x04;
}

/// Appends the body of `record` (tag and payload) to `out`.
///
/// Encoding cannot fail: records have no size limit here. The log that stores them bounds the
/// length of what it frames.
pub fn encode_record(record: &Record, out: &mut BytesMut) {
    let mut w = Writer::new(out);
    match record {
        Record::Promise(ballot) => {
            w.put_u8(tag::PROMISE);
            put_ballot(&mut w, *ballot);
        }
        Record::SlotPromise(slot, ballot) => {
            w.put_u8(tag::SLOT_PROMISE);
            put_slot(&mut w, *slot);
            put_ballot(&mut w, *ballot);
        }
        Record::Accept {
            slot,
            ballot,
            value,
        } => {
            w.put_u8(tag::ACCEPT);
            put_slot(&mut w, *slot);
            put_ballot(&mut w, *ballot);
            put_value(&mut w, value);
        }
        Record::Snapshot { upto, state } => {
            w.put_u8(tag::SNAPSHOT);
            put_slot(&mut w, *upto);
            put_state(&mut w, state);
        }
    }
}

/// Decodes one whole record body, as [`encode_record`] wrote it.
///
/// Keys and values in the result are slices of `body` (no copy), so they keep `body`'s
/// allocation alive. Never panics: an unknown tag is [`WireError::UnknownTag`] with `what =
/// "Record"`, a short body [`WireError::Truncated`], and bytes after the record
/// [`WireError::TrailingBytes`].
pub fn decode_record(body: Bytes) -> Result<Record, WireError> {
    let mut r = Reader::new(body);
    let (record, kind) = match r.u8("Record tag")? {
        tag::PROMISE => (
            Record::Promise(read_ballot(&mut r, "Promise.ballot")?),
            "promise record",
        ),
        tag::SLOT_PROMISE => (
            Record::SlotPromise(
                read_slot(&mut r, "SlotPromise.slot")?,
                read_ballot(&mut r, "SlotPromise.ballot")?,
            ),
            "slot promise record",
        ),
        tag::ACCEPT => (
            Record::Accept {
                slot: read_slot(&mut r, "Accept.slot")?,
                ballot: read_ballot(&mut r, "Accept.ballot")?,
                value: read_value(&mut r)?,
            },
            "accept record",
        ),
        tag::SNAPSHOT => {
            let upto = read_slot(&mut r, "Snapshot.upto")?;
            let state = Arc::new(read_state(&mut r)?);
            (Record::Snapshot { upto, state }, "snapshot record")
        }
        tag => {
            return Err(WireError::UnknownTag {
                what: "Record",
                tag,
            })
        }
    };
    r.finish(kind)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use paxos::{
        Ballot, ClientId, Command, KvState, NodeId, Op, Outcome, RequestId, Session, SessionLimits,
        Slot, Time, Value,
    };
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn ballot() -> impl Strategy<Value = Ballot> {
        (any::<u64>(), any::<u32>()).prop_map(|(round, node)| Ballot::new(round, NodeId(node)))
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..80).prop_map(Bytes::from)
    }

    fn value() -> impl Strategy<Value = Value> {
        let command = (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            bytes(),
            bytes(),
            0u8..3,
        )
            .prop_map(|(created_ms, nonce, request, key, value, op)| Command {
                client: ClientId::from_parts(created_ms, nonce),
                request: RequestId(request),
                op: match op {
                    0 => Op::Get { key },
                    1 => Op::Put { key, value },
                    _ => Op::Delete { key },
                },
            });
        prop_oneof![
            Just(Value::Noop),
            (any::<u64>(), vec(command, 0..8))
                .prop_map(|(stamp, cmds)| Value::stamped(Time(stamp), cmds)),
        ]
    }

    fn state() -> impl Strategy<Value = Arc<KvState>> {
        let session = (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(any::<bool>(), 0..4),
        )
            .prop_map(|(created_ms, last_active, base, replies)| {
                let replies: VecDeque<Option<Outcome>> = replies
                    .into_iter()
                    .map(|r| r.then_some(Outcome::Done))
                    .collect();
                let session = Session {
                    base,
                    replies,
                    last_active: Time(last_active),
                };
                (ClientId::from_parts(created_ms, 7), session)
            });
        (
            1usize..100,
            any::<(u64, u64, u64)>(),
            vec((bytes(), bytes()), 0..6),
            vec(session, 0..3),
        )
            .prop_map(
                |(cache_limit, (timeout, clock, next_sweep), entries, sessions)| {
                    let limits = SessionLimits {
                        cache_limit,
                        session_timeout: std::time::Duration::from_nanos(timeout),
                        clock: Time(clock),
                        next_sweep: Time(next_sweep),
                    };
                    Arc::new(KvState::from_parts(limits, entries, sessions))
                },
            )
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            ballot().prop_map(Record::Promise),
            (any::<u64>(), ballot()).prop_map(|(s, b)| Record::SlotPromise(Slot(s), b)),
            (any::<u64>(), ballot(), value()).prop_map(|(s, ballot, value)| Record::Accept {
                slot: Slot(s),
                ballot,
                value
            }),
            (any::<u64>(), state()).prop_map(|(s, state)| Record::Snapshot {
                upto: Slot(s),
                state
            }),
        ]
    }

    fn encode(record: &Record) -> Bytes {
        let mut buf = BytesMut::new();
        encode_record(record, &mut buf);
        buf.freeze()
    }

    proptest! {
        #[test]
        fn records_round_trip(record in record()) {
            prop_assert_eq!(decode_record(encode(&record))?, record);
        }

        #[test]
        fn every_strict_prefix_is_refused(record in record()) {
            let body = encode(&record);
            for len in 0..body.len() {
                prop_assert!(decode_record(body.slice(..len)).is_err(), "prefix of {} bytes", len);
            }
        }

        #[test]
        fn garbage_never_panics(body in vec(any::<u8>(), 0..64)) {
            let _ = decode_record(Bytes::from(body));
        }
    }

    #[test]
    fn unknown_tags_are_named() {
        for tag in [0x00, 0x05, 0xff] {
            assert_eq!(
                decode_record(Bytes::from(vec![tag, 0, 0])),
                Err(WireError::UnknownTag {
                    what: "Record",
                    tag
                })
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut buf = BytesMut::new();
        encode_record(&Record::Promise(Ballot::new(1, NodeId(0))), &mut buf);
        buf.extend_from_slice(&[0]);
        assert_eq!(
            decode_record(buf.freeze()),
            Err(WireError::TrailingBytes {
                kind: "promise record",
                extra: 1
            })
        );
    }
}
