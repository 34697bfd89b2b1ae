//! Each kind of bad input maps to the error that says what was wrong.

use bytes::{BufMut, Bytes, BytesMut};
use paxos::{Accept, Ballot, ClientId, Command, Message, NodeId, Op, RequestId, Slot, Value};
use wire::{
    decode_frame, encode_frame, ClientFrame, EmulationStatus, Frame, Impairment, LinkImpairment,
    NodeCounters, NodeStatus, PeerFrame, ResponseFrame, Traffic, WireCounters, WireError,
};

/// The encoding of all-zero counters: 11 sent counts, 19 scalars, 8 attempt buckets, no RTT.
fn zero_counters() -> Vec<u8> {
    let mut c = vec![11];
    c.extend([0; 11]);
    c.extend([0; 19]);
    c.push(8);
    c.extend([0; 8]);
    c.push(0x00);
    c
}

/// The encoding of all-zero wire counters: two traffic sections of three zero varints and two
/// absent datagram counts each, then 11 received counts.
fn zero_wire() -> Vec<u8> {
    let mut w = vec![0, 0, 0, 0x00, 0x00, 0, 0, 0, 0x00, 0x00, 11];
    w.extend([0; 11]);
    w
}

/// What ends every status body with zero counters: the core's counters, then the wire's.
fn zero_tail() -> Vec<u8> {
    let mut t = zero_counters();
    t.extend(zero_wire());
    t
}

fn frame(body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.put_slice(body);
    buf
}

fn accept() -> Message {
    let put = Op::Put {
        key: Bytes::from_static(b"key"),
        value: Bytes::from_static(b"value"),
    };
    Message::Accept(Accept {
        ballot: Ballot::new(2, NodeId(1)),
        slot: Slot(9),
        value: Value::batch(vec![Command {
            client: ClientId(4),
            request: RequestId(5),
            op: put,
        }]),
        commit: Slot(8),
        truncate: Slot(0),
    })
}

#[test]
fn an_unknown_frame_tag_is_named_with_its_value() {
    let err = decode_frame::<PeerFrame>(&mut frame(&[0xee])).unwrap_err();
    assert_eq!(
        err,
        WireError::UnknownTag {
            what: "frame",
            tag: 0xee
        }
    );
    assert_eq!(err.to_string(), "unknown frame tag 0xee");
}

#[test]
fn a_client_frame_on_a_peer_stream_is_named() {
    let mut buf = BytesMut::new();
    encode_frame(&ClientFrame::StatusRequest, &mut buf).unwrap();
    let err = decode_frame::<PeerFrame>(&mut buf).unwrap_err();
    assert_eq!(
        err,
        WireError::UnexpectedFrame {
            tag: 0x21,
            name: "StatusRequest",
            expected: "peer frame"
        }
    );
    assert_eq!(
        err.to_string(),
        "frame tag 0x21 (StatusRequest) is not a valid peer frame"
    );
    // ... and a hello is not a bare message.
    let mut buf = BytesMut::new();
    encode_frame(
        &PeerFrame::Hello(wire::PeerHello { node: NodeId(3) }),
        &mut buf,
    )
    .unwrap();
    assert!(matches!(
        decode_frame::<Message>(&mut buf),
        Err(WireError::UnexpectedFrame { tag: 0x10, .. })
    ));
}

