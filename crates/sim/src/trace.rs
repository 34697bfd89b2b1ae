//! The short trace a failure prints: the last events of the run, kept in a ring buffer of compact
//! records (no formatting on the hot path; text is made only when a run fails).

use std::collections::VecDeque;
use std::fmt;

use paxos::{
    Ballot, ClientId, Message, NodeId, Outcome, PrepareScope, RequestId, Role, Slot, Time, Value,
};

use crate::checker::show_outcome;
use crate::network::DropReason;

/// A value in a few bytes: no-op, or a batch's size and first command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueBrief {
    /// A no-op.
    Noop,
    /// `len` commands, the first one being `client`/`request`.
    Batch {
        /// Commands in the batch.
        len: u32,
        /// The first command's client.
        client: u64,
        /// The first command's request.
        request: u64,
    },
}

impl ValueBrief {
    /// Summarises a value.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Noop => ValueBrief::Noop,
            Value::Batch(cmds) => ValueBrief::Batch {
                len: cmds.len() as u32,
                client: cmds.first().map_or(0, |c| c.client.nonce()),
                request: cmds.first().map_or(0, |c| c.request.0),
            },
        }
    }
}

impl fmt::Display for ValueBrief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueBrief::Noop => f.write_str("noop"),
            ValueBrief::Batch {
                len: 1,
                client,
                request,
            } => write!(f, "[c{client}r{request}]"),
            ValueBrief::Batch {
                len,
                client,
                request,
            } => write!(f, "[c{client}r{request}+{}]", len - 1),
        }
    }
}

/// A message in a few bytes: its kind and the fields that matter when reading a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgBrief {
    /// Prepare(ballot, scope).
    Prepare(Ballot, PrepareScope),
    /// Promise(ballot, scope, number of accepted entries, log start).
    Promise(Ballot, PrepareScope, u32, Slot),
    /// Accept(ballot, slot, value, commit point).
    Accept(Ballot, Slot, ValueBrief, Slot),
    /// Accepted(ballot, slot).
    Accepted(Ballot, Slot),
    /// Commit(ballot, up to).
    Commit(Ballot, Slot),
    /// Nack(refused ballot, promised ballot, slot).
    Nack(Ballot, Ballot, Option<Slot>),
    /// Heartbeat(ballot, commit point, send time on the leader's clock).
    Heartbeat(Ballot, Slot, Time),
    /// HeartbeatAck(ballot, echoed send time): a lease granted.
    HeartbeatAck(Ballot, Time),
    /// Learn(first slot, number of entries, first value).
    Learn(Option<Slot>, u32, Option<ValueBrief>),
    /// CatchUp(from).
    CatchUp(Slot),
    /// Snapshot(up to).
    Snapshot(Slot),
}

impl MsgBrief {
    /// Summarises a message.
    pub fn of(msg: &Message) -> Self {
        match msg {
            Message::Prepare(m) => MsgBrief::Prepare(m.ballot, m.scope),
            Message::Promise(m) => {
                MsgBrief::Promise(m.ballot, m.scope, m.accepted.len() as u32, m.log_start)
            }
            Message::Accept(m) => {
                MsgBrief::Accept(m.ballot, m.slot, ValueBrief::of(&m.value), m.commit)
            }
            Message::Accepted(m) => MsgBrief::Accepted(m.ballot, m.slot),
            Message::Commit(m) => MsgBrief::Commit(m.ballot, m.up_to),
            Message::Nack(m) => MsgBrief::Nack(m.ballot, m.promised, m.slot),
            Message::Heartbeat(m) => MsgBrief::Heartbeat(m.ballot, m.commit, m.sent),
            Message::HeartbeatAck(m) => MsgBrief::HeartbeatAck(m.ballot, m.sent),
            Message::Learn(m) => MsgBrief::Learn(
                m.entries.first().map(|e| e.slot),
                m.entries.len() as u32,
                m.entries.first().map(|e| ValueBrief::of(&e.value)),
            ),
            Message::CatchUp(m) => MsgBrief::CatchUp(m.from),
            Message::Snapshot(m) => MsgBrief::Snapshot(m.upto),
        }
    }
}

