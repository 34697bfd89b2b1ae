//! Property tests: every frame round-trips, streams decode however the bytes are split, and no
//! input, however broken, makes a decoder panic.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use paxos::{
    Accept, Accepted, AcceptedEntry, Ballot, CatchUp, ChosenEntry, ClientId, Command, Commit,
    Heartbeat, HeartbeatAck, KvState, Learn, Message, Nack, NodeId, Op, Outcome, Prepare,
    PrepareScope, Promise, Protocol, Reply, RequestId, Role, Session, SessionLimits, Slot,
    Snapshot, Time, Value,
};
use proptest::collection::vec;
use proptest::prelude::*;
use wire::{
    decode_frame, encode_frame, ClientFrame, ClientResponse, Codec, EmulationStatus, Frame,
    Impairment, LinkImpairment, NodeCounters, NodeStatus, PeerFrame, PeerHello, ResponseFrame,
    Traffic, WireCounters, WireError, DEFAULT_MAX_FRAME_LEN, FRAME_HEADER_LEN,
};

// ---- strategies -------------------------------------------------------------------------------

/// Mostly small numbers (one-byte varints), sometimes any width.
fn num() -> BoxedStrategy<u64> {
    prop_oneof![4 => 0u64..200, 1 => any::<u64>()].boxed()
}

fn node() -> BoxedStrategy<NodeId> {
    prop_oneof![4 => 0u32..8, 1 => any::<u32>()]
        .prop_map(NodeId)
        .boxed()
}

fn slot() -> BoxedStrategy<Slot> {
    num().prop_map(Slot).boxed()
}

fn ballot() -> BoxedStrategy<Ballot> {
    (num(), node())
        .prop_map(|(round, node)| Ballot { round, node })
        .boxed()
}

fn bytes() -> BoxedStrategy<Bytes> {
    prop_oneof![4 => vec(any::<u8>(), 0..20), 1 => vec(any::<u8>(), 100..300)]
        .prop_map(Bytes::from)
        .boxed()
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        bytes().prop_map(|key| Op::Get { key }),
        (bytes(), bytes()).prop_map(|(key, value)| Op::Put { key, value }),
        bytes().prop_map(|key| Op::Delete { key }),
        (vec(node(), 0..4), vec(node(), 0..4))
            .prop_map(|(add, remove)| Op::Reconfigure { add, remove }),
    ]
    .boxed()
}

fn command() -> BoxedStrategy<Command> {
    (num(), num(), num(), op())
        .prop_map(|(created_ms, nonce, r, op)| Command {
            client: ClientId::from_parts(created_ms, nonce),
            request: RequestId(r),
            op,
        })
        .boxed()
}

fn value() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Noop),
        4 => (num(), vec(command(), 0..12)).prop_map(|(t, c)| Value::stamped(Time(t), c))
    ]
    .boxed()
}

fn outcome() -> BoxedStrategy<Outcome> {
    prop_oneof![
        proptest::option::of(bytes()).prop_map(Outcome::Value),
        Just(Outcome::Done),
        proptest::option::of(node()).prop_map(|leader| Outcome::NotLeader { leader }),
        Just(Outcome::Expired),
        Just(Outcome::Overloaded),
        "[a-z 0-9]{0,40}".prop_map(Outcome::Refused),
    ]
    .boxed()
}

fn kv_state() -> BoxedStrategy<KvState> {
    let session = (
        num(),
        num(),
        num(),
        vec(proptest::option::of(outcome()), 0..5),
    )
        .prop_map(|(created_ms, last_active, base, replies)| {
            let session = Session {
                base,
                replies: replies.into_iter().collect(),
                last_active: Time(last_active),
            };
            (ClientId::from_parts(created_ms, base ^ 1), session)
        });
    (
        1usize..10_000,
        (num(), num(), num()),
        vec((bytes(), bytes()), 0..10),
        vec(session, 0..5),
        proptest::option::of((1u64..100, vec((num(), vec(node(), 1..5)), 1..4))),
    )
        .prop_map(
            |(cache_limit, (timeout, clock, next_sweep), entries, sessions, membership)| {
                let limits = SessionLimits {
                    cache_limit,
                    session_timeout: std::time::Duration::from_nanos(timeout),
                    clock: Time(clock),
                    next_sweep: Time(next_sweep),
                };
                let mut state = KvState::from_parts(limits, entries, sessions);
                if let Some((window, mut epochs)) = membership {
                    epochs.sort_by_key(|(from, _)| *from);
                    epochs.dedup_by_key(|(from, _)| *from);
                    let epochs = epochs.into_iter().map(|(f, v)| (Slot(f), v)).collect();
                    state.set_membership(paxos::Membership::from_parts(epochs, window).unwrap());
                }
                state
            },
        )
        .boxed()
}