#[test]
fn truncation_names_the_field() {
    let mut full = BytesMut::new();
    encode_frame(&accept(), &mut full).unwrap();
    let body = full.split_off(4).freeze();
    // Cut inside the value bytes of the put.
    let err = Message::decode_body(body.slice(..body.len() - 2)).unwrap_err();
    assert_eq!(
        err,
        WireError::Truncated {
            field: "Op.value",
            needed: 5,
            remaining: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "truncated while reading Op.value: needs 5 bytes, 3 left"
    );
    // Cut right after the tag.
    let err = Message::decode_body(body.slice(..1)).unwrap_err();
    assert_eq!(
        err,
        WireError::Truncated {
            field: "Accept.ballot",
            needed: 1,
            remaining: 0
        }
    );
    // An empty body has no tag.
    let err = Message::decode_body(Bytes::new()).unwrap_err();
    assert_eq!(
        err,
        WireError::Truncated {
            field: "frame tag",
            needed: 1,
            remaining: 0
        }
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut buf = BytesMut::new();
    encode_frame(&accept(), &mut buf).unwrap();
    let mut body = buf.split_off(4);
    body.put_slice(b"xy");
    let err = decode_frame::<Message>(&mut frame(&body)).unwrap_err();
    assert_eq!(
        err,
        WireError::TrailingBytes {
            kind: "accept",
            extra: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "2 trailing bytes after the end of the accept frame"
    );
}

#[test]
fn bad_inner_tags_are_named() {
    // Accept with a value tag of 7.
    let err = decode_frame::<Message>(&mut frame(&[0x03, 1, 1, 1, 1, 1, 7])).unwrap_err();
    assert_eq!(
        err,
        WireError::UnknownTag {
            what: "Value",
            tag: 7
        }
    );
    // A request (client created 1, nonce 1, request 1) whose op tag is 9.
    let err = decode_frame::<ClientFrame>(&mut frame(&[0x20, 1, 1, 1, 9])).unwrap_err();
    assert_eq!(err, WireError::UnknownTag { what: "Op", tag: 9 });
    // A status with role 200.
    let err = decode_frame::<ResponseFrame>(&mut frame(&[0x31, 1, 0, 200])).unwrap_err();
    assert_eq!(
        err,
        WireError::UnknownTag {
            what: "Role",
            tag: 200
        }
    );
    // An option byte of 2.
    let err = decode_frame::<Message>(&mut frame(&[0x06, 1, 1, 2, 2, 2])).unwrap_err();
    assert_eq!(
        err,
        WireError::UnknownTag {
            what: "Nack.slot",
            tag: 2
        }
    );
}

#[test]
fn a_node_id_over_u32_is_out_of_range() {
    let err =
        decode_frame::<PeerFrame>(&mut frame(&[0x10, 0x80, 0x80, 0x80, 0x80, 0x10])).unwrap_err();
    assert_eq!(
        err,
        WireError::OutOfRange {
            field: "Hello.node",
            value: 1 << 32,
            max: u32::MAX.into()
        }
    );
}

#[test]
fn bad_peer_rtts_in_a_status_are_named() {
    // Status: node 0, MultiPaxos, Leader, ballot (1, 0), no leader, executed 5, voting; then
    // the RTTs.
    let status = |rtts: &[u8]| {
        let mut body = vec![0x31, 0, 0, 2, 1, 0, 0x00, 5, 1];
        body.extend_from_slice(rtts);
        decode_frame::<ResponseFrame>(&mut frame(&body))
    };
    assert_eq!(
        status(&[0xc8, 0x01, 1, 7]).unwrap_err(),
        WireError::CountTooLarge {
            field: "Status.peer_rtt_us",
            count: 200,
            remaining: 2
        }
    );
    assert_eq!(
        status(&[1, 1, 0x80]).unwrap_err(),
        WireError::Truncated {
            field: "PeerRtt.rtt_us",
            needed: 2,
            remaining: 1
        }
    );
    assert_eq!(
        status(&[1, 0x80, 0x80, 0x80, 0x80, 0x10, 5]).unwrap_err(),
        WireError::OutOfRange {
            field: "PeerRtt.node",
            value: 1 << 32,
            max: u32::MAX.into()
        }
    );
    assert_eq!(
        status(&[]).unwrap_err(),
        WireError::Truncated {
            field: "Status.peer_rtt_us",
            needed: 1,
            remaining: 0
        }
    );
    // 1 -> 41 000 us, 2 -> 300 us; no emulated link.
    let mut ok = vec![2, 1, 0xa8, 0xc0, 0x02, 2, 0xac, 0x02, 0x00];
    ok.extend(zero_tail());
    match status(&ok) {
        Ok(Some(ResponseFrame::Status(s))) => {
            assert_eq!(s.peer_rtt_us, vec![(NodeId(1), 41_000), (NodeId(2), 300)])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_frame_body_error_consumes_only_that_frame() {
    let mut buf = frame(&[0xee]);
    encode_frame(&accept(), &mut buf).unwrap();
    assert!(decode_frame::<Message>(&mut buf).is_err());
    assert_eq!(decode_frame::<Message>(&mut buf), Ok(Some(accept())));
}

#[test]
fn oversized_frames_name_both_lengths() {
    let mut buf = BytesMut::new();
    buf.put_u32(20 << 20);
    let err = decode_frame::<Message>(&mut buf).unwrap_err();
    assert_eq!(
        err,
        WireError::FrameTooLarge {
            len: 20 << 20,
            max: 16 << 20
        }
    );
    assert_eq!(
        err.to_string(),
        "frame of 20971520 bytes exceeds the limit of 16777216 bytes"
    );
}

/// An Impair frame body: one link to node 1, with `blocked`, an extra delay of 5 us and the
/// loss given as raw bits.
fn impair_body(blocked: u8, loss_bits: u64) -> Vec<u8> {
    let mut body = vec![0x22, 1, 1, blocked, 5];
    body.extend_from_slice(&loss_bits.to_be_bytes());
    body
}

#[test]
fn an_impairment_round_trips_in_the_documented_layout() {
    let impair = ClientFrame::Impair(Impairment {
        links: vec![
            (NodeId(1), LinkImpairment::BLOCKED),
            (
                NodeId(2),
                LinkImpairment {
                    blocked: false,
                    extra_delay_us: 300,
                    loss: 0.25,
                },
            ),
        ],
    });
    let mut buf = BytesMut::new();
    encode_frame(&impair, &mut buf).unwrap();
    let mut expected = vec![0x22, 2, 1, 1, 0];
    expected.extend_from_slice(&0f64.to_bits().to_be_bytes());
    expected.extend_from_slice(&[2, 0, 0xac, 0x02]);
    expected.extend_from_slice(&0.25f64.to_bits().to_be_bytes());
    assert_eq!(&buf[4..], &expected[..]);
    assert_eq!(decode_frame::<ClientFrame>(&mut buf), Ok(Some(impair)));

    // The answers, both ways.
    for answer in [Ok(()), Err("node 2 has no emulated link".to_string())] {
        let answer = ResponseFrame::Impaired(answer);
        let mut buf = BytesMut::new();
        encode_frame(&answer, &mut buf).unwrap();
        assert_eq!(decode_frame::<ResponseFrame>(&mut buf), Ok(Some(answer)));
    }
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut frame(&[0x32, 0])),
        Ok(Some(ResponseFrame::Impaired(Ok(()))))
    );
}

#[test]
fn an_impairment_loss_that_is_no_probability_is_refused() {
    for (loss, shown) in [
        (2.0f64, "2"),
        (f64::NAN, "NaN"),
        (-0.5, "-0.5"),
        (f64::INFINITY, "inf"),
    ] {
        let err =
            decode_frame::<ClientFrame>(&mut frame(&impair_body(0, loss.to_bits()))).unwrap_err();
        assert_eq!(
            err,
            WireError::BadValue {
                field: "LinkImpairment.loss",
                value: shown.to_string(),
                expected: "a probability in 0..=1",
            }
        );
        assert_eq!(
            err.to_string(),
            format!("LinkImpairment.loss is {shown}, not a probability in 0..=1")
        );
    }
    // In range, at both ends.
    for loss in [0.0f64, 1.0] {
        let got = decode_frame::<ClientFrame>(&mut frame(&impair_body(1, loss.to_bits())));
        let Ok(Some(ClientFrame::Impair(imp))) = got else {
            panic!("{got:?}")
        };
        assert_eq!(imp.links[0].1.loss, loss);
        assert!(imp.links[0].1.blocked);
    }
    // The check a client runs before sending says the same.
    let imp = Impairment::to_each([NodeId(1)], LinkImpairment::loss(2.0));
    assert_eq!(
        imp.check(),
        Err("link to node 1: loss 2 is not a probability in 0..=1".into())
    );
    let imp = Impairment::to_each([NodeId(1), NodeId(1)], LinkImpairment::BLOCKED);
    assert_eq!(imp.check(), Err("node 1 is listed twice".into()));
}

#[test]
fn malformed_impairment_frames_are_named() {
    let decode = |body: &[u8]| decode_frame::<ClientFrame>(&mut frame(body)).unwrap_err();
    let full = impair_body(0, 0.5f64.to_bits());
    // Cut inside the loss: with a two-byte node id (200), the 11 bytes a link takes at least
    // are there, and the loss is what runs short.
    let mut wide = vec![0x22, 1, 0xc8, 0x01, 0, 5];
    wide.extend_from_slice(&0.5f64.to_bits().to_be_bytes()[..7]);
    assert_eq!(
        decode(&wide),
        WireError::Truncated {
            field: "LinkImpairment.loss",
            needed: 8,
            remaining: 7
        }
    );
    // Cut inside the loss with one-byte fields: the count check already sees it.
    assert_eq!(
        decode(&full[..full.len() - 3]),
        WireError::CountTooLarge {
            field: "Impairment.links",
            count: 1,
            remaining: 8
        }
    );
    // Cut before the first link.
    assert_eq!(
        decode(&[0x22, 1]),
        WireError::CountTooLarge {
            field: "Impairment.links",
            count: 1,
            remaining: 0
        }
    );
    // More links than the bytes can hold (11 bytes at least each).
    let mut two = full.clone();
    two[1] = 2;
    assert!(matches!(
        decode(&two),
        WireError::CountTooLarge {
            field: "Impairment.links",
            count: 2,
            ..
        }
    ));
    // blocked is 0 or 1.
    assert_eq!(
        decode(&impair_body(2, 0)),
        WireError::UnknownTag {
            what: "LinkImpairment.blocked",
            tag: 2
        }
    );
    // Nothing may follow.
    let mut long = full.clone();
    long.push(0);
    assert_eq!(
        decode(&long),
        WireError::TrailingBytes {
            kind: "impair",
            extra: 1
        }
    );
    // A peer id over u32.
    let mut body = vec![0x22, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0];
    body.extend_from_slice(&0f64.to_bits().to_be_bytes());
    assert!(matches!(
        decode(&body),
        WireError::OutOfRange {
            field: "LinkImpairment.node",
            ..
        }
    ));
    // An oversized Impair is refused from its length prefix alone.
    let mut huge = BytesMut::new();
    huge.put_u32(u32::MAX);
    huge.put_u8(0x22);
    assert!(matches!(
        decode_frame::<ClientFrame>(&mut huge),
        Err(WireError::FrameTooLarge { .. })
    ));
    // The answer's result tag, and a truncated reason.
    let decode = |body: &[u8]| decode_frame::<ResponseFrame>(&mut frame(body)).unwrap_err();
    assert_eq!(
        decode(&[0x32, 7]),
        WireError::UnknownTag {
            what: "Impaired.result",
            tag: 7
        }
    );
    assert!(matches!(
        decode(&[0x32, 1, 5, b'n', b'o']),
        WireError::Truncated {
            field: "Impaired.why",
            ..
        }
    ));
    // An Impair is a client frame: on a peer stream it is named.
    assert_eq!(
        decode_frame::<PeerFrame>(&mut frame(&full)).unwrap_err(),
        WireError::UnexpectedFrame {
            tag: 0x22,
            name: "Impair",
            expected: "peer frame"
        }
    );
}

#[test]
fn a_status_carries_the_impairment_in_force_and_what_it_dropped() {
    // Status: node 0, MultiPaxos, Leader, ballot (1, 0), no leader, executed 5, voting, no
    // RTTs; then an emulated link blocking node 1, 42 datagrams dropped.
    let mut body = vec![0x31, 0, 0, 2, 1, 0, 0x00, 5, 1, 0, 0x01];
    body.extend_from_slice(&impair_body(1, 0)[1..]);
    body.push(42);
    let without_counters = body.clone();
    body.extend(zero_tail());
    let got = decode_frame::<ResponseFrame>(&mut frame(&body));
    let Ok(Some(ResponseFrame::Status(s))) = got else {
        panic!("{got:?}")
    };
    assert_eq!(
        s.emulation,
        Some(EmulationStatus {
            impairment: Impairment::to_each(
                [NodeId(1)],
                LinkImpairment {
                    blocked: true,
                    extra_delay_us: 5,
                    loss: 0.0
                }
            ),
            dropped_fault: 42,
        })
    );
    // Without the counter, it is truncated.
    let mut body = without_counters;
    body.pop();
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut frame(&body)),
        Err(WireError::Truncated {
            field: "Status.dropped_fault",
            ..
        })
    ));
}

fn status_with(counters: NodeCounters) -> NodeStatus {
    NodeStatus {
        node: NodeId(2),
        protocol: paxos::Protocol::BasicPaxos,
        role: paxos::Role::Proposer,
        ballot: Ballot::new(7, NodeId(2)),
        leader: None,
        executed: Slot(40),
        voting: true,
        peer_rtt_us: vec![(NodeId(0), 300)],
        emulation: None,
        counters: Box::new(counters),
        wire: Box::default(),
    }
}

fn some_counters() -> NodeCounters {
    let mut sent = [0; paxos::MessageKind::ALL.len()];
    for (i, s) in sent.iter_mut().enumerate() {
        *s = 1000 * i as u64 + 1;
    }
    NodeCounters {
        sent,
        phase1_rounds: 130,
        nacks_received: 21,
        preemptions: 17,
        backoff_us: 4_500_000,
        batches: 120,
        batched_commands: 240,
        max_batch_seen: 9,
        slots_chosen: 400,
        noops: 3,
        commands_executed: 390,
        elections_won: 0,
        campaigns: 0,
        retransmits: 5,
        snapshots_taken: 1,
        snapshots_installed: 0,
        ignored: 77,
        overloaded: 2,
        local_reads: 12_345,
        lease_refusals: 4,
        attempts: [100, 10, 5, 0, 0, 0, 0, u64::MAX],
        phase1_rtt_us: Some(612),
    }
}

#[test]
fn a_status_carries_the_node_counters_and_they_round_trip() {
    for counters in [NodeCounters::default(), some_counters()] {
        let frame = ResponseFrame::Status(status_with(counters.clone()));
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).unwrap();
        assert_eq!(decode_frame::<ResponseFrame>(&mut buf), Ok(Some(frame)));
        assert!(buf.is_empty());
    }
    let c = some_counters();
    assert_eq!(c.decided_own(), u64::MAX, "saturates");
    let names: Vec<_> = c.sent_by_name().collect();
    assert_eq!(names[0], ("prepare", 1));
    assert_eq!(names[5], ("nack", 5001));
    assert_eq!(names.len(), paxos::MessageKind::ALL.len());
}

