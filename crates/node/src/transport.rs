//! The transport seam: what the runtime and the client need from "a framed, ordered byte stream
//! to an authenticated peer", whatever carries it.
//!
//! A [`NodeEndpoint`] listens and dials for a node, a [`ClientEndpoint`] dials for a client.
//! Both hand out connections (`Conn`) whose remote is already authenticated (mutual TLS under the
//! cluster CA, see `crate::tls`), and on which the runtime opens or accepts ordered byte streams
//! (`SendStream`, `RecvStream`). Framing stays in `wire`; what a stream carries and who may
//! send what is the runtime's business. Only what differs between carriers lives here.
//!
//! Which carrier a cluster uses is its [`Transport`] (`[transport] transport` in the cluster
//! file):
//!
//! - QUIC (quinn): one connection per peer pair with one unidirectional stream each way; a
//!   client connection carries bidirectional streams. RTT is quinn's estimate, kept current by
//!   tiny datagrams (`probe_rtt`). Emulated links and link faults (`crate::emulation`) wrap its
//!   UDP socket.
//! - TCP ([`tcp`]): TLS 1.3 over TCP with the same certificates, verifiers and ALPN strings;
//!   one connection per peer pair carrying both directions, one per client request stream.
//!   RTT is the kernel's (`TCP_INFO`). No emulated links: they are a UDP-socket feature.
//!
//! Each connection reports what it carried (`Conn::traffic`, a [`wire::Traffic`]): on QUIC
//! quinn's UDP datagram and byte counts, on TCP the kernel's payload byte counts (TLS records)
//! and the writes made, with no datagrams.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use paxos::NodeId;
use serde::{Deserialize, Serialize};

use crate::tls::{self, Remote, TlsError};

pub mod tcp;

pub use tcp::{tcp_client_endpoint, tcp_endpoint, TcpDialer, TcpEndpoint};

/// What carries a cluster's traffic, peers and clients alike (`quic` or `tcp` in files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// QUIC through quinn, on UDP (the default).
    #[default]
    Quic,
    /// TLS 1.3 over TCP (tokio-rustls), `TCP_NODELAY`.
    Tcp,
}

impl Transport {
    /// The name in files.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = paxos::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Transport::Quic, Transport::Tcp]
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| paxos::UnknownName {
                what: "transport",
                given: s.to_string(),
                choices: "quic or tcp",
            })
    }
}

/// What a node listens on and dials from.
#[derive(Clone, Debug)]
pub enum NodeEndpoint {
    /// A quinn endpoint serving peers and clients on one UDP socket ([`crate::endpoint`]).
    Quic(quinn::Endpoint),
    /// A TCP listener with TLS ([`tcp_endpoint`]).
    Tcp(TcpEndpoint),
}

impl From<TcpEndpoint> for NodeEndpoint {
    fn from(endpoint: TcpEndpoint) -> Self {
        NodeEndpoint::Tcp(endpoint)
    }
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
            NodeEndpoint::Tcp(e) => Ok(e.local_addr()),
        }
    }

    /// What the node's peer links dial with. It does not keep the listener open.
    pub(crate) fn dialer(&self) -> Dialer {
        match self {
            NodeEndpoint::Quic(e) => Dialer::Quic(e.clone()),
            NodeEndpoint::Tcp(e) => Dialer::Tcp(e.dialer()),
        }
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    pub(crate) async fn accept(&self) -> Option<Incoming> {
        match self {
            NodeEndpoint::Quic(e) => e.accept().await.map(|i| Incoming::Quic(Box::new(i))),
            NodeEndpoint::Tcp(e) => e.accept().await.map(Incoming::Tcp),
        }
    }

    /// Closes every connection with `code` and stops accepting.
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        match self {
            NodeEndpoint::Quic(e) => e.close(quinn::VarInt::from_u32(code), reason),
            NodeEndpoint::Tcp(e) => e.close(&closed_locally(code, reason)),
        }
    }

    /// Waits until the endpoint's connections are gone and its socket can be released. TCP
    /// has nothing to wait for: its connections were shut down by [`NodeEndpoint::close`], and
    /// its listener closes with the last handle.
    pub(crate) async fn wait_idle(&self) {
        match self {
            NodeEndpoint::Quic(e) => e.wait_idle().await,
            NodeEndpoint::Tcp(_) => {}
        }
    }
}

