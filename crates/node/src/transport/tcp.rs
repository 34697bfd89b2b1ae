//! TCP with TLS 1.3 (tokio-rustls) behind the transport seam.
//!
//! The TLS configurations are the QUIC ones (`crate::tls`): the same certificates, the same
//! verifiers, the same ALPN strings, so a node proves and checks identities alike on both
//! transports. One TCP connection carries both directions of a peer pair, or one client's request
//! stream: its TLS stream is split into a read half and a write half, each taken once.
//!
//! What QUIC does for itself is done here with socket options: `TCP_NODELAY` (a frame leaves
//! when it is written; the runtime already coalesces a turn's frames into one write),
//! `TCP_USER_TIMEOUT` and keep-alives in place of QUIC's idle timeout, so a peer host that
//! vanished is noticed. RTT comes from the kernel (`TCP_INFO`, Linux only).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use paxos::NodeId;
use rustls_pki_types::ServerName;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::tls::{self, Alpn, ClientCerts, Identity, NodeCerts, Remote, TlsError, TransportTuning};

type Tls = TlsStream<TcpStream>;

/// Socket settings of every TCP connection, from the [`TransportTuning`] QUIC uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpSettings {
    /// Data unacknowledged (or keep-alives unanswered) this long ends the connection:
    /// `TCP_USER_TIMEOUT` = the tuning's idle timeout, as QUIC ends a silent connection.
    dead_after: Duration,
    /// An idle connection sends keep-alive probes after this long and this often: the
    /// tuning's keep-alive interval, rounded up to whole seconds (the kernel's unit), at least 1 s.
    keep_alive: Duration,
    /// How long a connect plus its TLS handshake may take (the idle timeout: a QUIC handshake
    /// gives up after as long).
    handshake_timeout: Duration,
}

impl TcpSettings {
    pub(crate) fn new(tuning: &TransportTuning) -> Result<Self, TlsError> {
        tuning.validate()?;
        let secs = tuning.keep_alive_interval.as_secs()
            + u64::from(tuning.keep_alive_interval.subsec_nanos() > 0);
        Ok(TcpSettings {
            dead_after: tuning.idle_timeout,
            keep_alive: Duration::from_secs(secs.max(1)),
            handshake_timeout: tuning.idle_timeout,
        })
    }

    fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let socket = SockRef::from(stream);
        let keep_alive = TcpKeepalive::new()
            .with_time(self.keep_alive)
            .with_interval(self.keep_alive)
            .with_retries(3);
        socket.set_tcp_keepalive(&keep_alive)?;
        socket.set_tcp_user_timeout(Some(self.dead_after))?;
        Ok(())
    }
}

/// The connections an endpoint made or accepted, so that closing the endpoint closes them.
#[derive(Debug, Default)]
struct Registry(Mutex<Vec<Weak<TcpConn>>>);

impl Registry {
    fn add(&self, conn: &Arc<TcpConn>) {
        let mut conns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(conn));
    }

    fn close_all(&self, why: &str) {
        let conns = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for conn in conns.iter().filter_map(Weak::upgrade) {
            conn.close(why.to_string());
        }
    }
}

/// A node's TCP listener and its TLS (both ALPNs served, the peer ALPN dialed).
#[derive(Clone)]
pub struct TcpEndpoint {
    listener: Arc<TcpListener>,
    local: SocketAddr,
    acceptor: TlsAcceptor,
    dialer: TcpDialer,
    /// Turns true when the endpoint is closed: accepting stops.
    closing: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for TcpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpEndpoint")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TcpDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpDialer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A node endpoint on TCP `bind` (the node's `addr`): serves peers and clients with mutual TLS
/// under the cluster CA, as [`crate::endpoint`] does on QUIC, and dials other nodes on the peer
/// ALPN with the node's certificate. Must be called inside a tokio runtime.
pub fn tcp_endpoint(
    bind: SocketAddr,
    certs: &NodeCerts,
    tuning: &TransportTuning,
) -> Result<TcpEndpoint, TlsError> {
    let settings = TcpSettings::new(tuning)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_tls(certs)?));
    let connector = TlsConnector::from(Arc::new(tls::client_tls(&certs.as_client(), Alpn::Peer)?));
    let listener = listen(bind).map_err(|source| TlsError::Listen { addr: bind, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TlsError::Listen { addr: bind, source })?;
    tracing::debug!(node = certs.id().0, %local, "node TCP endpoint ready");
    Ok(TcpEndpoint {
        listener: Arc::new(listener),
        local,
        acceptor,
        dialer: TcpDialer {
            connector,
            settings,
            registry: Arc::default(),
        },
        closing: Arc::new(watch::channel(false).0),
    })
}

