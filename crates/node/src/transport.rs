//! The transport seam: what the runtime and the client need from "a framed, ordered byte stream
//! to an authenticated peer", whatever carries it.
//!
//! A [`NodeEndpoint`] listens and dials for a node, a [`ClientEndpoint`] dials for a client.
//! Both hand out connections (`Conn`) whose remote is already authenticated (mutual TLS under the
//! cluster CA, see `crate::tls`), and on which the runtime opens or accepts ordered byte streams
//! (`SendStream`, `RecvStream`). Framing stays in `wire`; what a stream carries and who may
//! send what is the runtime's business. Only what differs between carriers lives here.
//!
//! QUIC (quinn): one connection per peer pair with one unidirectional stream each way; a client
//! connection carries bidirectional streams. RTT is quinn's estimate, kept current by tiny
//! datagrams (`probe_rtt`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use paxos::NodeId;

use crate::tls::{self, Remote, TlsError};

/// What a node listens on and dials from.
#[derive(Clone, Debug)]
pub enum NodeEndpoint {
    /// A quinn endpoint serving peers and clients on one UDP socket ([`crate::endpoint`]).
    Quic(quinn::Endpoint),
}

impl From<quinn::Endpoint> for NodeEndpoint {
    fn from(endpoint: quinn::Endpoint) -> Self {
        NodeEndpoint::Quic(endpoint)
    }
}

impl NodeEndpoint {
    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            NodeEndpoint::Quic(e) => e.local_addr(),
        }
    }

    /// What the node's peer links dial with. It does not keep the listener open.
    pub(crate) fn dialer(&self) -> Dialer {
        match self {
            NodeEndpoint::Quic(e) => Dialer::Quic(e.clone()),
        }
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    pub(crate) async fn accept(&self) -> Option<Incoming> {
        match self {
            NodeEndpoint::Quic(e) => e.accept().await.map(Incoming::Quic),
        }
    }

    /// Closes every connection with `code` and stops accepting.
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        match self {
            NodeEndpoint::Quic(e) => e.close(quinn::VarInt::from_u32(code), reason),
        }
    }

    /// Waits until the endpoint's connections are gone and its socket can be released.
    pub(crate) async fn wait_idle(&self) {
        match self {
            NodeEndpoint::Quic(e) => e.wait_idle().await,
        }
    }
}

/// Dials other nodes on the peer ALPN, with the node's own certificate.
#[derive(Clone)]
pub(crate) enum Dialer {
    Quic(quinn::Endpoint),
}

impl Dialer {
    /// Connects to node `node` at `addr`; the handshake proves the server is that node.
    pub(crate) async fn connect_node(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<Conn, TlsError> {
        match self {
            Dialer::Quic(e) => tls::connect_node(e, addr, node).await.map(Conn::Quic),
        }
    }
}

/// A connection attempt on a node's endpoint, not yet authenticated.
pub(crate) enum Incoming {
    Quic(quinn::Incoming),
}

impl Incoming {
    pub(crate) fn remote_address(&self) -> SocketAddr {
        match self {
            Incoming::Quic(i) => i.remote_address(),
        }
    }

    /// Completes the handshake and decides what the remote may be (see
    /// [`tls::accept_incoming`]); a refused connection is closed with the reason.
    pub(crate) async fn handshake(self) -> Result<(Conn, Remote), TlsError> {
        match self {
            Incoming::Quic(i) => tls::accept_incoming(i)
                .await
                .map(|(c, remote)| (Conn::Quic(c), remote)),
        }
    }
}

/// An authenticated connection to a peer or a client.
#[derive(Clone, Debug)]
pub(crate) enum Conn {
    Quic(quinn::Connection),
}

impl Conn {
    /// Unique among this process's live connections.
    pub(crate) fn id(&self) -> usize {
        match self {
            Conn::Quic(c) => c.stable_id(),
        }
    }

    pub(crate) fn remote_address(&self) -> SocketAddr {
        match self {
            Conn::Quic(c) => c.remote_address(),
        }
    }

    /// Why it closed, if it has.
    pub(crate) fn close_reason(&self) -> Option<String> {
        match self {
            Conn::Quic(c) => c.close_reason().map(|r| r.to_string()),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Resolves once the connection is closed, by either side.
    pub(crate) async fn closed(&self) {
        match self {
            Conn::Quic(c) => {
                c.closed().await;
            }
        }
    }

    /// Closes it, telling the remote `code` and `reason` where the carrier can.
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        match self {
            Conn::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason),
        }
    }

