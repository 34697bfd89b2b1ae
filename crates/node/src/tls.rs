//! Certificates, mutual TLS and the QUIC endpoint of a node.
//!
//! One quinn [`Endpoint`](quinn::Endpoint) per node serves both peers and clients; ALPN tells
//! them apart ([`Alpn::Peer`] = `paxbench-peer/3`, [`Alpn::Client`] = `paxbench-client/5`). Every
//! connection is mutual TLS under a cluster CA that [`ClusterCerts`] makes (`paxbench certs`
//! writes it to a directory with [`write_cluster`]; local runs keep a throwaway one in memory).
//!
//! How a node id is bound to a certificate, and who checks what, is documented on [`Identity`]
//! (this module is private; its items are re-exported at the crate root). With
//! `transport = "tcp"` the same rustls configurations and identity rules serve TLS over TCP
//! (`crate::transport::tcp`): everything below holds there too, except that a refusal after
//! the handshake ends the TCP stream instead of carrying [`REFUSED_CLOSE_CODE`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use paxos::NodeId;

mod certs;
mod handshake;
mod transport;
mod verify;

pub use certs::{write_cluster, ClientCerts, ClusterCerts, NodeCerts, DEFAULT_BASE_PORT};
pub(crate) use handshake::remote_of;
pub use handshake::{accept_incoming, authorize, connect_node, peer_identity};
pub use transport::{
    client_endpoint, client_endpoint_on, endpoint, Mtu, TransportTuning,
    CLIENT_ACK_ELICITING_THRESHOLD,
};
pub use verify::client_config;
pub(crate) use verify::{client_tls, identity_of, server_tls};

/// ALPN protocol id for node-to-node (peer) connections: the wire crate's, which versions the
/// peer frames.
pub const PEER_ALPN: &[u8] = wire::PEER_ALPN;
/// ALPN protocol id for client connections (load generators, `paxbench kv`): the wire crate's,
/// which versions the client frames.
pub const CLIENT_ALPN: &[u8] = wire::CLIENT_ALPN;
/// Application close code with which a node closes a connection whose certificate may not use
/// the ALPN it negotiated (a client certificate on the peer ALPN). The reason bytes say why.
pub const REFUSED_CLOSE_CODE: quinn::VarInt = quinn::VarInt::from_u32(0x7062_0001);

/// The DNS name suffix under which all paxbench identities live.
const NAME_SUFFIX: &str = ".paxbench";

/// Who a certificate belongs to, read from its subjectAltName.
///
/// # How a node id is bound to a certificate
///
/// Every certificate the cluster CA issues names exactly one paxbench [`Identity`] as a
/// subjectAltName DNS name: `node-<id>.paxbench` for node `<id>`, `client.paxbench` for clients.
/// There is no custom OID extension: the SAN is what webpki already checks against the server
/// name, so one name is both the dial target (`endpoint.connect(addr, "node-3.paxbench")`) and the
/// identity. Names carry no address, so moving a node to another host only needs an edit of
/// `cluster.toml`, not new certificates. Node certificates carry the serverAuth and clientAuth
/// key purposes (a node serves and dials); client certificates only clientAuth, so webpki refuses
/// a client certificate presented as a server's.
///
/// Who checks what:
///
/// - **Every server** (each node) requires a client certificate that chains to the cluster CA and
///   names exactly one identity; otherwise the handshake is refused with a TLS alert
///   (`certificate_required`, `unknown_ca`, `certificate_unknown`).
/// - **The dialer** verifies that the server's certificate chains to the cluster CA, is valid for
///   the name it dialed, and that its one identity is exactly the node it meant to reach
///   ([`connect_node`] turns a [`NodeId`](paxos::NodeId) into that name). A certificate for
///   another node is refused with `bad_certificate`; one that names further nodes besides (which
///   webpki alone would accept) with `certificate_unknown`.
/// - **After the handshake**, the server calls [`accept_incoming`] (or [`authorize`] on a
///   connection it accepted itself). It combines ALPN and certificate identity into a [`Remote`]:
///   the peer ALPN is only for node certificates (a client certificate using it is refused, and the
///   connection closed with [`REFUSED_CLOSE_CODE`]); any certificate may use the client ALPN, so a
///   node may act as a client. The runtime compares [`Remote::Peer`]'s id with the id the peer
///   claims in its hello frame; [`peer_identity`] gives the raw identity of either side.
///
/// The ALPN check is necessarily post-handshake: rustls' client-certificate verifier does not see
/// the negotiated protocol. A refused client therefore sees its connection established and then
/// closed with [`REFUSED_CLOSE_CODE`], while certificate refusals fail the handshake itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A cluster node: SAN `node-<id>.paxbench`.
    Node(NodeId),
    /// A client (load generator, `paxbench kv`): SAN `client.paxbench`.
    Client,
}