/// Dials other nodes on the peer ALPN, with the node's own certificate.
#[derive(Clone)]
pub(crate) enum Dialer {
    Quic(quinn::Endpoint),
    Tcp(TcpDialer),
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
            Dialer::Tcp(d) => d.connect_node(addr, node).await.map(Conn::Tcp),
        }
    }
}

/// A connection attempt on a node's endpoint, not yet authenticated.
pub(crate) enum Incoming {
    /// Boxed: quinn's is large, and the acceptor moves one into a task per attempt.
    Quic(Box<quinn::Incoming>),
    Tcp(tcp::TcpIncoming),
}

impl Incoming {
    pub(crate) fn remote_address(&self) -> SocketAddr {
        match self {
            Incoming::Quic(i) => i.remote_address(),
            Incoming::Tcp(i) => i.remote_address(),
        }
    }

    /// Completes the handshake and decides what the remote may be (see
    /// [`tls::accept_incoming`]); a refused connection is closed with the reason.
    pub(crate) async fn handshake(self) -> Result<(Conn, Remote), TlsError> {
        match self {
            Incoming::Quic(i) => tls::accept_incoming(*i)
                .await
                .map(|(c, remote)| (Conn::Quic(c), remote)),
            Incoming::Tcp(i) => i
                .handshake()
                .await
                .map(|(c, remote)| (Conn::Tcp(c), remote)),
        }
    }
}

/// An authenticated connection to a peer or a client.
#[derive(Clone, Debug)]
pub(crate) enum Conn {
    Quic(quinn::Connection),
    Tcp(Arc<tcp::TcpConn>),
}

impl Conn {
    /// Unique among this process's live connections.
    pub(crate) fn id(&self) -> usize {
        match self {
            Conn::Quic(c) => c.stable_id(),
            Conn::Tcp(c) => c.id(),
        }
    }

    pub(crate) fn remote_address(&self) -> SocketAddr {
        match self {
            Conn::Quic(c) => c.remote_address(),
            Conn::Tcp(c) => c.remote_address(),
        }
    }

    /// Why it closed, if it has.
    pub(crate) fn close_reason(&self) -> Option<String> {
        match self {
            Conn::Quic(c) => c.close_reason().map(|r| r.to_string()),
            Conn::Tcp(c) => c.close_reason(),
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
            Conn::Tcp(c) => c.closed().await,
        }
    }