fn scope(s: &PrepareScope) -> String {
    match s {
        PrepareScope::From(slot) => format!("{slot}.."),
        PrepareScope::Only(slot) => format!("{slot}"),
    }
}

impl fmt::Display for MsgBrief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgBrief::Prepare(b, s) => write!(f, "Prepare(b={b} {})", scope(s)),
            MsgBrief::Promise(b, s, n, start) => write!(
                f,
                "Promise(b={b} {} accepted={n} log_start={start})",
                scope(s)
            ),
            MsgBrief::Accept(b, slot, v, c) => write!(f, "Accept(b={b} {slot}={v} commit<{c})"),
            MsgBrief::Accepted(b, slot) => write!(f, "Accepted(b={b} {slot})"),
            MsgBrief::Commit(b, up) => write!(f, "Commit(b={b} <{up})"),
            MsgBrief::Nack(b, p, slot) => match slot {
                Some(s) => write!(f, "Nack(b={b} promised={p} {s})"),
                None => write!(f, "Nack(b={b} promised={p})"),
            },
            MsgBrief::Heartbeat(b, c, t) => write!(f, "Heartbeat(b={b} commit<{c} sent={t})"),
            MsgBrief::HeartbeatAck(b, t) => write!(f, "HeartbeatAck(b={b} sent={t})"),
            MsgBrief::Learn(first, n, v) => match (first, v) {
                (Some(s), Some(v)) => write!(f, "Learn({n} from {s}, first={v})"),
                _ => write!(f, "Learn(empty)"),
            },
            MsgBrief::CatchUp(s) => write!(f, "CatchUp(from {s})"),
            MsgBrief::Snapshot(s) => write!(f, "Snapshot(<{s})"),
        }
    }
}

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    /// A message arrived at a node.
    Deliver {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// What.
        msg: MsgBrief,
    },
    /// A message between nodes was dropped (lost, cut by a partition, or its receiver is down).
    Dropped {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// What.
        msg: MsgBrief,
        /// Why (`None`: the receiver was down).
        reason: Option<DropReason>,
    },
    /// A client request arrived at a node.
    Request {
        /// The client.
        client: ClientId,
        /// The request.
        request: RequestId,
        /// The node.
        to: NodeId,
    },
    /// A reply arrived at its client.
    Reply {
        /// The client.
        client: ClientId,
        /// The request.
        request: RequestId,
        /// The node that answered.
        from: NodeId,
        /// The answer.
        outcome: Outcome,
    },
    /// A node's deadline fired.
    Timeout {
        /// The node.
        node: NodeId,
    },
    /// Writes of a node became durable, up to a token.
    Persisted {
        /// The node.
        node: NodeId,
        /// The token passed to `handle_persisted`.
        token: u64,
        /// Records that became durable: `P<ballot>` (promise), `P#<slot>@<ballot>` (slot
        /// promise), `A#<slot>@<ballot>` (accept), `Snap<#<slot>` (snapshot).
        records: String,
    },
    /// A node changed role, ballot or belief about the leader.
    Role {
        /// The node.
        node: NodeId,
        /// Its role now.
        role: Role,
        /// Its ballot now.
        ballot: Ballot,
        /// Whom it believes leads.
        leader: Option<NodeId>,
    },
    /// A node executed slots.
    Executed {
        /// The node.
        node: NodeId,
        /// First slot executed in this step.
        first: Slot,
        /// Last slot executed in this step.
        last: Slot,
        /// The last slot's value.
        value: ValueBrief,
    },
    /// A fault or other event of the harness.
    Fault(String),
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Deliver { from, to, msg } => write!(f, "{from} -> {to}  {msg}"),
            TraceEvent::Dropped {
                from,
                to,
                msg,
                reason,
            } => {
                let why = match reason {
                    Some(DropReason::Lost) => "lost",
                    Some(DropReason::Partitioned) => "partitioned",
                    None => "receiver down",
                };
                write!(f, "{from} -x {to}  {msg} ({why})")
            }
            TraceEvent::Request {
                client,
                request,
                to,
            } => write!(f, "c{} -> {to}  request r{}", client.0, request.0),
            TraceEvent::Reply {
                client,
                request,
                from,
                outcome,
            } => {
                write!(
                    f,
                    "{from} -> c{}  reply r{} {}",
                    client.0,
                    request.0,
                    show_outcome(outcome)
                )
            }
            TraceEvent::Timeout { node } => write!(f, "{node} timeout"),
            TraceEvent::Persisted {
                node,
                token,
                records,
            } => write!(f, "{node} persisted up to token {token} [{records}]"),
            TraceEvent::Role {
                node,
                role,
                ballot,
                leader,
            } => {
                let leader = leader.map_or_else(|| "?".to_string(), |l| l.to_string());
                write!(f, "{node} is {role:?} at ballot {ballot}, leader {leader}")
            }
            TraceEvent::Executed {
                node,
                first,
                last,
                value,
            } => {
                if first == last {
                    write!(f, "{node} executed {first}={value}")
                } else {
                    write!(f, "{node} executed {first}..={last} (last={value})")
                }
            }
            TraceEvent::Fault(s) => f.write_str(s),
        }
    }
}

