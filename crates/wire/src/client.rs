//! Frames between clients (load generators, the launcher) and nodes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use paxos::{Ballot, Command, NodeId, Outcome, Protocol, Reply, RequestId, Role, Slot};

use crate::coding::{put_count, put_option, put_varint, Reader, Writer};
use crate::command::{
    put_ballot, put_command, put_node, put_outcome, put_slot, read_ballot, read_command, read_node,
    read_outcome, read_slot,
};
use crate::error::WireError;
use crate::frame::{tag, Frame, WriteBody};

/// What a client sends to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// Execute a command. The node answers with [`ResponseFrame::Response`], whose reply carries
    /// the same client and request ids, so a client may keep many requests outstanding.
    Request(Command),
    /// Ask for the node's [`NodeStatus`] (answered with [`ResponseFrame::Status`]). Status
    /// answers carry no id: keep at most one status request outstanding per stream.
    StatusRequest,
}

/// What a node sends back to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseFrame {
    /// The answer to a [`ClientFrame::Request`].
    Response(ClientResponse),
    /// The answer to a [`ClientFrame::StatusRequest`].
    Status(NodeStatus),
}

/// The core's [`Reply`] plus what only the runtime knows: where the leader can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    /// The reply, as the core produced it.
    pub reply: Reply,
    /// For [`Outcome::NotLeader`] with a known leader: the address clients reach that leader at,
    /// filled in by the runtime from the cluster configuration. `None` otherwise.
    pub leader_addr: Option<SocketAddr>,
}

/// A node's answer to a status request. A launcher polls it to wait until a cluster is ready
/// (e.g. until some node reports itself `Leader`, or every node knows the same leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node answering.
    pub node: NodeId,
    /// The protocol it runs.
    pub protocol: Protocol,
    /// What it is doing now.
    pub role: Role,
    /// Its current ballot.
    pub ballot: Ballot,
    /// The node it believes leads, if any.
    pub leader: Option<NodeId>,
    /// Its next slot to execute: every slot below has been executed.
    pub executed: Slot,
    /// The round-trip time, in microseconds, that QUIC measures (smoothed, ack delay
    /// excluded where the estimator can tell) on the node's connection to each peer it has one
    /// with, by peer id.
    pub peer_rtt_us: Vec<(NodeId, u64)>,
}

impl ClientResponse {
    /// A response with no leader address.
    pub fn new(reply: Reply) -> Self {
        ClientResponse {
            reply,
            leader_addr: None,
        }
    }

    /// For a [`Outcome::NotLeader`] redirect: the leader's id and address, each if known. `None`
    /// for every other outcome.
    pub fn redirect(&self) -> Option<(Option<NodeId>, Option<SocketAddr>)> {
        match self.reply.outcome {
            Outcome::NotLeader { leader } => Some((leader, self.leader_addr)),
            _ => None,
        }
    }
}

impl From<Reply> for ClientResponse {
    fn from(reply: Reply) -> Self {
        ClientResponse::new(reply)
    }
}

const ADDR_NONE: u8 = 0;
const ADDR_V4: u8 = 4;
const ADDR_V6: u8 = 6;

/// An optional socket address: `0x00`; `0x04`, 4 address bytes and a big-endian port; or `0x06`,
/// 16 address bytes, port, flow info and scope id (big-endian `u32`s).
fn put_addr(buf: &mut Writer<'_>, addr: Option<SocketAddr>) {
    match addr {
        None => buf.put_u8(ADDR_NONE),
        Some(SocketAddr::V4(a)) => {
            buf.put_u8(ADDR_V4);
            buf.put_slice(&a.ip().octets());
            buf.put_u16(a.port());
        }
        Some(SocketAddr::V6(a)) => {
            buf.put_u8(ADDR_V6);
            buf.put_slice(&a.ip().octets());
            buf.put_u16(a.port());
            buf.put_u32(a.flowinfo());
            buf.put_u32(a.scope_id());
        }
    }
}

fn read_addr(r: &mut Reader) -> Result<Option<SocketAddr>, WireError> {
    const FIELD: &str = "ClientResponse.leader_addr";
    match r.u8(FIELD)? {
        ADDR_NONE => Ok(None),
        ADDR_V4 => {
            let ip = Ipv4Addr::from(r.array::<4>(FIELD)?);
            Ok(Some(SocketAddrV4::new(ip, r.u16_be(FIELD)?).into()))
        }
        ADDR_V6 => {
            let ip = Ipv6Addr::from(r.array::<16>(FIELD)?);
            let port = r.u16_be(FIELD)?;
            let flowinfo = r.u32_be(FIELD)?;
            let scope_id = r.u32_be(FIELD)?;
            Ok(Some(SocketAddrV6::new(ip, port, flowinfo, scope_id).into()))
        }
        tag => Err(WireError::UnknownTag {
            what: "address family",
            tag,
        }),
    }
}

fn protocol_tag(p: Protocol) -> u8 {
    match p {
        Protocol::MultiPaxos => 0,
        Protocol::BasicPaxos => 1,
        Protocol::Unreplicated => 2,
    }
}

