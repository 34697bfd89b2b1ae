//! QUIC transport tuning for many small messages, and building the endpoints.
//!
//! The defaults come from measurements of quinn 0.11.12 made before this project began (on
//! loopback, 2 cores, client and server pinned); each field says what was measured. They were
//! not all re-measured here: `cargo run --release -p node --example transport` re-measures the
//! ones that matter most.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use super::verify::{client_config_with, server_config};
use super::{Alpn, ClientCerts, NodeCerts, TlsError};
use crate::emulation::NodeEmulation;

/// How many ack-eliciting packets a node may take from a client before it must acknowledge
/// them, asked for by every client endpoint through QUIC's ACK-frequency extension (quinn's
/// default is every second packet). Every request gets a reply, and a reply carries the
/// acknowledgement of what came before it, so a node's ACK-only packets to a client are mostly
/// overhead: at 100k requests/s open loop against 3 nodes they were about a fifth of what the
/// generator received. Asking for 16 cut the generator's received datagrams by ~18% and its
/// CPU per request by ~7% (median of 5 alternating runs); a client whose replies stall still
/// gets an acknowledgement every 16 packets, or after the node's `max_ack_delay` (25 ms).
pub const CLIENT_ACK_ELICITING_THRESHOLD: u32 = 16;

/// Transport settings of a node's or client's QUIC endpoint.
///
/// Generic segmentation offload (GSO) and receive offload stay on, as quinn sets them: turning
/// GSO off cost 3–4×. Congestion control and the uni stream limit stay at quinn's defaults;
/// they barely mattered, and neither did ACK frequency between nodes. Clients ask
/// nodes for fewer acknowledgements ([`CLIENT_ACK_ELICITING_THRESHOLD`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportTuning {
    /// SO_RCVBUF and SO_SNDBUF asked for on the UDP socket. Default 4 MiB: with the kernel's
    /// 208 KiB default, loopback dropped packets and each loss was a congestion event; 4 MiB
    /// buffers plus MTU 4096 took a leader with 2 peers from 6.2 M to 11.7 M committed
    /// slots/s. The kernel may cap it (`net.core.rmem_max`,
    /// `wmem_max`; 4 MiB on the measuring machine); what was granted is logged.
    pub socket_buffer_bytes: usize,
    /// UDP payload sizes (quinn's "MTU"). Default [`Mtu::Auto`]: 4096 on a loopback-bound
    /// socket, where it doubled throughput, the normal 1200/1452 elsewhere.
    pub mtu: Mtu,
    /// Bytes a peer may send on one stream before it must wait for our flow-control credit.
    /// Default 256 KiB: larger windows made batched writes slower, and 256 KiB helped unbatched
    /// writes without hurting batched ones. The connection-wide receive window
    /// and the send window stay at quinn's defaults for the same reason.
    pub stream_receive_window_bytes: u32,
    /// Bidirectional streams a peer may have open at once. Default 1024: paxbench uses
    /// long-lived streams, but a client that opens a stream per request (60 µs p50 versus
    /// 58 µs on one stream) must never be capped below its pipelining depth.
    pub max_concurrent_bidi_streams: u32,
    /// A connection with no traffic for this long is dead. Default 3 s: long enough that a
    /// busy or briefly paused peer (a loaded VM, a `pause` fault of a second) is not dropped,
    /// short enough that a killed and restarted node is reachable again soon. A restarted
    /// process cannot reset its predecessor's connections (its stateless-reset key is new),
    /// so until the idle timeout ends them, whoever dialed the old process writes into the
    /// void; at 10 s a restarted follower stayed cut off past a whole measured window.
    pub idle_timeout: Duration,
    /// How often an otherwise idle connection sends a keep-alive. Default 500 ms, a sixth of
    /// the idle timeout, so several may be lost before an idle but live connection times out;
    /// the cost is two small packets per second per connection.
    pub keep_alive_interval: Duration,
}

impl Default for TransportTuning {
    fn default() -> Self {
        TransportTuning {
            socket_buffer_bytes: 4 << 20,
            mtu: Mtu::Auto,
            stream_receive_window_bytes: 256 << 10,
            max_concurrent_bidi_streams: 1024,
            idle_timeout: Duration::from_secs(3),
            keep_alive_interval: Duration::from_millis(500),
        }
    }
}

