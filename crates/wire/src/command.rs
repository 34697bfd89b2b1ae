//! Encoding of the core's vocabulary that several frames share: ids, ballots, commands, log
//! values and outcomes.

use paxos::{Ballot, ClientId, Command, NodeId, Op, Outcome, RequestId, Slot, Time, Value};

use crate::coding::{put_bytes, put_count, put_option, put_varint, Reader, Writer};
use crate::error::WireError;

/// Smallest encoding of a command: client, request, op tag, key length.
pub(crate) const MIN_COMMAND_LEN: usize = 5;
/// Smallest encoding of a value (a no-op).
pub(crate) const MIN_VALUE_LEN: usize = 1;
/// Smallest encoding of a ballot.
pub(crate) const MIN_BALLOT_LEN: usize = 2;

const OP_GET: u8 = 0;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_RECONFIGURE: u8 = 3;

const VALUE_NOOP: u8 = 0;
const VALUE_BATCH: u8 = 1;

const OUTCOME_VALUE: u8 = 0;
const OUTCOME_DONE: u8 = 1;
const OUTCOME_NOT_LEADER: u8 = 2;
const OUTCOME_EXPIRED: u8 = 3;
const OUTCOME_OVERLOADED: u8 = 4;
const OUTCOME_REFUSED: u8 = 5;

#[inline]
pub(crate) fn put_slot(buf: &mut Writer<'_>, slot: Slot) {
    put_varint(buf, slot.0);
}

#[inline]
pub(crate) fn read_slot(r: &mut Reader, field: &'static str) -> Result<Slot, WireError> {
    r.varint(field).map(Slot)
}

#[inline]
pub(crate) fn put_node(buf: &mut Writer<'_>, node: NodeId) {
    put_varint(buf, node.0.into());
}

#[inline]
pub(crate) fn read_node(r: &mut Reader, field: &'static str) -> Result<NodeId, WireError> {
    r.varint_u32(field).map(NodeId)
}

/// A ballot: round, then node.
#[inline]
pub(crate) fn put_ballot(buf: &mut Writer<'_>, ballot: Ballot) {
    put_varint(buf, ballot.round);
    put_node(buf, ballot.node);
}

#[inline]
pub(crate) fn read_ballot(r: &mut Reader, field: &'static str) -> Result<Ballot, WireError> {
    let round = r.varint(field)?;
    let node = read_node(r, field)?;
    Ok(Ballot { round, node })
}

/// A client session id: its creation time (ms since the epoch), then its nonce (two varints).
#[inline]
pub(crate) fn put_client(buf: &mut Writer<'_>, client: ClientId) {
    put_varint(buf, client.created_ms());
    put_varint(buf, client.nonce());
}

#[inline]
pub(crate) fn read_client(r: &mut Reader, field: &'static str) -> Result<ClientId, WireError> {
    let created_ms = r.varint(field)?;
    Ok(ClientId::from_parts(created_ms, r.varint(field)?))
}

/// A command: client, request, then the operation (tag, key, value for a put).
pub(crate) fn put_command(buf: &mut Writer<'_>, cmd: &Command) {
    put_client(buf, cmd.client);
    put_varint(buf, cmd.request.0);
    match &cmd.op {
        Op::Get { key } => {
            buf.put_u8(OP_GET);
            put_bytes(buf, key);
        }
        Op::Put { key, value } => {
            buf.put_u8(OP_PUT);
            put_bytes(buf, key);
            put_bytes(buf, value);
        }
        Op::Delete { key } => {
            buf.put_u8(OP_DELETE);
            put_bytes(buf, key);
        }
        Op::Reconfigure { add, remove } => {
            buf.put_u8(OP_RECONFIGURE);
            put_nodes(buf, add);
            put_nodes(buf, remove);
        }
    }
}

/// A list of node ids: a count, then each id.
fn put_nodes(buf: &mut Writer<'_>, nodes: &[NodeId]) {
    put_count(buf, nodes.len());
    for n in nodes {
        put_node(buf, *n);
    }
}

fn read_nodes(r: &mut Reader, field: &'static str) -> Result<Vec<NodeId>, WireError> {
    let count = r.count(field, 1)?;
    let mut nodes = Reader::vec_for(count);
    for _ in 0..count {
        nodes.push(read_node(r, field)?);
    }
    Ok(nodes)
}