/// A client endpoint dialing nodes over TCP on the client ALPN with `certs`, as
/// [`crate::client_endpoint_on`] does on QUIC. Binds nothing: each connection gets an
/// ephemeral port from the kernel.
pub fn tcp_client_endpoint(
    certs: &ClientCerts,
    tuning: &TransportTuning,
) -> Result<TcpDialer, TlsError> {
    Ok(TcpDialer {
        connector: TlsConnector::from(Arc::new(tls::client_tls(certs, Alpn::Client)?)),
        settings: TcpSettings::new(tuning)?,
        registry: Arc::default(),
    })
}

/// Binds a listening socket that a restarted node can bind again at once (`SO_REUSEADDR`;
/// connections of its predecessor may linger in TIME_WAIT). An unspecified IPv6 address is made
/// dual-stack, as the QUIC socket is.
fn listen(bind: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
    if bind.is_ipv6() && bind.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&bind.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

impl TcpEndpoint {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What it dials other nodes with (peer ALPN, the node's certificate).
    pub fn dialer(&self) -> TcpDialer {
        self.dialer.clone()
    }

    /// The next connection attempt; `None` once the endpoint is closed. A failed `accept`
    /// (out of descriptors, say) is logged and retried after a short pause, as quinn's own
    /// endpoint carries on after a bad datagram.
    pub(crate) async fn accept(&self) -> Option<TcpIncoming> {
        let mut closing = self.closing.subscribe();
        loop {
            if *closing.borrow_and_update() {
                return None;
            }
            tokio::select! {
                _ = closing.changed() => return None,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        return Some(TcpIncoming {
                            stream,
                            addr,
                            acceptor: self.acceptor.clone(),
                            settings: self.dialer.settings,
                            registry: self.dialer.registry.clone(),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    }

    /// Stops accepting and closes every connection made or accepted through it. The listening
    /// socket itself closes when the last handle to the endpoint is dropped.
    pub(crate) fn close(&self, why: &str) {
        self.closing.send_replace(true);
        self.dialer.registry.close_all(why);
    }
}

/// Dials nodes over TCP with TLS: a node's peer links (peer ALPN) or a client (client ALPN).
#[derive(Clone)]
pub struct TcpDialer {
    connector: TlsConnector,
    settings: TcpSettings,
    registry: Arc<Registry>,
}

impl TcpDialer {
    /// Connects to node `node` at `addr` and returns the bare TLS stream: TCP, the socket
    /// options (`TCP_NODELAY`, keep-alives, `TCP_USER_TIMEOUT`), then the TLS handshake, in
    /// which the server must prove it is that node (the QUIC verifier's rule). Bounded by the
    /// handshake timeout: a SYN to a host that is gone would otherwise be retried for minutes.
    ///
    /// As on QUIC, this side's handshake completes before the server has checked this side's
    /// certificate: a refusal arrives as an error on the first read.
    pub async fn dial(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        let name = Identity::Node(node).dns_name();
        let server =
            ServerName::try_from(name.clone()).map_err(|_| TlsError::NotANodeName { name })?;
        let dial = async {
            let connect = |source| TlsError::TcpConnect { addr, source };
            let stream = TcpStream::connect(addr).await.map_err(connect)?;
            self.settings.apply(&stream).map_err(connect)?;
            self.connector
                .connect(server, stream)
                .await
                .map_err(|source| TlsError::TcpHandshake { addr, source })
        };
        let timeout = self.settings.handshake_timeout;
        tokio::time::timeout(timeout, dial)
            .await
            .map_err(|_| TlsError::TcpHandshake {
                addr,
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no handshake within {timeout:?}"),
                ),
            })?
    }

    /// [`TcpDialer::dial`], as a connection of the transport seam.
    pub(crate) async fn connect_node(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<Arc<TcpConn>, TlsError> {
        let tls = self.dial(addr, node).await?;
        let conn = TcpConn::new(TlsStream::Client(tls), addr)
            .map_err(|source| TlsError::TcpConnect { addr, source })?;
        self.registry.add(&conn);
        Ok(conn)
    }

    /// Closes every connection dialed through it.
    pub(crate) fn close(&self, why: &str) {
        self.registry.close_all(why);
    }
}

/// An accepted TCP connection, before its TLS handshake.
pub(crate) struct TcpIncoming {
    stream: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    settings: TcpSettings,
    registry: Arc<Registry>,
}

impl TcpIncoming {
    pub(crate) fn remote_address(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS handshake (bounded: a remote that connects and says nothing is dropped), then
    /// the identity rules of [`tls::remote_of`]. A refused connection is logged and closed.
    pub(crate) async fn handshake(self) -> Result<(Arc<TcpConn>, Remote), TlsError> {
        let addr = self.addr;
        let failed = |source| TlsError::TcpHandshake { addr, source };
        self.settings.apply(&self.stream).map_err(failed)?;
        let timeout = self.settings.handshake_timeout;
        let tls = tokio::time::timeout(timeout, self.acceptor.accept(self.stream))
            .await
            .map_err(|_| {
                failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no handshake within {timeout:?}"),
                ))
            })?
            .map_err(failed)?;
        let (_, state) = tls.get_ref();
        let protocol = state.alpn_protocol().map(<[u8]>::to_vec);
        let identity = match state.peer_certificates().and_then(<[_]>::first) {
            Some(leaf) => tls::identity_of(leaf, &format!("presented by {addr}")),
            None => Err(TlsError::NoPeerCertificate),
        };
        let conn = TcpConn::new(TlsStream::Server(tls), addr).map_err(failed)?;
        self.registry.add(&conn);
        match identity.and_then(|identity| tls::remote_of(protocol, identity)) {
            Ok(remote) => {
                tracing::debug!(%addr, ?remote, "TCP connection authorized");
                Ok((conn, remote))
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "connection refused");
                conn.close(format!("refused: {e}"));
                Err(e)
            }
        }
    }
}

/// Numbers TCP connections, for [`crate::transport::Conn::id`].
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// One authenticated TCP connection.
pub(crate) struct TcpConn {
    id: usize,
    remote: SocketAddr,
    /// A second descriptor of the connection's socket: any task can shut the connection down
    /// through it (which wakes a reader blocked on the other half) and read `TCP_INFO`.
    socket: std::net::TcpStream,
    read: Mutex<Option<ReadHalf<Tls>>>,
    write: Mutex<Option<WriteHalf<Tls>>>,
    /// `Some(why)` once the connection is closed, by this side or the other.
    closed: watch::Sender<Option<String>>,
    /// Stream writes made on it ([`TcpSend::write_all`] calls), for [`TcpConn::traffic`].
    writes: AtomicU64,
}

impl std::fmt::Debug for TcpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConn")
            .field("id", &self.id)
            .field("remote", &self.remote)
            .field("closed", &*self.closed.borrow())
            .finish_non_exhaustive()
    }
}

impl TcpConn {
    fn new(stream: Tls, remote: SocketAddr) -> io::Result<Arc<TcpConn>> {
        let socket = SockRef::from(stream.get_ref().0).try_clone()?.into();
        let (read, write) = tokio::io::split(stream);
        Ok(Arc::new(TcpConn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            remote,
            socket,
            read: Mutex::new(Some(read)),
            write: Mutex::new(Some(write)),
            closed: watch::channel(None).0,
            writes: AtomicU64::new(0),
        }))
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn remote_address(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    /// Marks it closed with `why` (the first reason wins) and shuts the socket down both ways:
    /// the remote reads the end of the stream, and this side's reader and writer stop.
    pub(crate) fn close(&self, why: String) {
        self.closed.send_if_modified(|closed| {
            let first = closed.is_none();
            if first {
                *closed = Some(why);
            }
            first
        });
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    pub(crate) async fn closed(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(Option::is_some).await;
    }

    /// The kernel's `TCP_INFO` for this socket and how many bytes of it the kernel filled in
    /// (an older kernel fills in less of the structure).
    #[cfg(target_os = "linux")]
    fn tcp_info(&self) -> Option<(libc::tcp_info, usize)> {
        use std::os::fd::AsRawFd;
        // SAFETY: `tcp_info` is plain integers, for which all zeroes is a valid value; the
        // kernel writes at most `len` bytes into it and reports how many it wrote.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a live socket descriptor owned by `self.socket`, and a buffer of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (r == 0).then_some((info, len as usize))
    }

    /// The kernel's smoothed RTT of this connection (`TCP_INFO`'s `tcpi_rtt`), updated as data
    /// is acknowledged; `None` before the kernel has a sample, or where it cannot be read.
    #[cfg(target_os = "linux")]
    pub(crate) fn rtt(&self) -> Option<Duration> {
        let (info, _) = self.tcp_info()?;
        // `tcpi_rtt` sits well inside the part every kernel since 2.6 fills in.
        (info.tcpi_rtt > 0).then(|| Duration::from_micros(info.tcpi_rtt.into()))
    }

    /// Not measured off Linux.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn rtt(&self) -> Option<Duration> {
        None
    }

    /// What the connection carried so far: the TCP payload bytes (TLS records, so TLS framing
    /// and the handshake are included) that the remote acknowledged and that arrived, from the
    /// kernel's `TCP_INFO` (`tcpi_bytes_acked`, `tcpi_bytes_received`: Linux 4.1 and later; 0
    /// where the kernel does not fill them), and the writes made. A byte stream has no
    /// datagrams: they are `None`. Readable after the connection closed (the descriptor kept
    /// here stays open), so its final counts can be folded into a node's totals.
    pub(crate) fn traffic(&self) -> wire::Traffic {
        let (bytes_sent, bytes_received) = self.bytes().unwrap_or((0, 0));
        wire::Traffic {
            bytes_sent,
            bytes_received,
            writes: self.writes.load(Ordering::Relaxed),
            datagrams_sent: None,
            datagrams_received: None,
        }
    }

    /// `(tcpi_bytes_acked, tcpi_bytes_received)`, if the kernel reports them.
    #[cfg(target_os = "linux")]
    fn bytes(&self) -> Option<(u64, u64)> {
        let (info, len) = self.tcp_info()?;
        // Only trust what the kernel wrote.
        let end =
            std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + std::mem::size_of::<u64>();
        (len >= end).then_some((info.tcpi_bytes_acked, info.tcpi_bytes_received))
    }

    /// Not measured off Linux.
    #[cfg(not(target_os = "linux"))]
    fn bytes(&self) -> Option<(u64, u64)> {
        None
    }

    /// The write half, once.
    pub(crate) fn take_send(self: &Arc<Self>) -> io::Result<TcpSend> {
        let half = self.write.lock().unwrap_or_else(|e| e.into_inner()).take();
        let half = half.ok_or_else(|| io::Error::other("the connection's stream is in use"))?;
        Ok(TcpSend {
            half,
            conn: self.clone(),
        })
    }

    /// The read half, once; later calls wait until the connection is closed and return `None`.
    pub(crate) async fn take_recv(self: &Arc<Self>) -> Option<TcpRecv> {
        let half = self.read.lock().unwrap_or_else(|e| e.into_inner()).take();
        match half {
            Some(half) => Some(TcpRecv {
                half,
                conn: self.clone(),
            }),
            None => {
                self.closed().await;
                None
            }
        }
    }

    /// Both halves, once; later calls wait until the connection is closed and return `None`.
    pub(crate) async fn take_both(self: &Arc<Self>) -> Option<(TcpSend, TcpRecv)> {
        match self.take_send() {
            Ok(send) => Some((send, self.take_recv().await?)),
            Err(_) => {
                self.closed().await;
                None
            }
        }
    }
}

/// The write half of a TCP connection.
pub(crate) struct TcpSend {
    half: WriteHalf<Tls>,
    conn: Arc<TcpConn>,
}

impl TcpSend {
    /// Writes and flushes `bytes` (into as few TLS records as they fit); an error closes the
    /// connection.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.writes.fetch_add(1, Ordering::Relaxed);
        let written = async {
            self.half.write_all(bytes).await?;
            self.half.flush().await
        };
        written.await.inspect_err(|e| {
            self.conn.close(format!("write failed: {e}"));
        })
    }

    pub(crate) async fn stopped(&mut self) {
        self.conn.closed().await;
    }
}

/// The read half of a TCP connection.
pub(crate) struct TcpRecv {
    half: ReadHalf<Tls>,
    conn: Arc<TcpConn>,
}

impl TcpRecv {
    /// Appends what arrived to `buf`; `false` at the end of the stream. The end, or an error,
    /// closes the connection: one stream is all a TCP connection carries. Cancel-safe
    /// (`read_buf` keeps nothing of its own across polls).
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        match self.half.read_buf(buf).await {
            Ok(0) => {
                self.conn.close("closed by the remote".into());
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) => {
                self.conn.close(format!("read failed: {e}"));
                Err(e)
            }
        }
    }
}