fn scope() -> BoxedStrategy<PrepareScope> {
    prop_oneof![
        slot().prop_map(PrepareScope::From),
        slot().prop_map(PrepareScope::Only)
    ]
    .boxed()
}

fn message() -> BoxedStrategy<Message> {
    prop_oneof![
        (ballot(), scope()).prop_map(|(ballot, scope)| Message::Prepare(Prepare { ballot, scope })),
        (
            ballot(),
            scope(),
            slot(),
            slot(),
            vec((slot(), ballot(), value()), 0..5)
        )
            .prop_map(|(ballot, scope, log_start, executed, acc)| {
                let accepted = acc
                    .into_iter()
                    .map(|(slot, ballot, value)| AcceptedEntry {
                        slot,
                        ballot,
                        value,
                    })
                    .collect();
                Message::Promise(Promise {
                    ballot,
                    scope,
                    log_start,
                    accepted,
                    executed,
                })
            }),
        (ballot(), slot(), value(), slot(), slot()).prop_map(
            |(ballot, slot, value, commit, truncate)| {
                Message::Accept(Accept {
                    ballot,
                    slot,
                    value,
                    commit,
                    truncate,
                })
            }
        ),
        (ballot(), slot(), slot()).prop_map(|(ballot, slot, executed)| Message::Accepted(
            Accepted {
                ballot,
                slot,
                executed
            }
        )),
        (ballot(), slot(), slot()).prop_map(|(ballot, up_to, truncate)| Message::Commit(Commit {
            ballot,
            up_to,
            truncate
        })),
        (ballot(), ballot(), proptest::option::of(slot())).prop_map(|(ballot, promised, slot)| {
            Message::Nack(Nack {
                ballot,
                promised,
                slot,
            })
        }),
        (ballot(), slot(), slot(), any::<u64>()).prop_map(|(ballot, commit, truncate, sent)| {
            Message::Heartbeat(Heartbeat {
                ballot,
                commit,
                truncate,
                sent: Time(sent),
            })
        }),
        (ballot(), any::<u64>()).prop_map(|(ballot, sent)| Message::HeartbeatAck(HeartbeatAck {
            ballot,
            sent: Time(sent),
        })),
        vec((slot(), value()), 0..5).prop_map(|e| Message::Learn(Learn {
            entries: e
                .into_iter()
                .map(|(slot, value)| ChosenEntry { slot, value })
                .collect()
        })),
        slot().prop_map(|from| Message::CatchUp(CatchUp { from })),
        (slot(), kv_state()).prop_map(|(upto, state)| Message::Snapshot(Snapshot {
            upto,
            state: Arc::new(state)
        })),
    ]
    .boxed()
}

fn peer_frame() -> BoxedStrategy<PeerFrame> {
    prop_oneof![
        1 => node().prop_map(|node| PeerFrame::Hello(PeerHello { node })),
        6 => message().prop_map(PeerFrame::Message),
    ]
    .boxed()
}

/// A probability, with the edges and signed zero often.
fn loss() -> BoxedStrategy<f64> {
    prop_oneof![Just(0.0), Just(-0.0), Just(1.0), 0.0f64..=1.0].boxed()
}

fn impairment() -> BoxedStrategy<Impairment> {
    vec((node(), any::<bool>(), num(), loss()), 0..6)
        .prop_map(|links| Impairment {
            links: links
                .into_iter()
                .map(|(peer, blocked, extra_delay_us, loss)| {
                    (
                        peer,
                        LinkImpairment {
                            blocked,
                            extra_delay_us,
                            loss,
                        },
                    )
                })
                .collect(),
        })
        .boxed()
}

fn client_frame() -> BoxedStrategy<ClientFrame> {
    prop_oneof![
        4 => command().prop_map(ClientFrame::Request),
        1 => Just(ClientFrame::StatusRequest),
        1 => impairment().prop_map(ClientFrame::Impair),
    ]
    .boxed()
}

