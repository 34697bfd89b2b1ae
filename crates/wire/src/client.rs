//! Frames between clients (load generators, the launcher) and nodes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use paxos::{
    Ballot, Command, MessageKind, NodeId, Outcome, Protocol, Reply, RequestId, Role, Slot, Stats,
    ATTEMPT_BUCKETS,
};

use crate::coding::{put_bytes, put_count, put_option, put_varint, Reader, Writer};
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
    /// Replace the node's whole [`Impairment`] (an empty one lifts everything): the faults it
    /// imposes, from now on, on what it sends to each peer, on top of its configured emulated
    /// links. Answered with [`ResponseFrame::Impaired`], which carries no id either: keep at
    /// most one outstanding per stream. A node without an emulated link (no `[emulation]`
    /// section in its cluster file) answers with an error. The decoder refuses a loss outside
    /// `0..=1` or NaN; the node checks the rest (peers of its cluster, bounded delays).
    Impair(Impairment),
}

/// What a node sends back to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseFrame {
    /// The answer to a [`ClientFrame::Request`].
    Response(ClientResponse),
    /// The answer to a [`ClientFrame::StatusRequest`].
    Status(NodeStatus),
    /// The answer to a [`ClientFrame::Impair`]: `Ok` once the node applies the new impairment
    /// to what it sends from then on, or why it refused it (and kept the one it had).
    Impaired(Result<(), String>),
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
    /// Whether it votes in the configuration governing that slot: false for a learner, a
    /// removed voter, or a node that rejoined without its state and has not caught up.
    pub voting: bool,
    /// The round-trip time, in microseconds, that QUIC measures (smoothed, ack delay
    /// excluded where the estimator can tell) on the node's connection to each peer it has one
    /// with, by peer id.
    pub peer_rtt_us: Vec<(NodeId, u64)>,
    /// The node's emulated link, if it has one (its cluster file has an `[emulation]`
    /// section): the impairment in force and what it dropped. `None`: no emulated link, so an
    /// impairment would be refused.
    pub emulation: Option<EmulationStatus>,
    /// The core's counters ([`paxos::Stats`]) at the moment of the answer: cumulative since the
    /// node started, so a harness diffs two readings. Boxed: they would make every
    /// [`ResponseFrame`], replies included, four times as large.
    pub counters: Box<NodeCounters>,
    /// What the node's connections carried and which peer messages it received, cumulative
    /// since the node started ([`WireCounters`]). Boxed for the same reason as `counters`.
    pub wire: Box<WireCounters>,
}

/// What a node's connections carried, cumulative since the node started, in a
/// [`NodeStatus`]: peer traffic and client traffic apart, and the peer messages the node
/// received by kind. A harness diffs two readings, as with [`NodeCounters`].
///
/// The traffic counts are the sum over the node's live connections at the moment of the answer
/// plus the final counts of every connection that closed since the node started, so a
/// reconnect never makes them go backwards (a restart does: the node starts from zero).
///
/// `received` is a fixed array in [`MessageKind::ALL`] order, like [`NodeCounters::sent`], and
/// the decoder refuses any other count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireCounters {
    /// Traffic on connections to and from other nodes of the cluster (knocks included).
    pub peer: Traffic,
    /// Traffic on connections from clients (load generators, the launcher's status reads).
    pub client: Traffic,
    /// Peer messages received and decoded, by kind, in [`MessageKind::ALL`] order (the
    /// hello that opens a stream is not a message).
    pub received: [u64; MessageKind::ALL.len()],
}