impl TransportTuning {
    /// Checks the settings against each other and quinn's limits.
    pub fn validate(&self) -> Result<(), TlsError> {
        // Auto / Loopback / Network are in range by construction; only Fixed needs a check.
        if let Mtu::Fixed { initial, max } = self.mtu {
            if !Mtu::in_range(initial, max) {
                return Err(TlsError::MtuOutOfRange { initial, max });
            }
        }
        if self.idle_timeout.is_zero()
            || self.keep_alive_interval >= self.idle_timeout
            || IdleTimeout::try_from(self.idle_timeout).is_err()
        {
            return Err(TlsError::Timeouts {
                idle_timeout: self.idle_timeout,
                keep_alive_interval: self.keep_alive_interval,
            });
        }
        Ok(())
    }

    /// quinn's transport configuration for the given (initial, max) UDP payload sizes.
    pub(crate) fn transport_config(
        &self,
        (initial, max): (u16, u16),
    ) -> Result<quinn::TransportConfig, TlsError> {
        self.validate()?;
        let mut t = quinn::TransportConfig::default();
        // min_mtu = initial: the path is known to carry the initial size, so quinn never
        // falls back below it after a loss burst.
        t.initial_mtu(initial).min_mtu(initial);
        t.mtu_discovery_config((max > initial).then(|| {
            let mut discovery = MtuDiscoveryConfig::default();
            discovery.upper_bound(max);
            discovery
        }));
        t.stream_receive_window(VarInt::from_u32(self.stream_receive_window_bytes));
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams));
        let idle = IdleTimeout::try_from(self.idle_timeout).map_err(|_| TlsError::Timeouts {
            idle_timeout: self.idle_timeout,
            keep_alive_interval: self.keep_alive_interval,
        })?;
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval(Some(self.keep_alive_interval));
        Ok(t)
    }

    /// [`TransportTuning::transport_config`] for a client's connections to nodes: it also asks
    /// the node to acknowledge only every [`CLIENT_ACK_ELICITING_THRESHOLD`] packets.
    pub(crate) fn client_transport_config(
        &self,
        mtu: (u16, u16),
    ) -> Result<quinn::TransportConfig, TlsError> {
        let mut t = self.transport_config(mtu)?;
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(VarInt::from_u32(CLIENT_ACK_ELICITING_THRESHOLD));
        t.ack_frequency_config(Some(ack));
        Ok(t)
    }

    /// quinn's endpoint configuration: the largest UDP payload we accept, advertised to peers,
    /// must cover our MTU upper bound on both ends.
    fn endpoint_config(&self, (_, max): (u16, u16)) -> Result<quinn::EndpointConfig, TlsError> {
        let mut config = quinn::EndpointConfig::default();
        // quinn's default (1472) already covers a 1452 upper bound; only raise it.
        config.max_udp_payload_size(max.max(1472))?;
        Ok(config)
    }
}

/// The UDP payload sizes an endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mtu {
    /// [`Mtu::Loopback`] if the endpoint is bound to a loopback address (it can reach nothing
    /// else), otherwise [`Mtu::Network`].
    Auto,
    /// 4096 bytes, fixed: doubled loopback throughput.
    Loopback,
    /// Start at 1200 (what every QUIC path must carry) and discover up to 1452 (a 1500-byte
    /// Ethernet MTU less IPv6 and UDP headers).
    Network,
    /// Start at `initial` (also the floor) and discover up to `max`. Needs
    /// `1200 <= initial <= max <= 6553`.
    Fixed {
        /// The initial and minimum UDP payload size.
        initial: u16,
        /// The MTU discovery upper bound.
        max: u16,
    },
}

impl Mtu {
    /// The largest MTU allowed: quinn sends up to 10 segments in one GSO batch and quinn-udp
    /// silently drops batches over 64 KiB, which collapsed throughput at 8192
    ///.
    pub const GSO_LIMIT: u16 = 6553;
    /// [`Mtu::Loopback`]'s size.
    pub const LOOPBACK: u16 = 4096;
    /// [`Mtu::Network`]'s start, QUIC's minimum.
    pub const NETWORK_INITIAL: u16 = 1200;
    /// [`Mtu::Network`]'s discovery upper bound.
    pub const NETWORK_MAX: u16 = 1452;

    fn in_range(initial: u16, max: u16) -> bool {
        Self::NETWORK_INITIAL <= initial && initial <= max && max <= Self::GSO_LIMIT
    }