/// The last `capacity` events of a run.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Events, each with how many identical copies at the same instant followed it (a node woken
    /// over and over at one instant would otherwise fill the trace with one line).
    events: VecDeque<(Time, TraceEvent, u64)>,
    capacity: usize,
}

impl Trace {
    /// An empty trace keeping the last `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Trace {
            events: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// Records an event.
    pub fn push(&mut self, at: Time, event: TraceEvent) {
        if self.capacity == 0 {
            return;
        }
        if let Some((t, last, repeats)) = self.events.back_mut() {
            if *t == at && *last == event {
                *repeats += 1;
                return;
            }
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back((at, event, 0));
    }

    /// The kept events as text lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|(at, e, repeats)| match repeats {
                0 => format!("{at}  {e}"),
                n => format!("{at}  {e}  (and {n} more times)"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_events() {
        let mut t = Trace::new(3);
        for i in 0..5 {
            t.push(
                Time(i * 1000),
                TraceEvent::Timeout {
                    node: NodeId(i as u32),
                },
            );
        }
        let lines = t.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("n2 timeout"), "{lines:?}");
        assert!(lines[2].ends_with("n4 timeout"), "{lines:?}");
        let mut t = Trace::new(3);
        for _ in 0..4 {
            t.push(Time(5), TraceEvent::Timeout { node: NodeId(1) });
        }
        t.push(Time(6), TraceEvent::Timeout { node: NodeId(1) });
        assert_eq!(t.lines().len(), 2);
        assert!(
            t.lines()[0].ends_with("n1 timeout  (and 3 more times)"),
            "{:?}",
            t.lines()
        );
        let mut off = Trace::new(0);
        off.push(Time::ZERO, TraceEvent::Fault("x".into()));
        assert!(off.lines().is_empty());
    }

    #[test]
    fn messages_print_their_ballot_and_slot() {
        let brief = MsgBrief::Accept(
            Ballot::new(3, NodeId(1)),
            Slot(7),
            ValueBrief::Noop,
            Slot(5),
        );
        assert_eq!(brief.to_string(), "Accept(b=3.1 #7=noop commit<#5)");
        let v = ValueBrief::Batch {
            len: 3,
            client: 2,
            request: 9,
        };
        assert_eq!(v.to_string(), "[c2r9+2]");
    }
}