impl Identity {
    /// The SAN DNS name that carries this identity, also the server name to dial a node by.
    pub fn dns_name(self) -> String {
        format!("{self}{NAME_SUFFIX}")
    }

    /// Parses a SAN DNS name. Only the canonical spelling counts (`node-3.paxbench`, not
    /// `node-03.paxbench`), so one identity has exactly one name; case is ignored as in DNS.
    pub fn from_dns_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        let label = name.strip_suffix(NAME_SUFFIX)?;
        if label == "client" {
            return Some(Identity::Client);
        }
        let digits = label.strip_prefix("node-")?;
        let id: u32 = digits.parse().ok()?;
        // Rejects "+3", "03" and friends: only the form `dns_name` writes is an identity.
        (id.to_string() == digits).then_some(Identity::Node(NodeId(id)))
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node-{}", id.0),
            Identity::Client => f.write_str("client"),
        }
    }
}

/// The application protocol a connection negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `paxbench-peer/3`: node-to-node traffic; only node certificates may use it.
    Peer,
    /// `paxbench-client/5`: client requests; any cluster certificate may use it.
    Client,
}

impl Alpn {
    /// The protocol id on the wire.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Alpn::Peer => PEER_ALPN,
            Alpn::Client => CLIENT_ALPN,
        }
    }

    /// The protocol for an ALPN id, if it is one of ours.
    pub fn from_bytes(protocol: &[u8]) -> Option<Self> {
        match protocol {
            PEER_ALPN => Some(Alpn::Peer),
            CLIENT_ALPN => Some(Alpn::Client),
            _ => None,
        }
    }
}

/// What an accepted connection is allowed to be, from its ALPN and certificate identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Remote {
    /// A cluster node on the peer ALPN, proven by its certificate to be this node.
    Peer(NodeId),
    /// A client on the client ALPN; a node certificate may act as a client too.
    Client(Identity),
}