/// What one class of connections (peer or client) carried.
///
/// - QUIC: `bytes_*` are UDP payload bytes (QUIC headers, acknowledgements, keep-alives and
///   RTT probes included; IP and UDP headers not), `datagrams_*` the UDP datagrams, `writes`
///   the send operations quinn made (one carries several datagrams with GSO), all from quinn's
///   connection statistics.
/// - TCP: `bytes_*` are the TCP payload bytes, i.e. TLS records (TLS framing, handshake and
///   session tickets included; TCP and IP headers not) that the peer acknowledged
///   (`tcpi_bytes_acked`) and that arrived (`tcpi_bytes_received`) from the kernel's
///   `TCP_INFO`; `writes` the stream writes the node made (each one flushed); `datagrams_*`
///   are `None`: a byte stream has no datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Write operations (see above for what one is on each transport).
    pub writes: u64,
    /// UDP datagrams sent; `None` on a transport without datagrams (TCP), never 0 for it, and
    /// while the node has had no connection of this class (an Unreplicated node's peers).
    pub datagrams_sent: Option<u64>,
    /// UDP datagrams received; `None` on a transport without datagrams.
    pub datagrams_received: Option<u64>,
}

impl Traffic {
    /// The sum of two counts (saturating); a datagram count is `None` only if both are.
    pub fn plus(self, other: Traffic) -> Traffic {
        let opt = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, None) => a,
            (None, b) => b,
        };
        Traffic {
            bytes_sent: self.bytes_sent.saturating_add(other.bytes_sent),
            bytes_received: self.bytes_received.saturating_add(other.bytes_received),
            writes: self.writes.saturating_add(other.writes),
            datagrams_sent: opt(self.datagrams_sent, other.datagrams_sent),
            datagrams_received: opt(self.datagrams_received, other.datagrams_received),
        }
    }
}

impl WireCounters {
    /// Each message kind's name with the count received, in [`MessageKind::ALL`] order.
    pub fn received_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MessageKind::ALL
            .iter()
            .zip(self.received)
            .map(|(k, n)| (k.name(), n))
    }
}

/// `traffic = bytes_sent bytes_received writes (varints) datagrams_sent:option<varint>
/// datagrams_received:option<varint>`.
fn put_traffic(buf: &mut Writer<'_>, t: &Traffic) {
    put_varint(buf, t.bytes_sent);
    put_varint(buf, t.bytes_received);
    put_varint(buf, t.writes);
    put_option(buf, t.datagrams_sent, put_varint);
    put_option(buf, t.datagrams_received, put_varint);
}

