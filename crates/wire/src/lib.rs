//! Encoding of paxbench's peer messages and client requests over [`bytes`].
//!
//! Everything that crosses a QUIC stream is a **frame**: a 4-byte big-endian body length, then
//! the body, whose first byte is a tag. Three families of frames, one per direction and kind of
//! stream, each implement [`Frame`]:
//!
//! | family | stream | frames |
//! |---|---|---|
//! | [`PeerFrame`] (or bare [`paxos::Message`]) | node → node | a [`PeerHello`], then messages |
//! | [`ClientFrame`] | client → node | [`paxos::Command`] requests, status requests, [`Impairment`]s to impose |
//! | [`ResponseFrame`] | node → client | [`ClientResponse`]s (a [`paxos::Reply`] plus the leader's address), [`NodeStatus`], whether an impairment was applied |
//!
//! # Using it
//!
//! [`encode_frame`] appends one length-prefixed frame to a `BytesMut`, so a writer task can
//! coalesce every frame of a loop turn into one buffer and one write (with quinn, one frame per
//! write was measured ~40× slower). To send one message to several peers, encode it once and clone the
//! frozen `Bytes`. [`decode_frame`] takes the next whole frame off the front of a read buffer, or
//! returns `Ok(None)` when more bytes are needed. Keys and values in decoded frames are slices of
//! the read buffer, not copies.
//!
//! The flip side of zero-copy: a slice keeps its whole read buffer alive. That is right for a
//! message that is handled and dropped, but a key or value stored for long (in the key-value
//! state, or a log entry that lives until truncation) pins the entire buffer it arrived in, tens
//! of KiB for 80 bytes of payload. Whoever keeps payloads for long should copy them
//! (`Bytes::copy_from_slice`) when they store them.
//!
//! ```
//! use bytes::BytesMut;
//! use paxos::{Accepted, Ballot, Message, NodeId, Slot};
//! use wire::{decode_frame, encode_frame, WireError};
//!
//! let msg = Message::Accepted(Accepted { ballot: Ballot::new(3, NodeId(1)), slot: Slot(7), executed: Slot(5) });
//!
//! // Sender: encode once, share the same `Bytes` with every peer.
//! let mut out = BytesMut::new();
//! encode_frame(&msg, &mut out)?;
//! let frame = out.split().freeze();
//! let (to_a, to_b) = (frame.clone(), frame);
//!
//! // Receiver: bytes arrive in pieces; decode whenever a whole frame is buffered.
//! let mut inbox = BytesMut::new();
//! inbox.extend_from_slice(&to_a[..3]);
//! assert_eq!(decode_frame::<Message>(&mut inbox)?, None);
//! inbox.extend_from_slice(&to_a[3..]);
//! assert_eq!(decode_frame::<Message>(&mut inbox)?, Some(msg));
//! assert!(inbox.is_empty());
//! # drop(to_b);
//! # Ok::<(), WireError>(())
//! ```
//!
//! # Limits and errors
//!
//! Every frame body is at most [`Codec::max_frame_len`] bytes, [`DEFAULT_MAX_FRAME_LEN`] = 16 MiB
//! unless a [`Codec`] is built with another limit. The decoder checks the length prefix before it
//! waits for or allocates the body, and checks every element count against the bytes left before
//! it allocates a vector, so a forged length costs nothing. The encoder refuses to build a frame
//! over the limit. Snapshots (the whole key-value state) and catch-up Learns are the frames that
//! can grow that large; raise the limit on every node if the state does.
//!
//! Decoding never panics: truncated, oversized or garbage input is a [`WireError`] that says what
//! was wrong (which field was truncated, which tag was unknown, both lengths of an oversized
//! frame). A frame that does not decode closes its connection; the node keeps running.
//!
//! # Versioning
//!
//! Frames carry no version byte. The wire version is negotiated once per connection through ALPN:
//! peers use [`PEER_ALPN`], clients [`CLIENT_ALPN`]. Any incompatible change to the format below
//! bumps the version suffix of the ALPN whose frames it changes, so mismatched builds fail the
//! TLS handshake with a clear ALPN error instead of misreading frames. `paxbench-client/2` added
//! the Impair and Impaired frames and the `emulation` field of Status; peer frames did not
//! change, so the peer ALPN stayed at `/1`. `paxbench-client/3` added the `counters` field of
//! Status (the core's [`paxos::Stats`], see [`NodeCounters`]). `paxbench-client/4` added the
//! `wire` field of Status (bytes, datagrams and writes of the node's peer and client
//! connections, and the peer messages it received by kind; see [`WireCounters`]). `paxbench-peer/3`
//! and `paxbench-client/5` added the lease: the `sent` field of Heartbeat, the HeartbeatAck
//! frame (one more message kind in every by-kind count) and the `local_reads` and
//! `lease_refusals` counters.
//!
//! # Format
//!
//! ```text
//! frame       = len:u32be body                  len = body length, <= max_frame_len
//! body        = tag:u8 payload                  nothing may follow the payload
//! varint      = unsigned LEB128                 1 byte below 128, at most 10 bytes
//! bytes       = len:varint raw[len]
//! count       = varint                          number of elements that follow
//! option<T>   = 0x00 | 0x01 T
//! slot, round, request, stamp = varint;  node = varint (must fit u32)
//! client      = created_ms:varint nonce:varint
//! ballot      = round:varint node:varint
//! scope       = 0x00 slot (From) | 0x01 slot (Only)
//! value       = 0x00 (Noop) | 0x01 stamp count command*        stamp: the proposer's time, ns
//! command     = client request op
//! op          = 0x00 key:bytes (Get) | 0x01 key:bytes value:bytes (Put) | 0x02 key:bytes (Delete)
//! outcome     = 0x00 option<bytes> (Value) | 0x01 (Done) | 0x02 option<node> (NotLeader)
//!             | 0x03 (Expired)
//! addr        = 0x00 (none) | 0x04 ip[4] port:u16be
//!             | 0x06 ip[16] port:u16be flowinfo:u32be scope_id:u32be
//! impairment  = count (node blocked:u8 extra_delay_us:varint loss:f64be)*
//!                                               blocked 0 or 1; loss in 0..=1, not NaN
//! f64be       = IEEE 754 binary64, its bits as a big-endian u64
//! counters    = sent:count varint* phase1_rounds nacks_received preemptions backoff_us batches
//!               batched_commands max_batch_seen slots_chosen noops commands_executed
//!               elections_won campaigns retransmits snapshots_taken snapshots_installed
//!               ignored overloaded local_reads lease_refusals attempts:count varint*
//!               phase1_rtt_us:option<varint>
//!                                               all varints; sent: exactly one per message
//!                                               kind, in MessageKind::ALL order; attempts:
//!                                               exactly ATTEMPT_BUCKETS (8)
//! wire        = peer:traffic client:traffic received:count varint*
//!                                               received: exactly one per message kind, in
//!                                               MessageKind::ALL order
//! traffic     = bytes_sent:varint bytes_received:varint writes:varint
//!               datagrams_sent:option<varint> datagrams_received:option<varint>
//!                                               datagrams: none on TCP
//! state       = cache_limit:varint session_timeout_ns:varint clock:varint next_sweep:varint
//!               count (key:bytes value:bytes)* count session*
//! session     = client last_active:varint base:varint count option<outcome>*
//!                                                   replies of requests base, base+1, ...
//! ```
//!
//! Frame tags (one tag space for all families; a known tag on the wrong stream is reported as
//! [`WireError::UnexpectedFrame`]):
//!
//! | tag | frame | family | payload |
//! |---|---|---|---|
//! | `0x01` | Prepare (1a) | peer | `ballot scope` |
//! | `0x02` | Promise (1b) | peer | `ballot scope log_start:slot executed:slot count (slot ballot value)*` |
//! | `0x03` | Accept (2a) | peer | `ballot slot commit:slot truncate:slot value` |
//! | `0x04` | Accepted (2b) | peer | `ballot slot executed:slot` |
//! | `0x05` | Commit | peer | `ballot up_to:slot truncate:slot` |
//! | `0x06` | Nack | peer | `ballot promised:ballot option<slot>` |
//! | `0x07` | Heartbeat | peer | `ballot commit:slot truncate:slot sent:varint` (ns, sender's clock) |
//! | `0x08` | Learn | peer | `count (slot value)*` |
//! | `0x09` | CatchUp | peer | `from:slot` |
//! | `0x0a` | Snapshot | peer | `upto:slot state` |
//! | `0x0b` | HeartbeatAck | peer | `ballot sent:varint` (the heartbeat's, echoed) |
//! | `0x10` | Hello | peer | `node` |
//! | `0x20` | Request | client | `command` |
//! | `0x21` | StatusRequest | client | (empty) |
//! | `0x22` | Impair | client | `impairment` |
//! | `0x30` | Response | response | `client request outcome leader_addr:addr` |
//! | `0x31` | Status | response | `node protocol:u8 role:u8 ballot leader:option<node> executed:slot voting:u8 count (node rtt_us:varint)* emulation:option<impairment dropped_fault:varint> counters wire` |
//! | `0x32` | Impaired | response | `0x00` (applied) \| `0x01 why:bytes` (refused; UTF-8 text) |
//!
//! `protocol`: 0 MultiPaxos, 1 BasicPaxos, 2 Unreplicated. `role`: 0 Follower, 1 Candidate,
//! 2 Leader, 3 Proposer, 4 Single. Snapshot entries and sessions come in no particular order, so
//! two encodings of equal states may differ byte for byte.
//!
//! An Accept of 100 puts with 16-byte keys and 64-byte values is 9 727 bytes in the benchmark:
//! 97 bytes per command (80 of them payload; 11 of client session: a 6-byte creation time and a
//! 5-byte nonce; 3 of request id; op tag and lengths) plus 27 bytes of prefix, header and the
//! batch's 9-byte stamp.
#![warn(missing_docs)]

mod client;
mod coding;
mod command;
mod error;
mod frame;
mod peer;
pub mod record;

pub use client::{
    ClientFrame, ClientResponse, EmulationStatus, Impairment, LinkImpairment, NodeCounters,
    NodeStatus, ResponseFrame, Traffic, WireCounters,
};
pub use error::WireError;
pub use frame::{
    decode_frame, encode_frame, Codec, Frame, DEFAULT_MAX_FRAME_LEN, FRAME_HEADER_LEN,
};
pub use peer::{PeerFrame, PeerHello};

/// ALPN protocol id of node-to-node connections, version included.
pub const PEER_ALPN: &[u8] = b"paxbench-peer/3";

/// ALPN protocol id of client-to-node connections, version included.
pub const CLIENT_ALPN: &[u8] = b"paxbench-client/5";
