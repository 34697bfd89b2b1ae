//! Frames between nodes: every [`paxos::Message`], and the hello a peer opens its stream with.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use paxos::{
    Accept, Accepted, AcceptedEntry, CatchUp, ChosenEntry, Commit, Heartbeat, HeartbeatAck,
    KvState, Learn, Membership, Message, Nack, NodeId, Prepare, PrepareScope, Promise, Session,
    SessionLimits, Snapshot, Time,
};

use crate::coding::{put_bytes, put_count, put_option, put_varint, Reader, Writer};
use crate::command::{
    put_ballot, put_client, put_node, put_outcome, put_slot, put_value, read_ballot, read_client,
    read_node, read_outcome, read_slot, read_value, MIN_BALLOT_LEN, MIN_VALUE_LEN,
};
use crate::error::WireError;
use crate::frame::{tag, Frame, WriteBody};

/// What a peer stream carries: one [`PeerHello`] first, then messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// The opening frame of a peer stream.
    Hello(PeerHello),
    /// A protocol message. Encodes exactly as the bare [`Message`] does, so a sender can encode
    /// `&Message` without wrapping it.
    Message(Message),
}

/// The first frame on a peer stream: who the sender says it is. The runtime checks the claim
/// against the node id bound to the peer's TLS certificate and closes the connection if they
/// differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerHello {
    /// The node id the sender claims.
    pub node: NodeId,
}

const SCOPE_FROM: u8 = 0;
const SCOPE_ONLY: u8 = 1;

fn put_scope(buf: &mut Writer<'_>, scope: PrepareScope) {
    match scope {
        PrepareScope::From(slot) => {
            buf.put_u8(SCOPE_FROM);
            put_slot(buf, slot);
        }
        PrepareScope::Only(slot) => {
            buf.put_u8(SCOPE_ONLY);
            put_slot(buf, slot);
        }
    }
}

fn read_scope(r: &mut Reader, field: &'static str) -> Result<PrepareScope, WireError> {
    match r.u8(field)? {
        SCOPE_FROM => Ok(PrepareScope::From(read_slot(r, field)?)),
        SCOPE_ONLY => Ok(PrepareScope::Only(read_slot(r, field)?)),
        tag => Err(WireError::UnknownTag {
            what: "PrepareScope",
            tag,
        }),
    }
}

/// A snapshot's state: cache limit, session timeout (ns), clock and next sweep, the key-value
/// entries, then the client sessions (client, when it was last active, first request id of its
/// reply window, then one optional outcome per id in the window).
pub(crate) fn put_state(buf: &mut Writer<'_>, state: &KvState) {
    buf.reserve(state.payload_bytes() + 4 * state.len() + 40);
    let limits = state.limits();
    put_varint(buf, limits.cache_limit as u64);
    put_varint(buf, limits.session_timeout.as_nanos() as u64);
    put_varint(buf, limits.clock.0);
    put_varint(buf, limits.next_sweep.0);
    put_count(buf, state.len());
    for (key, value) in state.entries() {
        put_bytes(buf, key);
        put_bytes(buf, value);
    }
    // `sessions()` is an iterator without a known length; count first so the decoder can check
    // the count against the frame before it allocates.
    put_count(buf, state.session_count());
    for (client, session) in state.sessions() {
        put_client(buf, client);
        put_varint(buf, session.last_active.0);
        put_varint(buf, session.base);
        put_count(buf, session.replies.len());
        for outcome in &session.replies {
            put_option(buf, outcome.as_ref(), put_outcome);
        }
    }
    // Multi-Paxos membership: the window, then each configuration and the slot it starts at.
    put_option(buf, state.membership(), |buf, m| {
        put_varint(buf, m.window());
        put_count(buf, m.epochs().count());
        for (from, voters) in m.epochs() {
            put_slot(buf, from);
            put_count(buf, voters.len());
            for v in voters {
                put_node(buf, *v);
            }
        }
    });
}