fn read_traffic(r: &mut Reader, names: [&'static str; 5]) -> Result<Traffic, WireError> {
    let bytes_sent = r.varint(names[0])?;
    let bytes_received = r.varint(names[1])?;
    let writes = r.varint(names[2])?;
    let mut opt = |name| -> Result<Option<u64>, WireError> {
        Ok(if r.option(name)? {
            Some(r.varint(name)?)
        } else {
            None
        })
    };
    Ok(Traffic {
        bytes_sent,
        bytes_received,
        writes,
        datagrams_sent: opt(names[3])?,
        datagrams_received: opt(names[4])?,
    })
}

/// `wire = peer:traffic client:traffic received:count varint*` (received: exactly one per
/// message kind, in `MessageKind::ALL` order).
fn put_wire(buf: &mut Writer<'_>, w: &WireCounters) {
    put_traffic(buf, &w.peer);
    put_traffic(buf, &w.client);
    put_array(buf, &w.received);
}

fn read_wire(r: &mut Reader) -> Result<WireCounters, WireError> {
    let peer = read_traffic(
        r,
        [
            "Wire.peer.bytes_sent",
            "Wire.peer.bytes_received",
            "Wire.peer.writes",
            "Wire.peer.datagrams_sent",
            "Wire.peer.datagrams_received",
        ],
    )?;
    let client = read_traffic(
        r,
        [
            "Wire.client.bytes_sent",
            "Wire.client.bytes_received",
            "Wire.client.writes",
            "Wire.client.datagrams_sent",
            "Wire.client.datagrams_received",
        ],
    )?;
    let received = read_array(r, "Wire.received", "one count per message kind")?;
    Ok(WireCounters {
        peer,
        client,
        received,
    })
}

/// The core's [`paxos::Stats`] as they cross the wire: every counter, durations in
/// microseconds. Cumulative since the node started (except the gauge `phase1_rtt_us`).
///
/// `sent` is a fixed array in [`MessageKind::ALL`] order (index `MessageKind::X as usize`);
/// [`NodeCounters::sent_by_name`] pairs each count with [`MessageKind::name`]. On the wire it
/// is a count followed by that many varints, and the decoder refuses any other count than
/// `MessageKind::ALL.len()`: a new message kind is a format change (and an ALPN bump), not
/// something to misattribute silently. `attempts` likewise has exactly [`ATTEMPT_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Messages sent, by kind, in [`MessageKind::ALL`] order (a broadcast counts once per peer).
    pub sent: [u64; MessageKind::ALL.len()],
    /// Phase-1 rounds started.
    pub phase1_rounds: u64,
    /// Nacks received for this node's own ballots.
    pub nacks_received: u64,
    /// Times this node's proposal was preempted.
    pub preemptions: u64,
    /// Total backoff waited before retries, µs.
    pub backoff_us: u64,
    /// Slots proposed with a batch of commands.
    pub batches: u64,
    /// Commands in those batches.
    pub batched_commands: u64,
    /// Largest batch proposed (a high-water mark, not a counter).
    pub max_batch_seen: u64,
    /// Slots learned as chosen.
    pub slots_chosen: u64,
    /// No-op slots executed.
    pub noops: u64,
    /// Commands executed (duplicates excluded).
    pub commands_executed: u64,
    /// Elections won (Multi-Paxos).
    pub elections_won: u64,
    /// Campaigns started (Multi-Paxos).
    pub campaigns: u64,
    /// Accepts re-sent after `retry_timeout`.
    pub retransmits: u64,
    /// Snapshots taken.
    pub snapshots_taken: u64,
    /// Snapshots installed from a peer.
    pub snapshots_installed: u64,
    /// Messages ignored.
    pub ignored: u64,
    /// Requests refused because the queue was full.
    pub overloaded: u64,
    /// `Get`s answered from the leader's state under a lease (`reads = "lease"`).
    pub local_reads: u64,
    /// Prepares refused inside a lease this node granted (`reads = "lease"`).
    pub lease_refusals: u64,
    /// Basic Paxos: commands decided in this node's own batch, by the attempt that got them
    /// chosen (`attempts[k - 1]` for attempt k = 1..=7, `attempts[7]` for 8 or more).
    pub attempts: [u64; ATTEMPT_BUCKETS],
    /// A gauge: the smoothed phase-1 round trip, µs; `None` before the first one.
    pub phase1_rtt_us: Option<u64>,
}

/// A duration in whole microseconds, saturating at `u64::MAX`.
fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl From<&Stats> for NodeCounters {
    fn from(s: &Stats) -> Self {
        NodeCounters {
            sent: s.sent,
            phase1_rounds: s.phase1_rounds,
            nacks_received: s.nacks_received,
            preemptions: s.preemptions,
            backoff_us: micros(s.backoff_time),
            batches: s.batches,
            batched_commands: s.batched_commands,
            max_batch_seen: s.max_batch_seen,
            slots_chosen: s.slots_chosen,
            noops: s.noops,
            commands_executed: s.commands_executed,
            elections_won: s.elections_won,
            campaigns: s.campaigns,
            retransmits: s.retransmits,
            snapshots_taken: s.snapshots_taken,
            snapshots_installed: s.snapshots_installed,
            ignored: s.ignored,
            overloaded: s.overloaded,
            local_reads: s.local_reads,
            lease_refusals: s.lease_refusals,
            attempts: s.attempts,
            phase1_rtt_us: s.phase1_rtt.map(micros),
        }
    }
}

impl NodeCounters {
    /// Each message kind's name with its count, in [`MessageKind::ALL`] order.
    pub fn sent_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MessageKind::ALL
            .iter()
            .zip(self.sent)
            .map(|(k, n)| (k.name(), n))
    }

    /// Commands this node got decided in its own batches (the sum of `attempts`, saturating:
    /// the values come off the wire).
    pub fn decided_own(&self) -> u64 {
        self.attempts.iter().fold(0, |a, &b| a.saturating_add(b))
    }

    /// The scalar counters in their wire order (everything but `sent`, `attempts` and
    /// `phase1_rtt_us`).
    fn scalars(&self) -> [u64; 19] {
        [
            self.phase1_rounds,
            self.nacks_received,
            self.preemptions,
            self.backoff_us,
            self.batches,
            self.batched_commands,
            self.max_batch_seen,
            self.slots_chosen,
            self.noops,
            self.commands_executed,
            self.elections_won,
            self.campaigns,
            self.retransmits,
            self.snapshots_taken,
            self.snapshots_installed,
            self.ignored,
            self.overloaded,
            self.local_reads,
            self.lease_refusals,
        ]
    }
}