    /// (initial, max) for an endpoint bound to `bind` (`None`: unknown, treated as a real
    /// network).
    pub fn resolve(self, bind: Option<SocketAddr>) -> (u16, u16) {
        match self {
            Mtu::Auto if bind.is_some_and(|a| a.ip().is_loopback()) => Mtu::Loopback.resolve(bind),
            Mtu::Auto | Mtu::Network => (Self::NETWORK_INITIAL, Self::NETWORK_MAX),
            Mtu::Loopback => (Self::LOOPBACK, Self::LOOPBACK),
            Mtu::Fixed { initial, max } => (initial, max),
        }
    }
}

/// `auto`, `loopback`, `network`, a single size (`4096`) or `initial..max` (`1200..1452`).
impl FromStr for Mtu {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let size = |v: &str| {
            v.trim()
                .parse::<u16>()
                .map_err(|_| format!("MTU {s:?}: expected auto, loopback, network, N or N..M"))
        };
        match s.trim() {
            "auto" => Ok(Mtu::Auto),
            "loopback" => Ok(Mtu::Loopback),
            "network" => Ok(Mtu::Network),
            other => {
                let (initial, max) = match other.split_once("..") {
                    Some((a, b)) => (size(a)?, size(b)?),
                    None => (size(other)?, size(other)?),
                };
                if !Mtu::in_range(initial, max) {
                    return Err(format!(
                        "MTU {s:?}: need 1200 <= initial <= max <= {}",
                        Mtu::GSO_LIMIT
                    ));
                }
                Ok(Mtu::Fixed { initial, max })
            }
        }
    }
}

impl fmt::Display for Mtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mtu::Auto => f.write_str("auto"),
            Mtu::Loopback => f.write_str("loopback"),
            Mtu::Network => f.write_str("network"),
            Mtu::Fixed { initial, max } if initial == max => write!(f, "{initial}"),
            Mtu::Fixed { initial, max } => write!(f, "{initial}..{max}"),
        }
    }
}

/// A node's endpoint on `bind`: serves peers and clients (both ALPNs, mandatory client
/// certificates under the cluster CA) and dials other nodes with its own certificate on the
/// peer ALPN (the default client configuration; use [`connect_node`](super::connect_node)).
/// Must be called inside a tokio runtime.
///
/// With `emulation` (this node's links and peers, see [`crate::emulation`]), the socket is
/// wrapped, even with no links, so that impairments can be set at run time: what the endpoint
/// sends to its peers' addresses is delayed, dropped and paced as the links and impairments
/// say; everything else, and everything it receives, is untouched. `None` is a plain socket.
pub fn endpoint(
    bind: SocketAddr,
    certs: &NodeCerts,
    tuning: &TransportTuning,
    emulation: Option<NodeEmulation>,
) -> Result<quinn::Endpoint, TlsError> {
    let mtu = tuning.mtu.resolve(Some(bind));
    let transport = Arc::new(tuning.transport_config(mtu)?);
    let server = server_config(certs, transport.clone())?;
    let client = client_config_with(&certs.as_client(), Alpn::Peer, transport)?;
    let socket = bind_socket(bind, tuning.socket_buffer_bytes)?;
    let mut endpoint = new_endpoint(
        bind,
        tuning.endpoint_config(mtu)?,
        Some(server),
        socket,
        emulation,
    )?;
    endpoint.set_default_client_config(client);
    tracing::debug!(node = certs.id().0, %bind, mtu = ?mtu, "node endpoint ready");
    Ok(endpoint)
}

/// A client-only endpoint for `paxbench kv` and load generators, on an ephemeral port of every
/// interface (IPv6 dual-stack where the host has it, else IPv4). It dials nodes on the client
/// ALPN. [`Mtu::Auto`] means the network setting here; for loopback runs bind with
/// [`client_endpoint_on`] to `127.0.0.1:0`, or use [`Mtu::Loopback`].
pub fn client_endpoint(
    certs: &ClientCerts,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TlsError> {
    let dual_stack = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
    match client_endpoint_on(dual_stack, certs, tuning) {
        Err(TlsError::Bind { source, .. }) => {
            tracing::debug!(%source, "no dual-stack IPv6 socket; client endpoint uses IPv4");
            client_endpoint_on(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), certs, tuning)
        }
        result => result,
    }
}

