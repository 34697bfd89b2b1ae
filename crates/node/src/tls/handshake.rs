//! Dialing nodes, accepting connections, and deciding what an authenticated connection may be.

use std::net::SocketAddr;

use paxos::NodeId;
use rustls_pki_types::CertificateDer;

use super::verify::identity_of;
use super::{Alpn, Identity, Remote, TlsError, REFUSED_CLOSE_CODE};

/// Dials node `node` at `addr` with the endpoint's default client configuration (the peer ALPN
/// on a node [`endpoint`](super::endpoint), the client ALPN on a
/// [`client_endpoint`](super::client_endpoint)) and completes the handshake.
///
/// The server name is `node-<id>.paxbench`, so the handshake fails (with the TLS alert
/// `bad_certificate`, see [`TlsError::tls_alert`]) unless the server proves it is that node.
/// A refusal by the server can also arrive just after this returns: the client's side of a
/// TLS 1.3 handshake completes before the server has checked its certificate, so watch the
/// connection's [`closed`](quinn::Connection::closed) as for any other connection loss.
pub async fn connect_node(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    node: NodeId,
) -> Result<quinn::Connection, TlsError> {
    let name = Identity::Node(node).dns_name();
    let connecting = endpoint
        .connect(addr, &name)
        .map_err(|source| TlsError::Connect { addr, source })?;
    connecting
        .await
        .map_err(|source| TlsError::Handshake { addr, source })
}

/// Completes the handshake of an incoming connection on a node endpoint and [`authorize`]s it.
///
/// A certificate refusal fails the handshake ([`TlsError::Handshake`]); a connection whose
/// identity may not use its ALPN is closed with [`REFUSED_CLOSE_CODE`] and the reason, and the
/// error returned. On success the caller owns the connection and knows what it is.
pub async fn accept_incoming(
    incoming: quinn::Incoming,
) -> Result<(quinn::Connection, Remote), TlsError> {
    let addr = incoming.remote_address();
    let connection = incoming
        .await
        .map_err(|source| TlsError::Handshake { addr, source })?;
    match authorize(&connection) {
        Ok(remote) => {
            tracing::debug!(%addr, ?remote, "connection authorized");
            Ok((connection, remote))
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "connection refused");
            connection.close(REFUSED_CLOSE_CODE, e.to_string().as_bytes());
            Err(e)
        }
    }
}

/// What an established connection is allowed to be, from the ALPN it negotiated and the
/// identity its certificate proves: the peer ALPN needs a node certificate, the client ALPN
/// takes any. Does not close the connection on refusal ([`accept_incoming`] does).
pub fn authorize(connection: &quinn::Connection) -> Result<Remote, TlsError> {
    let protocol = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    let identity = peer_identity(connection)?;
    remote_of(protocol, identity)
}

/// What an authenticated remote may be: the peer ALPN needs a node certificate, the client
/// ALPN takes any. The one rule both transports apply.
pub(crate) fn remote_of(protocol: Option<Vec<u8>>, identity: Identity) -> Result<Remote, TlsError> {
    match (protocol.as_deref().and_then(Alpn::from_bytes), identity) {
        (Some(Alpn::Peer), Identity::Node(id)) => Ok(Remote::Peer(id)),
        (Some(Alpn::Peer), identity) => Err(TlsError::PeerAlpnNotAllowed { identity }),
        (Some(Alpn::Client), identity) => Ok(Remote::Client(identity)),
        (None, _) => Err(TlsError::UnknownAlpn { protocol }),
    }
}

/// The identity proven by the certificate the other side of `connection` presented (already
/// verified against the cluster CA during the handshake). Works on both sides: a server learns
/// who dialed it, a dialer re-reads who answered.
pub fn peer_identity(connection: &quinn::Connection) -> Result<Identity, TlsError> {
    let chain = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(TlsError::NoPeerCertificate)?;
    let leaf = chain.first().ok_or(TlsError::NoPeerCertificate)?;
    let what = format!("presented by {}", connection.remote_address());
    identity_of(leaf, &what)
}