#[test]
fn counters_follow_the_core_stats() {
    let mut s = paxos::Stats::default();
    s.sent[paxos::MessageKind::Prepare as usize] = 4;
    s.phase1_rounds = 3;
    s.backoff_time =
        std::time::Duration::from_micros(1_234_567) + std::time::Duration::from_nanos(999);
    s.attempts[1] = 6;
    s.phase1_rtt = Some(std::time::Duration::from_micros(250));
    let c = NodeCounters::from(&s);
    assert_eq!(c.sent[0], 4);
    assert_eq!(c.phase1_rounds, 3);
    assert_eq!(c.backoff_us, 1_234_567, "whole microseconds");
    assert_eq!(c.decided_own(), s.decided_own());
    assert_eq!(c.phase1_rtt_us, Some(250));
    assert_eq!(
        NodeCounters::from(&paxos::Stats::default()).phase1_rtt_us,
        None
    );
}

#[test]
fn a_truncated_or_malformed_counters_section_is_an_error_not_a_panic() {
    let frame = ResponseFrame::Status(status_with(some_counters()));
    let mut full = BytesMut::new();
    encode_frame(&frame, &mut full).unwrap();
    let body = full[4..].to_vec();
    // Every truncation of the body is an error (the counters end it).
    for cut in 0..body.len() {
        let got = decode_frame::<ResponseFrame>(&mut self::frame(&body[..cut]));
        assert!(got.is_err(), "cut at {cut} of {}: {got:?}", body.len());
    }
    // The counters start after the status fields: find them by encoding with zero counters
    // (41 bytes of the core's, 22 of the wire's).
    let mut zero = BytesMut::new();
    encode_frame(
        &ResponseFrame::Status(status_with(NodeCounters::default())),
        &mut zero,
    )
    .unwrap();
    let at = zero.len() - 4 - zero_tail().len();
    assert_eq!(&zero[4 + at..], &zero_tail()[..]);
    // A sent array of another length is refused, naming the field.
    let mut bad = zero[4..].to_vec();
    bad[at] = 9;
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)).unwrap_err(),
        WireError::BadValue {
            field: "Counters.sent",
            value: "9".into(),
            expected: "one count per message kind"
        }
    );
    // So is an attempts array of another length.
    let mut bad = zero[4..].to_vec();
    bad[at + 1 + 11 + 19] = 7;
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)),
        Err(WireError::BadValue {
            field: "Counters.attempts",
            ..
        })
    ));
    // A forged huge count is refused before anything is read.
    let mut bad = zero[4..at + 4].to_vec();
    bad.extend([0xff, 0xff, 0x03]);
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)),
        Err(WireError::CountTooLarge {
            field: "Counters.sent",
            ..
        })
    ));
    // A bad option tag for the RTT, and a byte after the counters.
    let mut bad = zero[4..].to_vec();
    bad[at + zero_counters().len() - 1] = 2;
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)),
        Err(WireError::UnknownTag {
            what: "Counters.phase1_rtt_us",
            tag: 2
        })
    ));
    let mut bad = zero[4..].to_vec();
    bad.push(0);
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)),
        Err(WireError::TrailingBytes { .. })
    ));
    // Garbage after the fixed status fields never panics.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut g = zero[4..at + 4].to_vec();
        for _ in 0..(x % 60) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g.push(x as u8);
        }
        let _ = decode_frame::<ResponseFrame>(&mut self::frame(&g));
    }
}