pub(crate) fn read_state(r: &mut Reader) -> Result<KvState, WireError> {
    let limits = SessionLimits {
        cache_limit: r.varint_usize("Snapshot.cache_limit")?,
        session_timeout: Duration::from_nanos(r.varint("Snapshot.session_timeout")?),
        clock: Time(r.varint("Snapshot.clock")?),
        next_sweep: Time(r.varint("Snapshot.next_sweep")?),
    };
    let count = r.count("Snapshot.entries", 2)?;
    let mut entries = Reader::vec_for(count);
    for _ in 0..count {
        entries.push((r.bytes("Snapshot.key")?, r.bytes("Snapshot.value")?));
    }
    let count = r.count("Snapshot.sessions", 5)?;
    let mut sessions = Reader::vec_for(count);
    for _ in 0..count {
        let client = read_client(r, "Session.client")?;
        let last_active = Time(r.varint("Session.last_active")?);
        let base = r.varint("Session.base")?;
        let n = r.count("Session.replies", 1)?;
        let mut replies = VecDeque::from(Reader::vec_for(n));
        for _ in 0..n {
            let reply = if r.option("Session.reply")? {
                Some(read_outcome(r)?)
            } else {
                None
            };
            replies.push_back(reply);
        }
        sessions.push((
            client,
            Session {
                base,
                replies,
                last_active,
            },
        ));
    }
    let mut state = KvState::from_parts(limits, entries, sessions);
    if r.option("Snapshot.membership")? {
        let window = r.varint("Membership.window")?;
        let count = r.count("Membership.epochs", 2)?;
        let mut epochs = Reader::vec_for(count);
        for _ in 0..count {
            let from = read_slot(r, "Membership.from")?;
            let n = r.count("Membership.voters", 1)?;
            let mut voters = Reader::vec_for(n);
            for _ in 0..n {
                voters.push(read_node(r, "Membership.voters")?);
            }
            epochs.push((from, voters));
        }
        let Some(m) = Membership::from_parts(epochs, window) else {
            return Err(WireError::BadValue {
                field: "Snapshot.membership",
                value: format!("{count} configurations, window {window}"),
                expected: "configurations in slot order, none empty, and a window of at least 1",
            });
        };
        state.set_membership(m);
    }
    Ok(state)
}

fn put_message(buf: &mut Writer<'_>, msg: &Message) {
    match msg {
        Message::Prepare(m) => {
            buf.put_u8(tag::PREPARE);
            put_ballot(buf, m.ballot);
            put_scope(buf, m.scope);
        }
        Message::Promise(m) => {
            buf.put_u8(tag::PROMISE);
            put_ballot(buf, m.ballot);
            put_scope(buf, m.scope);
            put_slot(buf, m.log_start);
            put_slot(buf, m.executed);
            put_count(buf, m.accepted.len());
            for e in &m.accepted {
                put_slot(buf, e.slot);
                put_ballot(buf, e.ballot);
                put_value(buf, &e.value);
            }
        }
        Message::Accept(m) => {
            buf.put_u8(tag::ACCEPT);
            put_ballot(buf, m.ballot);
            put_slot(buf, m.slot);
            put_slot(buf, m.commit);
            put_slot(buf, m.truncate);
            put_value(buf, &m.value);
        }
        Message::Accepted(m) => {
            buf.put_u8(tag::ACCEPTED);
            put_ballot(buf, m.ballot);
            put_slot(buf, m.slot);
            put_slot(buf, m.executed);
        }
        Message::Commit(m) => {
            buf.put_u8(tag::COMMIT);
            put_ballot(buf, m.ballot);
            put_slot(buf, m.up_to);
            put_slot(buf, m.truncate);
        }
        Message::Nack(m) => {
            buf.put_u8(tag::NACK);
            put_ballot(buf, m.ballot);
            put_ballot(buf, m.promised);
            put_option(buf, m.slot, put_slot);
        }
        Message::Heartbeat(m) => {
            buf.put_u8(tag::HEARTBEAT);
            put_ballot(buf, m.ballot);
            put_slot(buf, m.commit);
            put_slot(buf, m.truncate);
            put_varint(buf, m.sent.0);
        }
        Message::HeartbeatAck(m) => {
            buf.put_u8(tag::HEARTBEAT_ACK);
            put_ballot(buf, m.ballot);
            put_varint(buf, m.sent.0);
        }
        Message::Learn(m) => {
            buf.put_u8(tag::LEARN);
            put_count(buf, m.entries.len());
            for e in &m.entries {
                put_slot(buf, e.slot);
                put_value(buf, &e.value);
            }
        }
        Message::CatchUp(m) => {
            buf.put_u8(tag::CATCH_UP);
            put_slot(buf, m.from);
        }
        Message::Snapshot(m) => {
            buf.put_u8(tag::SNAPSHOT);
            put_slot(buf, m.upto);
            put_state(buf, &m.state);
        }
    }
}