/// `count varint*` (count must be `N`).
fn put_array(buf: &mut Writer<'_>, values: &[u64]) {
    put_count(buf, values.len());
    for &v in values {
        put_varint(buf, v);
    }
}

fn read_array<const N: usize>(
    r: &mut Reader,
    field: &'static str,
    expected: &'static str,
) -> Result<[u64; N], WireError> {
    let count = r.count(field, 1)?;
    if count != N {
        return Err(WireError::BadValue {
            field,
            value: count.to_string(),
            expected,
        });
    }
    let mut out = [0u64; N];
    for v in &mut out {
        *v = r.varint(field)?;
    }
    Ok(out)
}

/// `counters = sent:count varint* (exactly MessageKind::ALL.len()) phase1_rounds nacks_received
/// preemptions backoff_us batches batched_commands max_batch_seen slots_chosen noops
/// commands_executed elections_won campaigns retransmits snapshots_taken snapshots_installed
/// ignored overloaded local_reads lease_refusals (varints) attempts:count varint* (exactly ATTEMPT_BUCKETS)
/// phase1_rtt_us:option<varint>`.
fn put_counters(buf: &mut Writer<'_>, c: &NodeCounters) {
    put_array(buf, &c.sent);
    for v in c.scalars() {
        put_varint(buf, v);
    }
    put_array(buf, &c.attempts);
    put_option(buf, c.phase1_rtt_us, put_varint);
}

fn read_counters(r: &mut Reader) -> Result<NodeCounters, WireError> {
    let sent = read_array(r, "Counters.sent", "one count per message kind")?;
    let mut s = [0u64; 19];
    const NAMES: [&str; 19] = [
        "Counters.phase1_rounds",
        "Counters.nacks_received",
        "Counters.preemptions",
        "Counters.backoff_us",
        "Counters.batches",
        "Counters.batched_commands",
        "Counters.max_batch_seen",
        "Counters.slots_chosen",
        "Counters.noops",
        "Counters.commands_executed",
        "Counters.elections_won",
        "Counters.campaigns",
        "Counters.retransmits",
        "Counters.snapshots_taken",
        "Counters.snapshots_installed",
        "Counters.ignored",
        "Counters.overloaded",
        "Counters.local_reads",
        "Counters.lease_refusals",
    ];
    for (v, name) in s.iter_mut().zip(NAMES) {
        *v = r.varint(name)?;
    }
    let attempts = read_array(r, "Counters.attempts", "one count per attempt bucket")?;
    let phase1_rtt_us = if r.option("Counters.phase1_rtt_us")? {
        Some(r.varint("Counters.phase1_rtt_us")?)
    } else {
        None
    };
    let [phase1_rounds, nacks_received, preemptions, backoff_us, batches, batched_commands, max_batch_seen, slots_chosen, noops, commands_executed, elections_won, campaigns, retransmits, snapshots_taken, snapshots_installed, ignored, overloaded, local_reads, lease_refusals] =
        s;
    Ok(NodeCounters {
        sent,
        phase1_rounds,
        nacks_received,
        preemptions,
        backoff_us,
        batches,
        batched_commands,
        max_batch_seen,
        slots_chosen,
        noops,
        commands_executed,
        elections_won,
        campaigns,
        retransmits,
        snapshots_taken,
        snapshots_installed,
        ignored,
        overloaded,
        local_reads,
        lease_refusals,
        attempts,
        phase1_rtt_us,
    })
}