fn protocol() -> BoxedStrategy<Protocol> {
    prop_oneof![
        Just(Protocol::MultiPaxos),
        Just(Protocol::BasicPaxos),
        Just(Protocol::Unreplicated)
    ]
    .boxed()
}

fn role() -> BoxedStrategy<Role> {
    prop_oneof![
        Just(Role::Follower),
        Just(Role::Candidate),
        Just(Role::Leader),
        Just(Role::Proposer),
        Just(Role::Single),
    ]
    .boxed()
}

fn traffic() -> BoxedStrategy<Traffic> {
    (
        (num(), num(), num()),
        proptest::option::of(num()),
        proptest::option::of(num()),
    )
        .prop_map(
            |((bytes_sent, bytes_received, writes), datagrams_sent, datagrams_received)| Traffic {
                bytes_sent,
                bytes_received,
                writes,
                datagrams_sent,
                datagrams_received,
            },
        )
        .boxed()
}

fn wire_counters() -> BoxedStrategy<WireCounters> {
    (
        traffic(),
        traffic(),
        vec(num(), paxos::MessageKind::ALL.len()),
    )
        .prop_map(|(peer, client, received)| WireCounters {
            peer,
            client,
            received: received.try_into().unwrap(),
        })
        .boxed()
}

fn counters() -> BoxedStrategy<NodeCounters> {
    (
        vec(num(), paxos::MessageKind::ALL.len()),
        vec(num(), 19),
        vec(num(), 8),
        proptest::option::of(num()),
    )
        .prop_map(|(sent, s, attempts, phase1_rtt_us)| NodeCounters {
            sent: sent.try_into().unwrap(),
            phase1_rounds: s[0],
            nacks_received: s[1],
            preemptions: s[2],
            backoff_us: s[3],
            batches: s[4],
            batched_commands: s[5],
            max_batch_seen: s[6],
            slots_chosen: s[7],
            noops: s[8],
            commands_executed: s[9],
            elections_won: s[10],
            campaigns: s[11],
            retransmits: s[12],
            snapshots_taken: s[13],
            snapshots_installed: s[14],
            ignored: s[15],
            overloaded: s[16],
            local_reads: s[17],
            lease_refusals: s[18],
            attempts: attempts.try_into().unwrap(),
            phase1_rtt_us,
        })
        .boxed()
}

fn response_frame() -> BoxedStrategy<ResponseFrame> {
    let response = (
        (num(), num()),
        num(),
        outcome(),
        proptest::option::of(any::<SocketAddr>()),
    )
        .prop_map(|((created_ms, nonce), request, outcome, leader_addr)| {
            let reply = Reply {
                client: ClientId::from_parts(created_ms, nonce),
                request: RequestId(request),
                outcome,
            };
            ResponseFrame::Response(ClientResponse { reply, leader_addr })
        });
    let status = (
        node(),
        protocol(),
        role(),
        ballot(),
        proptest::option::of(node()),
        slot(),
        proptest::bool::ANY,
        vec((node(), num()), 0..8),
        proptest::option::of((impairment(), num())),
        counters(),
        wire_counters(),
    )
        .prop_map(
            |(
                node,
                protocol,
                role,
                ballot,
                leader,
                executed,
                voting,
                peer_rtt_us,
                emulation,
                counters,
                wire,
            )| {
                ResponseFrame::Status(NodeStatus {
                    node,
                    protocol,
                    role,
                    ballot,
                    leader,
                    executed,
                    voting,
                    peer_rtt_us,
                    emulation: emulation.map(|(impairment, dropped_fault)| EmulationStatus {
                        impairment,
                        dropped_fault,
                    }),
                    counters: Box::new(counters),
                    wire: Box::new(wire),
                })
            },
        );
    let impaired = prop_oneof![
        Just(ResponseFrame::Impaired(Ok(()))),
        any::<String>().prop_map(|why| ResponseFrame::Impaired(Err(why))),
    ];
    prop_oneof![response, status, impaired].boxed()
}

// ---- helpers ----------------------------------------------------------------------------------