/// Decodes the message selected by `t` (already read); a tag that is not a message's is an error
/// for a stream of `expected` frames. Inlined so that the message is built in place: returning it
/// through an out-pointer and copying it again cost a third of a small frame's decode time.
#[inline(always)]
fn read_message(t: u8, r: &mut Reader, expected: &'static str) -> Result<Message, WireError> {
    let msg = match t {
        tag::PREPARE => Message::Prepare(Prepare {
            ballot: read_ballot(r, "Prepare.ballot")?,
            scope: read_scope(r, "Prepare.scope")?,
        }),
        tag::PROMISE => {
            let ballot = read_ballot(r, "Promise.ballot")?;
            let scope = read_scope(r, "Promise.scope")?;
            let log_start = read_slot(r, "Promise.log_start")?;
            let executed = read_slot(r, "Promise.executed")?;
            let count = r.count("Promise.accepted", 1 + MIN_BALLOT_LEN + MIN_VALUE_LEN)?;
            let mut accepted = Reader::vec_for(count);
            for _ in 0..count {
                accepted.push(AcceptedEntry {
                    slot: read_slot(r, "AcceptedEntry.slot")?,
                    ballot: read_ballot(r, "AcceptedEntry.ballot")?,
                    value: read_value(r)?,
                });
            }
            Message::Promise(Promise {
                ballot,
                scope,
                log_start,
                accepted,
                executed,
            })
        }
        tag::ACCEPT => Message::Accept(Accept {
            ballot: read_ballot(r, "Accept.ballot")?,
            slot: read_slot(r, "Accept.slot")?,
            commit: read_slot(r, "Accept.commit")?,
            truncate: read_slot(r, "Accept.truncate")?,
            value: read_value(r)?,
        }),
        tag::ACCEPTED => Message::Accepted(Accepted {
            ballot: read_ballot(r, "Accepted.ballot")?,
            slot: read_slot(r, "Accepted.slot")?,
            executed: read_slot(r, "Accepted.executed")?,
        }),
        tag::COMMIT => Message::Commit(Commit {
            ballot: read_ballot(r, "Commit.ballot")?,
            up_to: read_slot(r, "Commit.up_to")?,
            truncate: read_slot(r, "Commit.truncate")?,
        }),
        tag::NACK => Message::Nack(Nack {
            ballot: read_ballot(r, "Nack.ballot")?,
            promised: read_ballot(r, "Nack.promised")?,
            slot: if r.option("Nack.slot")? {
                Some(read_slot(r, "Nack.slot")?)
            } else {
                None
            },
        }),
        tag::HEARTBEAT => Message::Heartbeat(Heartbeat {
            ballot: read_ballot(r, "Heartbeat.ballot")?,
            commit: read_slot(r, "Heartbeat.commit")?,
            truncate: read_slot(r, "Heartbeat.truncate")?,
            sent: Time(r.varint("Heartbeat.sent")?),
        }),
        tag::HEARTBEAT_ACK => Message::HeartbeatAck(HeartbeatAck {
            ballot: read_ballot(r, "HeartbeatAck.ballot")?,
            sent: Time(r.varint("HeartbeatAck.sent")?),
        }),
        tag::LEARN => {
            let count = r.count("Learn.entries", 1 + MIN_VALUE_LEN)?;
            let mut entries = Reader::vec_for(count);
            for _ in 0..count {
                entries.push(ChosenEntry {
                    slot: read_slot(r, "ChosenEntry.slot")?,
                    value: read_value(r)?,
                });
            }
            Message::Learn(Learn { entries })
        }
        tag::CATCH_UP => Message::CatchUp(CatchUp {
            from: read_slot(r, "CatchUp.from")?,
        }),
        tag::SNAPSHOT => {
            let upto = read_slot(r, "Snapshot.upto")?;
            Message::Snapshot(Snapshot {
                upto,
                state: Arc::new(read_state(r)?),
            })
        }
        _ => return Err(tag::unexpected(t, expected)),
    };
    Ok(msg)
}

impl WriteBody for Message {
    fn write_body(&self, buf: &mut Writer<'_>) {
        put_message(buf, self);
    }
}

impl Frame for Message {
    const KIND: &'static str = "peer message";

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let t = r.u8("frame tag")?;
        let msg = read_message(t, &mut r, Self::KIND)?;
        r.finish(msg.kind().name())?;
        Ok(msg)
    }
}

impl WriteBody for PeerFrame {
    fn write_body(&self, buf: &mut Writer<'_>) {
        match self {
            PeerFrame::Hello(hello) => {
                buf.put_u8(tag::HELLO);
                put_node(buf, hello.node);
            }
            PeerFrame::Message(msg) => put_message(buf, msg),
        }
    }
}

impl Frame for PeerFrame {
    const KIND: &'static str = "peer frame";

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let t = r.u8("frame tag")?;
        if t == tag::HELLO {
            let node = read_node(&mut r, "Hello.node")?;
            r.finish("hello")?;
            return Ok(PeerFrame::Hello(PeerHello { node }));
        }
        let msg = read_message(t, &mut r, Self::KIND)?;
        r.finish(msg.kind().name())?;
        Ok(PeerFrame::Message(msg))
    }
}

impl From<Message> for PeerFrame {
    fn from(msg: Message) -> Self {
        PeerFrame::Message(msg)
    }
}

impl From<PeerHello> for PeerFrame {
    fn from(hello: PeerHello) -> Self {
        PeerFrame::Hello(hello)
    }
}
