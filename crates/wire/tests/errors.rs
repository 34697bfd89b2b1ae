//! Each kind of bad input maps to the error that says what was wrong.

use bytes::{BufMut, Bytes, BytesMut};
use paxos::{Accept, Ballot, ClientId, Command, Message, NodeId, Op, RequestId, Slot, Value};
use wire::{decode_frame, encode_frame, ClientFrame, Frame, PeerFrame, ResponseFrame, WireError};

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
    // Status: node 0, MultiPaxos, Leader, ballot (1, 0), no leader, executed 5; then the RTTs.
    let status = |rtts: &[u8]| {
        let mut body = vec![0x31, 0, 0, 2, 1, 0, 0x00, 5];
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
    // 1 -> 41 000 us, 2 -> 300 us.
    match status(&[2, 1, 0xa8, 0xc0, 0x02, 2, 0xac, 0x02]) {
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