/// What went wrong making certificates, loading them, building endpoints or authenticating a
/// connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rcgen could not generate a key pair or sign a certificate.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A cluster was asked for with zero nodes.
    #[error("a cluster needs at least one node")]
    NoNodes,
    /// `base_port + id` does not fit in a port number.
    #[error("base port {base_port} + node id {id} is past port 65535")]
    PortOverflow {
        /// The base port asked for.
        base_port: u16,
        /// The first node id whose port does not fit.
        id: u32,
    },
    /// A file that [`write_cluster`] would write already exists. It never overwrites, so a
    /// running cluster's CA cannot be replaced by accident.
    #[error("{} exists; remove the old cluster or write elsewhere", path.display())]
    AlreadyExists {
        /// The file that is in the way.
        path: PathBuf,
    },
    /// Creating a directory or writing a file failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A PEM file could not be read or holds no readable item of the kind expected.
    #[error("reading {}: {source}", path.display())]
    Pem {
        /// The PEM file.
        path: PathBuf,
        /// What was wrong with it.
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM file that should hold a certificate holds none.
    #[error("{} holds no certificate", path.display())]
    NoCertificate {
        /// The PEM file.
        path: PathBuf,
    },
    /// A private key does not belong to the certificate it is paired with.
    #[error("key {} does not match certificate {}: {source}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file (or `<memory>`).
        cert: PathBuf,
        /// The key file (or `<memory>`).
        key: PathBuf,
        /// rustls' finding.
        source: rustls::Error,
    },
    /// A certificate is not well-formed X.509 (as far as webpki can tell).
    #[error("malformed certificate {cert}: {source}")]
    BadCertificate {
        /// Which certificate: a file path, or where it was presented.
        cert: String,
        /// webpki's finding.
        source: webpki::Error,
    },
    /// A certificate names no paxbench identity: no SAN `node-<id>.paxbench` or
    /// `client.paxbench`.
    #[error(
        "certificate {cert} names no paxbench identity (SAN node-<id>.paxbench or client.paxbench)"
    )]
    NoIdentity {
        /// Which certificate: a file path, or where it was presented.
        cert: String,
    },
    /// A certificate has more than one SAN under `.paxbench`, or one that is not an identity
    /// (e.g. a wildcard): the identity it proves would be ambiguous.
    #[error("certificate {cert} must name one identity, has ambiguous names {names:?}")]
    AmbiguousIdentity {
        /// Which certificate: a file path, or where it was presented.
        cert: String,
        /// Every SAN DNS name under `.paxbench` it carries.
        names: Vec<String>,
    },
    /// A certificate names another identity than the one it is used for: a node's own
    /// certificate file for another id, or a server that answered for another node than dialed.
    #[error("certificate {cert} belongs to {found}, expected {expected}")]
    WrongIdentity {
        /// Which certificate: a file path, or where it was presented.
        cert: String,
        /// The identity it should prove.
        expected: Identity,
        /// The identity it proves.
        found: Identity,
    },
    /// A server name that is not a node's (`node-<id>.paxbench`) was dialed; paxbench only ever
    /// connects to nodes.
    #[error("server name {name:?} is not a paxbench node name (node-<id>.paxbench)")]
    NotANodeName {
        /// The server name given to `connect`.
        name: String,
    },
    /// rustls refused to build a TLS configuration (e.g. the CA cannot be a trust anchor).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// rustls could not build a certificate verifier from the cluster CA.
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The crypto provider lacks the cipher suite QUIC needs for its initial packets.
    #[error("QUIC crypto: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The MTU setting is out of range: 1200 <= initial <= max, and max × 10 must stay under
    /// 64 KiB, because quinn-udp silently drops larger GSO batches.
    #[error(
        "MTU initial {initial} / max {max} out of range: need 1200 <= initial <= max <= {}",
        Mtu::GSO_LIMIT
    )]
    MtuOutOfRange {
        /// The initial (and minimum) UDP payload size.
        initial: u16,
        /// The upper bound for MTU discovery.
        max: u16,
    },
    /// The idle timeout is zero, too large for QUIC, or not longer than the keep-alive
    /// interval (so keep-alives could not keep a live connection open).
    #[error(
        "idle timeout {idle_timeout:?} must be positive, under 2^62 ms \
         and longer than keep-alive {keep_alive_interval:?}"
    )]
    Timeouts {
        /// The idle timeout asked for.
        idle_timeout: std::time::Duration,
        /// The keep-alive interval asked for.
        keep_alive_interval: std::time::Duration,
    },
    /// quinn refused an endpoint setting.
    #[error("QUIC endpoint configuration: {0}")]
    Config(#[from] quinn::ConfigError),
    /// Creating, configuring or binding the UDP socket, or handing it to quinn, failed.
    #[error("binding UDP socket {addr}: {source}")]
    Bind {
        /// The address being bound.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// No tokio runtime is running here; quinn needs one to drive the endpoint.
    #[error("no tokio runtime: build endpoints from inside one")]
    NoRuntime,
    /// quinn would not start a connection (endpoint stopping, bad address, bad server name).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The QUIC/TLS handshake failed or was refused, by this side or the remote one. For a
    /// certificate refusal, [`TlsError::tls_alert`] names the TLS alert.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// How the connection ended.
        source: quinn::ConnectionError,
    },
    /// Creating, configuring, binding or listening on a node's TCP socket failed.
    #[error("listening on TCP {addr}: {source}")]
    Listen {
        /// The address being bound.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A TCP connection could not be made (refused, unreachable) or configured.
    #[error("connecting over TCP to {addr}: {source}")]
    TcpConnect {
        /// The address dialed.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The TLS handshake over TCP failed, was refused by either side, or did not finish in
    /// time. For an alert from the remote, [`TlsError::tls_alert`] names it.
    #[error("TLS handshake over TCP with {addr}: {source}")]
    TcpHandshake {
        /// The remote address.
        addr: SocketAddr,
        /// How it failed (a [`rustls::Error`] inside, for TLS failures).
        source: io::Error,
    },
    /// The connection carries no peer certificate (cannot happen on a node endpoint, which
    /// requires one; possible on a connection built with another configuration).
    #[error("the connection has no peer certificate")]
    NoPeerCertificate,
    /// The connection negotiated no ALPN or one that is not ours.
    #[error("unknown ALPN {:?}", protocol.as_deref().map(String::from_utf8_lossy))]
    UnknownAlpn {
        /// The negotiated protocol, if any.
        protocol: Option<Vec<u8>>,
    },
    /// A certificate that is not a node's tried the peer ALPN; only nodes may be peers.
    #[error("{identity} may not use ALPN paxbench-peer/3: only node certificates may")]
    PeerAlpnNotAllowed {
        /// The identity its certificate proves.
        identity: Identity,
    },
}

impl TlsError {
    /// The TLS alert that ended the handshake, sent by either side, if this is a handshake
    /// failure caused by TLS (e.g. `UnknownCA` for a foreign CA, `CertificateRequired` for a
    /// client without a certificate, `BadCertificate` for a server of the wrong node).
    /// Over TCP, only an alert the remote sent is known (one this side sent is in the error).
    pub fn tls_alert(&self) -> Option<rustls::AlertDescription> {
        if let TlsError::TcpHandshake { source, .. } = self {
            return match source.get_ref()?.downcast_ref::<rustls::Error>()? {
                rustls::Error::AlertReceived(alert) => Some(*alert),
                _ => None,
            };
        }
        let TlsError::Handshake { source, .. } = self else {
            return None;
        };
        let code = match source {
            quinn::ConnectionError::TransportError(e) => e.code,
            quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
            _ => return None,
        };
        // RFC 9001 §4.8: a TLS alert is carried as CRYPTO_ERROR 0x100 + alert.
        let alert = u64::from(code).checked_sub(0x100)?;
        u8::try_from(alert).ok().map(rustls::AlertDescription::from)
    }

    /// Whether the remote node closed the connection with [`REFUSED_CLOSE_CODE`] (its identity
    /// may not use the ALPN it chose). QUIC only: TCP carries no close codes.
    pub fn is_refused_by_remote(&self) -> bool {
        matches!(self, TlsError::Handshake {
            source: quinn::ConnectionError::ApplicationClosed(close), ..
        } if close.error_code == REFUSED_CLOSE_CODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_round_trip() {
        for identity in [
            Identity::Node(NodeId(0)),
            Identity::Node(NodeId(u32::MAX)),
            Identity::Client,
        ] {
            assert_eq!(
                Identity::from_dns_name(&identity.dns_name()),
                Some(identity)
            );
        }
        assert_eq!(Identity::Node(NodeId(7)).dns_name(), "node-7.paxbench");
        assert_eq!(
            Identity::from_dns_name("NODE-7.Paxbench"),
            Some(Identity::Node(NodeId(7)))
        );
    }

    #[test]
    fn only_canonical_names_are_identities() {
        for name in [
            "node-07.paxbench",
            "node-+7.paxbench",
            "node-.paxbench",
            "node-4294967296.paxbench",
            "*.paxbench",
            "node-1.paxbench.example",
            "node-1",
            "client",
            "clients.paxbench",
        ] {
            assert_eq!(Identity::from_dns_name(name), None, "{name}");
        }
    }

    #[test]
    fn alpn_ids_round_trip() {
        for alpn in [Alpn::Peer, Alpn::Client] {
            assert_eq!(Alpn::from_bytes(alpn.as_bytes()), Some(alpn));
        }
        assert_eq!(Alpn::from_bytes(b"h3"), None);
    }
}