fn some_wire() -> WireCounters {
    let mut received = [0; paxos::MessageKind::ALL.len()];
    for (i, r) in received.iter_mut().enumerate() {
        *r = 7 * i as u64 + 3;
    }
    WireCounters {
        peer: Traffic {
            bytes_sent: 1 << 40,
            bytes_received: 123_456_789,
            writes: 4_000,
            datagrams_sent: Some(90_000),
            datagrams_received: Some(0),
        },
        client: Traffic {
            bytes_sent: 5,
            bytes_received: u64::MAX,
            writes: 1,
            datagrams_sent: None,
            datagrams_received: None,
        },
        received,
    }
}

#[test]
fn a_status_carries_the_wire_counters_and_they_round_trip() {
    for wire in [WireCounters::default(), some_wire()] {
        let mut status = status_with(some_counters());
        status.wire = Box::new(wire.clone());
        let frame = ResponseFrame::Status(status);
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).unwrap();
        assert_eq!(decode_frame::<ResponseFrame>(&mut buf), Ok(Some(frame)));
        assert!(buf.is_empty());
    }
    // Zero is not absent: a TCP count of no datagrams stays `None`, a QUIC count of none is 0.
    let w = some_wire();
    assert_eq!(w.peer.datagrams_received, Some(0));
    assert_eq!(w.client.datagrams_sent, None);
    let names: Vec<_> = w.received_by_name().collect();
    assert_eq!(names[2], ("accept", 17));
    assert_eq!(names.len(), paxos::MessageKind::ALL.len());
    // Sums keep `None` only where both are.
    let sum = w.peer.plus(w.client);
    assert_eq!(sum.bytes_sent, (1 << 40) + 5);
    assert_eq!(sum.bytes_received, u64::MAX, "saturates");
    assert_eq!(sum.datagrams_sent, Some(90_000));
    assert_eq!(
        w.client.plus(w.client).datagrams_sent,
        None,
        "TCP plus TCP has no datagrams"
    );
}