    /// Closes it, telling the remote `code` and `reason` where the carrier can (QUIC does;
    /// TCP only ends the stream, and keeps them as its local close reason).
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        match self {
            Conn::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason),
            Conn::Tcp(c) => c.close(closed_locally(code, reason)),
        }
    }

    /// The measured round trip, if the carrier measures one.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self {
            Conn::Quic(c) => Some(c.rtt()),
            Conn::Tcp(c) => c.rtt(),
        }
    }

    /// What it carried so far, cumulative since it opened (final once it closed; see
    /// [`wire::Traffic`] for what each carrier counts): quinn's connection statistics
    /// (`udp_tx` / `udp_rx`), or the kernel's TCP counts.
    pub(crate) fn traffic(&self) -> wire::Traffic {
        match self {
            Conn::Quic(c) => {
                let s = c.stats();
                wire::Traffic {
                    bytes_sent: s.udp_tx.bytes,
                    bytes_received: s.udp_rx.bytes,
                    writes: s.udp_tx.ios,
                    datagrams_sent: Some(s.udp_tx.datagrams),
                    datagrams_received: Some(s.udp_rx.datagrams),
                }
            }
            Conn::Tcp(c) => c.traffic(),
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
            Conn::Tcp(c) => c.take_send().map(SendStream::Tcp),
        }
    }

    /// The next stream a peer opened; `None` once the connection is closed.
    pub(crate) async fn accept_recv(&self) -> Option<RecvStream> {
        match self {
            Conn::Quic(c) => c.accept_uni().await.ok().map(RecvStream::Quic),
            Conn::Tcp(c) => c.take_recv().await.map(RecvStream::Tcp),
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
            Conn::Tcp(c) => c
                .take_both()
                .await
                .map(|(s, r)| (SendStream::Tcp(s), RecvStream::Tcp(r)))
                .ok_or_else(|| io::Error::other("the connection's stream is in use")),
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
            Conn::Tcp(c) => c
                .take_both()
                .await
                .map(|(s, r)| (SendStream::Tcp(s), RecvStream::Tcp(r))),
        }
    }

    /// Keeps [`Conn::rtt`] current while the connection lives, where the carrier needs help
    /// for that; returns at once otherwise (TCP: the kernel samples the RTT as data segments
    /// are acknowledged). Run it in a task of its own, once per connection.
    pub(crate) async fn probe_rtt(self) {
        match self {
            Conn::Quic(c) => probe_rtt(c).await,
            Conn::Tcp(_) => {}
        }
    }

    /// Reads and drops what [`Conn::probe_rtt`] of the other side sends, until the connection
    /// closes.
    pub(crate) async fn discard_probes(self) {
        match self {
            Conn::Quic(c) => while c.read_datagram().await.is_ok() {},
            Conn::Tcp(_) => {}
        }
    }
}

/// One side's ordered byte stream.
pub(crate) enum SendStream {
    Quic(quinn::SendStream),
    Tcp(tcp::TcpSend),
}

impl SendStream {
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s.write_all(bytes).await.map_err(io::Error::from),
            SendStream::Tcp(s) => s.write_all(bytes).await,
        }
    }

    /// Writes one buffer, handing it to the carrier without a copy where it can.
    pub(crate) async fn write_chunk(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s.write_chunk(bytes).await.map_err(io::Error::from),
            SendStream::Tcp(s) => s.write_all(&bytes).await,
        }
    }

    /// Resolves once the remote stops reading (or the connection is gone).
    pub(crate) async fn stopped(&mut self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.stopped().await;
            }
            SendStream::Tcp(s) => s.stopped().await,
        }
    }
}

/// The other side's ordered byte stream.
pub(crate) enum RecvStream {
    Quic(quinn::RecvStream),
    Tcp(tcp::TcpRecv),
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
            RecvStream::Tcp(r) => r.read_into(buf).await,
        }
    }
}

/// What a client dials nodes with: a client certificate of the cluster on the client ALPN.
#[derive(Clone, Debug)]
pub enum ClientEndpoint {
    /// A quinn client endpoint ([`crate::client_endpoint_on`]).
    Quic(quinn::Endpoint),
    /// TLS over TCP ([`tcp_client_endpoint`]).
    Tcp(TcpDialer),
}

impl From<TcpDialer> for ClientEndpoint {
    fn from(dialer: TcpDialer) -> Self {
        ClientEndpoint::Tcp(dialer)
    }
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
            ClientEndpoint::Tcp(d) => d.close(&closed_locally(code, reason)),
        }
    }

    /// Waits until the connections it dialed are gone.
    pub async fn wait_idle(&self) {
        match self {
            ClientEndpoint::Quic(e) => e.wait_idle().await,
            ClientEndpoint::Tcp(_) => {}
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
            ClientEndpoint::Tcp(d) => d.connect_node(addr, node).await.map(Conn::Tcp),
        }
    }
}

/// A TCP connection's close reason when this side closed it.
fn closed_locally(code: u32, reason: &[u8]) -> String {
    format!(
        "closed locally (code {code}): {}",
        String::from_utf8_lossy(reason)
    )
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