/// A client-only endpoint bound to `bind`; see [`client_endpoint`].
pub fn client_endpoint_on(
    bind: SocketAddr,
    certs: &ClientCerts,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TlsError> {
    let mtu = tuning.mtu.resolve(Some(bind));
    let transport = Arc::new(tuning.client_transport_config(mtu)?);
    let client = client_config_with(certs, Alpn::Client, transport)?;
    let socket = bind_socket(bind, tuning.socket_buffer_bytes)?;
    let mut endpoint = new_endpoint(bind, tuning.endpoint_config(mtu)?, None, socket, None)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

fn new_endpoint(
    bind: SocketAddr,
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
    socket: std::net::UdpSocket,
    emulation: Option<NodeEmulation>,
) -> Result<quinn::Endpoint, TlsError> {
    let runtime = quinn::default_runtime().ok_or(TlsError::NoRuntime)?;
    let error = |source| TlsError::Bind { addr: bind, source };
    // The socket quinn's runtime would use, wrapped when this node emulates links.
    let socket = runtime.wrap_udp_socket(socket).map_err(error)?;
    let socket: Arc<dyn quinn::AsyncUdpSocket> = match emulation {
        Some(e) => e.wrap(socket).map_err(error)?,
        None => socket,
    };
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, runtime).map_err(error)
}

/// Binds a UDP socket with large buffers and logs what the kernel
/// granted. An IPv6 socket is made dual-stack, or the bind fails, so that an unspecified IPv6
/// address reaches IPv4 nodes too.
fn bind_socket(bind: SocketAddr, buffer_bytes: usize) -> Result<std::net::UdpSocket, TlsError> {
    let error = |source| TlsError::Bind { addr: bind, source };
    let socket =
        Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(error)?;
    if bind.is_ipv6() && bind.ip().is_unspecified() {
        socket.set_only_v6(false).map_err(error)?;
    }
    // A refused size is not fatal: the endpoint works with smaller buffers, only slower, and
    // the shortfall is logged below.
    if let Err(e) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::warn!(%bind, error = %e, "could not set SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::warn!(%bind, error = %e, "could not set SO_SNDBUF");
    }
    socket.bind(&bind.into()).map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    let recv = socket.recv_buffer_size().map_err(error)?;
    let send = socket.send_buffer_size().map_err(error)?;
    // Linux reports twice the size set (the other half is its bookkeeping allowance).
    let granted = |reported: usize| {
        if cfg!(target_os = "linux") {
            reported / 2
        } else {
            reported
        }
    };
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(bind);
    if granted(recv) < buffer_bytes || granted(send) < buffer_bytes {
        tracing::warn!(
            %local, requested = buffer_bytes, recv_reported = recv, send_reported = send,
            "UDP socket buffers smaller than asked; raise net.core.rmem_max / wmem_max"
        );
    } else {
        tracing::info!(
            %local, requested = buffer_bytes, recv_reported = recv, send_reported = send,
            "UDP socket buffers"
        );
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TransportTuning::default().validate().unwrap();
    }

    #[test]
    fn auto_mtu_follows_the_bind_address() {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        assert_eq!(Mtu::Auto.resolve(Some(lo)), (4096, 4096));
        assert_eq!(Mtu::Auto.resolve(Some(any)), (1200, 1452));
        assert_eq!(Mtu::Auto.resolve(None), (1200, 1452));
        assert_eq!(Mtu::Network.resolve(Some(lo)), (1200, 1452));
    }

    #[test]
    fn mtu_is_kept_under_the_gso_limit() {
        for (initial, max) in [(1100, 1452), (1500, 1400), (4096, 8192)] {
            let tuning = TransportTuning {
                mtu: Mtu::Fixed { initial, max },
                ..TransportTuning::default()
            };
            assert!(matches!(
                tuning.validate(),
                Err(TlsError::MtuOutOfRange { .. })
            ));
        }
        assert!(u32::from(Mtu::GSO_LIMIT) * 10 < 64 * 1024);
        assert!(u32::from(Mtu::LOOPBACK) * 10 < 64 * 1024);
    }

    #[test]
    fn keep_alive_must_be_shorter_than_idle_timeout() {
        let tuning = TransportTuning {
            keep_alive_interval: Duration::from_secs(10),
            ..TransportTuning::default()
        };
        assert!(matches!(tuning.validate(), Err(TlsError::Timeouts { .. })));
    }

    #[test]
    fn mtu_parses_and_prints() {
        for s in ["auto", "loopback", "network", "4096", "1200..1452"] {
            assert_eq!(s.parse::<Mtu>().unwrap().to_string(), s);
        }
        assert_eq!(
            "4096".parse::<Mtu>(),
            Ok(Mtu::Fixed {
                initial: 4096,
                max: 4096
            })
        );
        for bad in ["8192", "1000", "1452..1200", "big"] {
            assert!(bad.parse::<Mtu>().is_err(), "{bad}");
        }
    }
}