/// What a node's emulated link reports in its [`NodeStatus`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmulationStatus {
    /// The impairment in force, as the last accepted [`ClientFrame::Impair`] set it (empty
    /// when none was, or after a restart).
    pub impairment: Impairment,
    /// Datagrams the impairments dropped since the node started: every datagram to a blocked
    /// peer, and those the impairment's loss drew (the configured loss of `[emulation]` is
    /// counted apart). A harness compares two readings to see that a fault took effect.
    pub dropped_fault: u64,
}

/// Faults a node imposes at run time on what it sends, peer by peer, on top of the links its
/// `[emulation]` section configures. Set with [`ClientFrame::Impair`], which replaces the whole
/// set; a peer that is not listed is not impaired.
///
/// Each node impairs only what **it sends**. To partition nodes A and B, tell A to block B *and*
/// B to block A; to cut a node off, tell it to block every peer and every peer to block it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impairment {
    /// One entry per impaired peer, by node id; each peer at most once.
    pub links: Vec<(NodeId, LinkImpairment)>,
}

/// What a node does, on top of the configured link, to what it sends to one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkImpairment {
    /// Drop everything sent to the peer: this node's half of a partition.
    pub blocked: bool,
    /// Microseconds added to the link's one-way delay.
    pub extra_delay_us: u64,
    /// Probability in `0..=1` that a datagram is dropped, drawn independently of the link's
    /// configured loss.
    pub loss: f64,
}

/// `loss` is never NaN in a decoded frame (the decoder refuses it) nor in an impairment a node
/// or [`Impairment::check`] accepts, and only NaN breaks the reflexivity of `f64` equality.
impl Eq for LinkImpairment {}

impl LinkImpairment {
    /// Drop everything to the peer.
    pub const BLOCKED: LinkImpairment = LinkImpairment {
        blocked: true,
        extra_delay_us: 0,
        loss: 0.0,
    };

    /// Add `us` microseconds of one-way delay.
    pub fn delay_us(us: u64) -> Self {
        LinkImpairment {
            extra_delay_us: us,
            ..Self::default()
        }
    }

    /// Drop a share `p` (`0..=1`) of the datagrams.
    pub fn loss(p: f64) -> Self {
        LinkImpairment {
            loss: p,
            ..Self::default()
        }
    }

    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        !self.blocked && self.extra_delay_us == 0 && self.loss == 0.0
    }
}

impl Impairment {
    /// No impairment: what lifts every fault.
    pub fn none() -> Self {
        Self::default()
    }

    /// The same impairment on the links to every node of `peers`.
    pub fn to_each(peers: impl IntoIterator<Item = NodeId>, link: LinkImpairment) -> Self {
        Impairment {
            links: peers.into_iter().map(|p| (p, link)).collect(),
        }
    }

    /// Whether it impairs nothing.
    pub fn is_empty(&self) -> bool {
        self.links.iter().all(|(_, l)| l.is_none())
    }

    /// The impairment of the link to `peer`, if it is listed.
    pub fn link(&self, peer: NodeId) -> Option<&LinkImpairment> {
        self.links.iter().find(|(p, _)| *p == peer).map(|(_, l)| l)
    }