#[inline]
pub(crate) fn read_command(r: &mut Reader) -> Result<Command, WireError> {
    let client = read_client(r, "Command.client")?;
    let request = RequestId(r.varint("Command.request")?);
    let op = match r.u8("Op tag")? {
        OP_GET => Op::Get {
            key: r.bytes("Op.key")?,
        },
        OP_PUT => Op::Put {
            key: r.bytes("Op.key")?,
            value: r.bytes("Op.value")?,
        },
        OP_DELETE => Op::Delete {
            key: r.bytes("Op.key")?,
        },
        OP_RECONFIGURE => Op::Reconfigure {
            add: read_nodes(r, "Op.add")?,
            remove: read_nodes(r, "Op.remove")?,
        },
        tag => return Err(WireError::UnknownTag { what: "Op", tag }),
    };
    Ok(Command {
        client,
        request,
        op,
    })
}

/// A log value: `0x00` for a no-op, or `0x01`, the batch's stamp, a count and the commands.
pub(crate) fn put_value(buf: &mut Writer<'_>, value: &Value) {
    match value {
        Value::Noop => buf.put_u8(VALUE_NOOP),
        Value::Batch(cmds) => {
            // One reservation for the whole batch: payload plus a generous per-command overhead.
            let payload: usize = cmds.iter().map(|c| c.op.payload_len()).sum();
            buf.reserve(1 + 20 + payload + cmds.len() * 32);
            buf.put_u8(VALUE_BATCH);
            put_varint(buf, cmds.stamp.0);
            put_count(buf, cmds.len());
            for cmd in cmds.iter() {
                put_command(buf, cmd);
            }
        }
    }
}

pub(crate) fn read_value(r: &mut Reader) -> Result<Value, WireError> {
    match r.u8("Value tag")? {
        VALUE_NOOP => Ok(Value::Noop),
        VALUE_BATCH => {
            let stamp = Time(r.varint("Value.stamp")?);
            let count = r.count("Value.commands", MIN_COMMAND_LEN)?;
            let mut cmds = Reader::vec_for(count);
            for _ in 0..count {
                cmds.push(read_command(r)?);
            }
            Ok(Value::stamped(stamp, cmds))
        }
        tag => Err(WireError::UnknownTag { what: "Value", tag }),
    }
}

/// An outcome: its tag, then an optional value (Value) or optional leader (NotLeader).
pub(crate) fn put_outcome(buf: &mut Writer<'_>, outcome: &Outcome) {
    match outcome {
        Outcome::Value(v) => {
            buf.put_u8(OUTCOME_VALUE);
            put_option(buf, v.as_ref(), |buf, v| put_bytes(buf, v));
        }
        Outcome::Done => buf.put_u8(OUTCOME_DONE),
        Outcome::NotLeader { leader } => {
            buf.put_u8(OUTCOME_NOT_LEADER);
            put_option(buf, *leader, put_node);
        }
        Outcome::Expired => buf.put_u8(OUTCOME_EXPIRED),
        Outcome::Overloaded => buf.put_u8(OUTCOME_OVERLOADED),
        Outcome::Refused(why) => {
            buf.put_u8(OUTCOME_REFUSED);
            put_bytes(buf, why.as_bytes());
        }
    }
}

pub(crate) fn read_outcome(r: &mut Reader) -> Result<Outcome, WireError> {
    match r.u8("Outcome tag")? {
        OUTCOME_VALUE => {
            let value = if r.option("Outcome.value")? {
                Some(r.bytes("Outcome.value")?)
            } else {
                None
            };
            Ok(Outcome::Value(value))
        }
        OUTCOME_DONE => Ok(Outcome::Done),
        OUTCOME_NOT_LEADER => {
            let leader = if r.option("Outcome.leader")? {
                Some(read_node(r, "Outcome.leader")?)
            } else {
                None
            };
            Ok(Outcome::NotLeader { leader })
        }
        OUTCOME_EXPIRED => Ok(Outcome::Expired),
        OUTCOME_OVERLOADED => Ok(Outcome::Overloaded),
        OUTCOME_REFUSED => {
            let why = r.bytes("Outcome.refused")?;
            match String::from_utf8(why.to_vec()) {
                Ok(why) => Ok(Outcome::Refused(why)),
                Err(e) => Err(WireError::BadValue {
                    field: "Outcome.refused",
                    value: format!("{} bytes that are not UTF-8", e.as_bytes().len()),
                    expected: "UTF-8 text",
                }),
            }
        }
        tag => Err(WireError::UnknownTag {
            what: "Outcome",
            tag,
        }),
    }
}