    /// The measured round trip, if the carrier measures one.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self {
            Conn::Quic(c) => Some(c.rtt()),
        }
    }

    /// Opens this side's stream to a peer (the runtime sends one per connection).
    pub(crate) async fn open_send(&self) -> io::Result<SendStream> {
        match self {
            Conn::Quic(c) => c
                .open_uni()
                .await
                .map(SendStream::Quic)
                .map_err(io::Error::other),
        }
    }

    /// The next stream a peer opened; `None` once the connection is closed.
    pub(crate) async fn accept_recv(&self) -> Option<RecvStream> {
        match self {
            Conn::Quic(c) => c.accept_uni().await.ok().map(RecvStream::Quic),
        }
    }

    /// Opens a request stream to a node (the client side).
    pub(crate) async fn open_bi(&self) -> io::Result<(SendStream, RecvStream)> {
        match self {
            Conn::Quic(c) => c
                .open_bi()
                .await
                .map(|(s, r)| (SendStream::Quic(s), RecvStream::Quic(r)))
                .map_err(io::Error::other),
        }
    }

    /// The next request stream a client opened; `None` once the connection is closed.
    pub(crate) async fn accept_bi(&self) -> Option<(SendStream, RecvStream)> {
        match self {
            Conn::Quic(c) => c
                .accept_bi()
                .await
                .ok()
                .map(|(s, r)| (SendStream::Quic(s), RecvStream::Quic(r))),
        }
    }

    /// Keeps [`Conn::rtt`] current while the connection lives, where the carrier needs help
    /// for that; returns at once otherwise. Run it in a task of its own, on one side's
    /// connection handle, once per connection.
    pub(crate) async fn probe_rtt(self) {
        match self {
            Conn::Quic(c) => probe_rtt(c).await,
        }
    }

    /// Reads and drops what [`Conn::probe_rtt`] of the other side sends, until the connection
    /// closes.
    pub(crate) async fn discard_probes(self) {
        match self {
            Conn::Quic(c) => while c.read_datagram().await.is_ok() {},
        }
    }
}

/// One side's ordered byte stream.
pub(crate) enum SendStream {
    Quic(quinn::SendStream),
}

impl SendStream {
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s.write_all(bytes).await.map_err(io::Error::from),
        }
    }

    /// Writes one buffer, handing it to the carrier without a copy where it can.
    pub(crate) async fn write_chunk(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s.write_chunk(bytes).await.map_err(io::Error::from),
        }
    }

    /// Resolves once the remote stops reading (or the connection is gone).
    pub(crate) async fn stopped(&mut self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.stopped().await;
            }
        }
    }
}

/// The other side's ordered byte stream.
pub(crate) enum RecvStream {
    Quic(quinn::RecvStream),
}

impl RecvStream {
    /// Appends what arrived to `buf`; `false` once the stream ended cleanly. Cancel-safe:
    /// nothing is lost if the future is dropped before it completes.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        match self {
            RecvStream::Quic(r) => match r.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => {
                    buf.extend_from_slice(&chunk.bytes);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(io::Error::from(e)),
            },
        }
    }
}

/// What a client dials nodes with: a client certificate of the cluster on the client ALPN.
#[derive(Clone, Debug)]
pub enum ClientEndpoint {
    /// A quinn client endpoint ([`crate::client_endpoint_on`]).
    Quic(quinn::Endpoint),
}

impl From<quinn::Endpoint> for ClientEndpoint {
    fn from(endpoint: quinn::Endpoint) -> Self {
        ClientEndpoint::Quic(endpoint)
    }
}

impl From<&quinn::Endpoint> for ClientEndpoint {
    fn from(endpoint: &quinn::Endpoint) -> Self {
        ClientEndpoint::Quic(endpoint.clone())
    }
}

/// A handle to the same endpoint (cheap: endpoints are shared inside).
impl From<&ClientEndpoint> for ClientEndpoint {
    fn from(endpoint: &ClientEndpoint) -> Self {
        endpoint.clone()
    }
}

impl ClientEndpoint {
    /// Closes every connection dialed through this endpoint with `code` and `reason`.
    pub fn close(&self, code: u32, reason: &[u8]) {
        match self {
            ClientEndpoint::Quic(e) => e.close(quinn::VarInt::from_u32(code), reason),
        }
    }

    /// Waits until the connections it dialed are gone.
    pub async fn wait_idle(&self) {
        match self {
            ClientEndpoint::Quic(e) => e.wait_idle().await,
        }
    }

    /// Connects to node `node` at `addr`; the handshake proves the server is that node.
    pub(crate) async fn connect_node(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<Conn, TlsError> {
        match self {
            ClientEndpoint::Quic(e) => tls::connect_node(e, addr, node).await.map(Conn::Quic),
        }
    }
}

/// How often each side of a peer connection sends an RTT probe.
pub const RTT_PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Sends two 1-byte QUIC datagrams on `conn` every [`RTT_PROBE_INTERVAL`] until it closes, so
/// that [`quinn::Connection::rtt`] stays current on both sides. quinn samples the RTT only when
/// the peer acknowledges an ack-eliciting packet this side sent, and a follower sends its leader
/// nothing else (acknowledgements are not ack-eliciting, and quinn's keep-alive stays quiet while
/// packets arrive): it would report the RTT of its handshake forever.
///
/// Two probes, a millisecond apart so that they leave in two packets, because QUIC acknowledges
/// every second ack-eliciting packet at once. A lone probe was acknowledged when the peer's
/// delayed-ACK timer (25 ms) fired, and the timer's lateness, which quinn cannot subtract (it
/// caps the delay the peer reports at 25 ms), landed in every sample: idle follower pairs on
/// loopback read 2–16 ms. The peer discards probes ([`Conn::discard_probes`]); a round costs
/// three or four small packets.
async fn probe_rtt(conn: quinn::Connection) {
    let mut tick = tokio::time::interval(RTT_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let probe = Bytes::from_static(b"p");
    loop {
        tick.tick().await;
        if conn.send_datagram(probe.clone()).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if conn.send_datagram(probe.clone()).is_err() {
            return;
        }
    }
}