    /// What can be checked without knowing the cluster: every loss in `0..=1` (not NaN), and
    /// no peer listed twice. A node checks besides that every peer is one of its cluster and
    /// that delays stay bounded.
    pub fn check(&self) -> Result<(), String> {
        for (i, (peer, l)) in self.links.iter().enumerate() {
            if !(0.0..=1.0).contains(&l.loss) {
                return Err(format!(
                    "link to node {}: loss {} is not a probability in 0..=1",
                    peer.0, l.loss
                ));
            }
            if self.links[..i].iter().any(|(p, _)| p == peer) {
                return Err(format!("node {} is listed twice", peer.0));
            }
        }
        Ok(())
    }
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

/// Smallest encoding of one impaired link: node, blocked, extra delay, loss.
const MIN_LINK_IMPAIRMENT_LEN: usize = 1 + 1 + 1 + 8;

/// `count (node blocked:u8 extra_delay_us:varint loss:f64be)*`.
fn put_impairment(buf: &mut Writer<'_>, imp: &Impairment) {
    put_count(buf, imp.links.len());
    for (peer, l) in &imp.links {
        put_node(buf, *peer);
        buf.put_u8(u8::from(l.blocked));
        put_varint(buf, l.extra_delay_us);
        buf.put_slice(&l.loss.to_bits().to_be_bytes());
    }
}

fn read_impairment(r: &mut Reader) -> Result<Impairment, WireError> {
    let count = r.count("Impairment.links", MIN_LINK_IMPAIRMENT_LEN)?;
    let mut links = Reader::vec_for(count);
    for _ in 0..count {
        let peer = read_node(r, "LinkImpairment.node")?;
        let blocked = r.option("LinkImpairment.blocked")?;
        let extra_delay_us = r.varint("LinkImpairment.extra_delay_us")?;
        let loss = f64::from_bits(u64::from_be_bytes(r.array("LinkImpairment.loss")?));
        if !(0.0..=1.0).contains(&loss) {
            return Err(WireError::BadValue {
                field: "LinkImpairment.loss",
                value: loss.to_string(),
                expected: "a probability in 0..=1",
            });
        }
        links.push((
            peer,
            LinkImpairment {
                blocked,
                extra_delay_us,
                loss,
            },
        ));
    }
    Ok(Impairment { links })
}

const IMPAIRED_OK: u8 = 0;
const IMPAIRED_ERR: u8 = 1;

impl WriteBody for ClientFrame {
    fn write_body(&self, buf: &mut Writer<'_>) {
        match self {
            ClientFrame::Request(cmd) => {
                buf.put_u8(tag::REQUEST);
                put_command(buf, cmd);
            }
            ClientFrame::StatusRequest => buf.put_u8(tag::STATUS_REQUEST),
            ClientFrame::Impair(imp) => {
                buf.put_u8(tag::IMPAIR);
                put_impairment(buf, imp);
            }
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
            tag::IMPAIR => (ClientFrame::Impair(read_impairment(&mut r)?), "impair"),
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
                buf.put_u8(u8::from(s.voting));
                put_count(buf, s.peer_rtt_us.len());
                for &(peer, rtt) in &s.peer_rtt_us {
                    put_node(buf, peer);
                    put_varint(buf, rtt);
                }
                put_option(buf, s.emulation.as_ref(), |buf, e| {
                    put_impairment(buf, &e.impairment);
                    put_varint(buf, e.dropped_fault);
                });
                put_counters(buf, &s.counters);
                put_wire(buf, &s.wire);
            }
            ResponseFrame::Impaired(result) => {
                buf.put_u8(tag::IMPAIRED);
                match result {
                    Ok(()) => buf.put_u8(IMPAIRED_OK),
                    Err(why) => {
                        buf.put_u8(IMPAIRED_ERR);
                        put_bytes(buf, why.as_bytes());
                    }
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
                    voting: r.option("Status.voting")?,
                    peer_rtt_us: read_peer_rtts(&mut r)?,
                    emulation: if r.option("Status.emulation")? {
                        Some(EmulationStatus {
                            impairment: read_impairment(&mut r)?,
                            dropped_fault: r.varint("Status.dropped_fault")?,
                        })
                    } else {
                        None
                    },
                    counters: Box::new(read_counters(&mut r)?),
                    wire: Box::new(read_wire(&mut r)?),
                };
                (ResponseFrame::Status(status), "status")
            }
            tag::IMPAIRED => {
                let result = match r.u8("Impaired.result")? {
                    IMPAIRED_OK => Ok(()),
                    IMPAIRED_ERR => {
                        // An error message for people: a stray byte must not lose the rest.
                        let why = r.bytes("Impaired.why")?;
                        Err(String::from_utf8_lossy(&why).into_owned())
                    }
                    tag => {
                        return Err(WireError::UnknownTag {
                            what: "Impaired.result",
                            tag,
                        })
                    }
                };
                (ResponseFrame::Impaired(result), "impaired")
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

impl From<Impairment> for ClientFrame {
    fn from(imp: Impairment) -> Self {
        ClientFrame::Impair(imp)
    }
}

impl From<NodeStatus> for ResponseFrame {
    fn from(status: NodeStatus) -> Self {
        ResponseFrame::Status(status)
    }
}