#[test]
fn the_wire_counters_have_the_documented_layout() {
    let mut status = status_with(NodeCounters::default());
    status.wire = Box::new(some_wire());
    let mut buf = BytesMut::new();
    encode_frame(&ResponseFrame::Status(status), &mut buf).unwrap();
    let mut zero = BytesMut::new();
    encode_frame(
        &ResponseFrame::Status(status_with(NodeCounters::default())),
        &mut zero,
    )
    .unwrap();
    let at = zero.len() - zero_wire().len();
    assert_eq!(&zero[at..], &zero_wire()[..]);
    let mut expected = vec![
        // peer: 2^40 (6 varint bytes), 123456789 (4), 4000 (2), Some(90000) (3), Some(0)
        0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x95, 0x9a, 0xef, 0x3a, 0xa0, 0x1f, 0x01, 0x90, 0xbf,
        0x05, 0x01, 0x00, // client: 5, u64::MAX (10 bytes), 1, None, None
        0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01, 0x00, 0x00,
        // received: 11 counts, 3 + 7i
        11,
    ];
    expected.extend((0..11u8).map(|i| 7 * i + 3));
    assert_eq!(&buf[at..], &expected[..]);
}

#[test]
fn a_truncated_or_malformed_wire_section_is_an_error_not_a_panic() {
    let mut status = status_with(some_counters());
    status.wire = Box::new(some_wire());
    let mut full = BytesMut::new();
    encode_frame(&ResponseFrame::Status(status), &mut full).unwrap();
    let body = full[4..].to_vec();
    for cut in 0..body.len() {
        let got = decode_frame::<ResponseFrame>(&mut self::frame(&body[..cut]));
        assert!(got.is_err(), "cut at {cut} of {}: {got:?}", body.len());
    }
    let mut zero = BytesMut::new();
    encode_frame(
        &ResponseFrame::Status(status_with(NodeCounters::default())),
        &mut zero,
    )
    .unwrap();
    let zero = zero[4..].to_vec();
    let at = zero.len() - zero_wire().len();
    // Without the wire section (a `/3` status) the decoder says what is missing.
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut self::frame(&zero[..at])).unwrap_err(),
        WireError::Truncated {
            field: "Wire.peer.bytes_sent",
            needed: 1,
            remaining: 0
        }
    );
    // A bad option tag for a datagram count is named.
    let mut bad = zero.clone();
    bad[at + 3] = 2;
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)).unwrap_err(),
        WireError::UnknownTag {
            what: "Wire.peer.datagrams_sent",
            tag: 2
        }
    );
    let mut bad = zero.clone();
    bad[at + 5 + 4] = 7;
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)).unwrap_err(),
        WireError::UnknownTag {
            what: "Wire.client.datagrams_received",
            tag: 7
        }
    );
    // A received array of another length is refused, naming the field.
    let mut bad = zero.clone();
    bad[at + 10] = 9;
    assert_eq!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)).unwrap_err(),
        WireError::BadValue {
            field: "Wire.received",
            value: "9".into(),
            expected: "one count per message kind"
        }
    );
    // A byte after it is refused.
    let mut bad = zero.clone();
    bad.push(0);
    assert!(matches!(
        decode_frame::<ResponseFrame>(&mut self::frame(&bad)),
        Err(WireError::TrailingBytes { .. })
    ));
    // Garbage in place of the wire section never panics.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2000 {
        let mut g = zero[..at].to_vec();
        for _ in 0..(x % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g.push(x as u8);
        }
        let _ = decode_frame::<ResponseFrame>(&mut self::frame(&g));
    }
}