fn read_protocol(r: &mut Reader) -> Result<Protocol, WireError> {
    match r.u8("Status.protocol")? {
        0 => Ok(Protocol::MultiPaxos),
        1 => Ok(Protocol::BasicPaxos),
        2 => Ok(Protocol::Unreplicated),
        tag => Err(WireError::UnknownTag {
            what: "Protocol",
            tag,
        }),
    }
}

fn role_tag(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::Candidate => 1,
        Role::Leader => 2,
        Role::Proposer => 3,
        Role::Single => 4,
    }
}

fn read_role(r: &mut Reader) -> Result<Role, WireError> {
    match r.u8("Status.role")? {
        0 => Ok(Role::Follower),
        1 => Ok(Role::Candidate),
        2 => Ok(Role::Leader),
        3 => Ok(Role::Proposer),
        4 => Ok(Role::Single),
        tag => Err(WireError::UnknownTag { what: "Role", tag }),
    }
}

/// `count (node rtt_us:varint)*`: a node and a varint are at least one byte each.
fn read_peer_rtts(r: &mut Reader) -> Result<Vec<(NodeId, u64)>, WireError> {
    let count = r.count("Status.peer_rtt_us", 2)?;
    let mut rtts = Reader::vec_for(count);
    for _ in 0..count {
        let peer = read_node(r, "PeerRtt.node")?;
        rtts.push((peer, r.varint("PeerRtt.rtt_us")?));
    }
    Ok(rtts)
}

impl WriteBody for ClientFrame {
    fn write_body(&self, buf: &mut Writer<'_>) {
        match self {
            ClientFrame::Request(cmd) => {
                buf.put_u8(tag::REQUEST);
                put_command(buf, cmd);
            }
            ClientFrame::StatusRequest => buf.put_u8(tag::STATUS_REQUEST),
        }
    }
}

impl Frame for ClientFrame {
    const KIND: &'static str = "client frame";

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let (frame, kind) = match r.u8("frame tag")? {
            tag::REQUEST => (ClientFrame::Request(read_command(&mut r)?), "request"),
            tag::STATUS_REQUEST => (ClientFrame::StatusRequest, "status request"),
            t => return Err(tag::unexpected(t, Self::KIND)),
        };
        r.finish(kind)?;
        Ok(frame)
    }
}

impl WriteBody for ResponseFrame {
    fn write_body(&self, buf: &mut Writer<'_>) {
        match self {
            ResponseFrame::Response(resp) => {
                buf.put_u8(tag::RESPONSE);
                crate::command::put_client(buf, resp.reply.client);
                put_varint(buf, resp.reply.request.0);
                put_outcome(buf, &resp.reply.outcome);
                put_addr(buf, resp.leader_addr);
            }
            ResponseFrame::Status(s) => {
                buf.put_u8(tag::STATUS);
                put_node(buf, s.node);
                buf.put_u8(protocol_tag(s.protocol));
                buf.put_u8(role_tag(s.role));
                put_ballot(buf, s.ballot);
                put_option(buf, s.leader, put_node);
                put_slot(buf, s.executed);
                put_count(buf, s.peer_rtt_us.len());
                for &(peer, rtt) in &s.peer_rtt_us {
                    put_node(buf, peer);
                    put_varint(buf, rtt);
                }
            }
        }
    }
}

impl Frame for ResponseFrame {
    const KIND: &'static str = "response frame";

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let (frame, kind) = match r.u8("frame tag")? {
            tag::RESPONSE => {
                let client = crate::command::read_client(&mut r, "Reply.client")?;
                let request = RequestId(r.varint("Reply.request")?);
                let outcome = read_outcome(&mut r)?;
                let leader_addr = read_addr(&mut r)?;
                let reply = Reply {
                    client,
                    request,
                    outcome,
                };
                (
                    ResponseFrame::Response(ClientResponse { reply, leader_addr }),
                    "response",
                )
            }
            tag::STATUS => {
                let status = NodeStatus {
                    node: read_node(&mut r, "Status.node")?,
                    protocol: read_protocol(&mut r)?,
                    role: read_role(&mut r)?,
                    ballot: read_ballot(&mut r, "Status.ballot")?,
                    leader: if r.option("Status.leader")? {
                        Some(read_node(&mut r, "Status.leader")?)
                    } else {
                        None
                    },
                    executed: read_slot(&mut r, "Status.executed")?,
                    peer_rtt_us: read_peer_rtts(&mut r)?,
                };
                (ResponseFrame::Status(status), "status")
            }
            t => return Err(tag::unexpected(t, Self::KIND)),
        };
        r.finish(kind)?;
        Ok(frame)
    }
}

impl From<Command> for ClientFrame {
    fn from(cmd: Command) -> Self {
        ClientFrame::Request(cmd)
    }
}

impl From<ClientResponse> for ResponseFrame {
    fn from(resp: ClientResponse) -> Self {
        ResponseFrame::Response(resp)
    }
}

impl From<NodeStatus> for ResponseFrame {
    fn from(status: NodeStatus) -> Self {
        ResponseFrame::Status(status)
    }
}