fn encode<F: Frame>(frame: &F) -> BytesMut {
    let mut buf = BytesMut::new();
    let n = encode_frame(frame, &mut buf).expect("encodes");
    assert_eq!(n, buf.len());
    buf
}

/// Encode, decode, compare; the decoder consumes exactly the frame.
fn round_trip<F: Frame + Clone + PartialEq + std::fmt::Debug>(
    frame: &F,
) -> Result<(), TestCaseError> {
    let mut buf = encode(frame);
    let len = buf.len();
    prop_assert_eq!(
        u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
        len - FRAME_HEADER_LEN
    );
    let decoded = decode_frame::<F>(&mut buf);
    prop_assert_eq!(decoded, Ok(Some(frame.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

/// Decodes `bytes` as a stream of `F` frames until it needs more input or fails. Must not panic.
fn drain<F: Frame>(bytes: &[u8]) -> Result<Vec<F>, WireError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = decode_frame::<F>(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

/// Decodes `body` as a frame body of every family. Must not panic.
fn decode_body_all(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let _ = Message::decode_body(body.clone());
    let _ = PeerFrame::decode_body(body.clone());
    let _ = ClientFrame::decode_body(body.clone());
    let _ = ResponseFrame::decode_body(body);
}

fn body_of(frame: &BytesMut) -> Bytes {
    Bytes::copy_from_slice(&frame[FRAME_HEADER_LEN..])
}

/// Encoded frames of every family, to mutate.
fn any_encoded() -> BoxedStrategy<BytesMut> {
    prop_oneof![
        peer_frame().prop_map(|f| encode(&f)),
        client_frame().prop_map(|f| encode(&f)),
        response_frame().prop_map(|f| encode(&f)),
    ]
    .boxed()
}

/// 512 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---- properties -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn messages_round_trip(msg in message()) {
        round_trip(&msg)?;
        // A bare Message and a PeerFrame::Message are the same bytes.
        prop_assert_eq!(encode(&msg), encode(&PeerFrame::Message(msg)));
    }

    #[test]
    fn peer_frames_round_trip(frame in peer_frame()) {
        round_trip(&frame)?;
    }

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        round_trip(&frame)?;
    }

    #[test]
    fn response_frames_round_trip(frame in response_frame()) {
        round_trip(&frame)?;
    }

    /// Frames coalesced into one buffer come out in order however the stream splits them.
    #[test]
    fn coalesced_frames_decode_from_any_split(
        msgs in vec(message(), 1..6),
        cuts in vec(1usize..64, 1..40),
    ) {
        let mut all = BytesMut::new();
        for m in &msgs {
            encode_frame(m, &mut all).unwrap();
        }
        let all = all.freeze();
        let mut inbox = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cuts = cuts.into_iter().cycle();
        while pos < all.len() {
            let end = (pos + cuts.next().unwrap()).min(all.len());
            inbox.extend_from_slice(&all[pos..end]);
            pos = end;
            while let Some(m) = decode_frame::<Message>(&mut inbox).unwrap() {
                got.push(m);
            }
        }
        prop_assert!(inbox.is_empty());
        prop_assert_eq!(&got, &msgs);
        // And all at once.
        prop_assert_eq!(Codec::default().decode_all::<Message>(all).unwrap(), msgs);
    }

    /// Every strict prefix of a valid body is an error (the format has no optional tail), and the
    /// stream decoder waits for the rest of a truncated frame.
    #[test]
    fn truncated_frames_are_errors_or_wait(frame in peer_frame(), cut in any::<prop::sample::Index>()) {
        let full = encode(&frame);
        let body = body_of(&full);
        let at = cut.index(body.len());
        prop_assert!(PeerFrame::decode_body(body.slice(..at)).is_err());
        let partial = cut.index(full.len());
        let mut inbox = BytesMut::from(&full[..partial]);
        prop_assert_eq!(decode_frame::<PeerFrame>(&mut inbox), Ok(None));
        prop_assert_eq!(inbox.len(), partial);
    }

    /// The same for client and response frames (status, impairments and their answers).
    #[test]
    fn truncated_client_and_response_frames_are_errors(
        client in client_frame(),
        response in response_frame(),
        cut in any::<prop::sample::Index>(),
    ) {
        let body = body_of(&encode(&client));
        prop_assert!(ClientFrame::decode_body(body.slice(..cut.index(body.len()))).is_err());
        let body = body_of(&encode(&response));
        prop_assert!(ResponseFrame::decode_body(body.slice(..cut.index(body.len()))).is_err());
    }

    /// Any 64 bits in an impairment's loss: decoded if and only if they are a probability.
    #[test]
    fn an_impairment_loss_decodes_only_as_a_probability(bits in any::<u64>(), edge in 0usize..6) {
        let loss = [f64::from_bits(bits), f64::NAN, f64::INFINITY, -1e-300, 1.0 + f64::EPSILON, 0.5][edge];
        let frame = ClientFrame::Impair(Impairment::to_each(
            [NodeId(1)],
            LinkImpairment::loss(loss),
        ));
        let decoded = decode_frame::<ClientFrame>(&mut encode(&frame));
        if (0.0..=1.0).contains(&loss) {
            prop_assert_eq!(decoded, Ok(Some(frame)));
        } else {
            let is_bad_value = matches!(
                decoded,
                Err(WireError::BadValue { field: "LinkImpairment.loss", .. })
            );
            prop_assert!(is_bad_value, "{:?}", decoded);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = drain::<Message>(&bytes);
        let _ = drain::<PeerFrame>(&bytes);
        let _ = drain::<ClientFrame>(&bytes);
        let _ = drain::<ResponseFrame>(&bytes);
        decode_body_all(&bytes);
    }

    /// Random bodies behind a valid length prefix, so the decoders get past framing.
    #[test]
    fn random_bodies_never_panic(tag in 0u8..0x40, rest in vec(any::<u8>(), 0..256)) {
        let mut body = vec![tag];
        body.extend_from_slice(&rest);
        decode_body_all(&body);
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let _ = drain::<PeerFrame>(&framed);
        let _ = drain::<ResponseFrame>(&framed);
    }

    /// Valid frames with bytes flipped, inserted, removed or cut off: Ok or Err, never a panic.
    #[test]
    fn mutated_frames_never_panic(
        frame in any_encoded(),
        edits in vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = frame.to_vec();
        for (kind, at, b) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] ^= b | 1,
                1 => bytes.insert(i, b),
                2 => { bytes.remove(i); }
                _ => bytes.truncate(i),
            }
        }
        let _ = drain::<Message>(&bytes);
        let _ = drain::<PeerFrame>(&bytes);
        let _ = drain::<ClientFrame>(&bytes);
        let _ = drain::<ResponseFrame>(&bytes);
        if bytes.len() > FRAME_HEADER_LEN {
            decode_body_all(&bytes[FRAME_HEADER_LEN..]);
        }
    }

    /// A length prefix over the limit is refused from the prefix alone: nothing is consumed and
    /// the decoder does not wait for a body.
    #[test]
    fn oversized_prefixes_are_rejected_before_the_body(
        limit in prop_oneof![Just(DEFAULT_MAX_FRAME_LEN), 0usize..100_000],
        over in 1u64..=u32::MAX as u64,
    ) {
        let codec = Codec::new(limit);
        let len = (limit as u64).saturating_add(over).min(u32::MAX as u64);
        prop_assume!(len > limit as u64);
        let mut buf = BytesMut::new();
        buf.put_u32(len as u32);
        prop_assert_eq!(
            codec.decode::<Message>(&mut buf),
            Err(WireError::FrameTooLarge { len, max: limit as u64 })
        );
        prop_assert_eq!(buf.len(), FRAME_HEADER_LEN);
    }

    /// The encoder refuses frames over the limit and leaves the buffer as it was.
    #[test]
    fn encoding_over_the_limit_leaves_the_buffer_alone(msg in message(), limit in 0usize..64) {
        let codec = Codec::new(limit);
        let mut buf = BytesMut::from(&b"earlier frames"[..]);
        let body_len = encode(&msg).len() - FRAME_HEADER_LEN;
        match codec.encode(&msg, &mut buf) {
            Ok(n) => {
                prop_assert!(body_len <= limit);
                prop_assert_eq!(n, body_len + FRAME_HEADER_LEN);
            }
            Err(e) => {
                prop_assert!(body_len > limit);
                prop_assert_eq!(e, WireError::FrameTooLarge { len: body_len as u64, max: limit as u64 });
                prop_assert_eq!(&buf[..], b"earlier frames");
            }
        }
    }
}
