//! Reading identities out of certificates, the two certificate verifiers, and the rustls
//! configurations built on them.
//!
//! Both verifiers delegate chain, validity, key-purpose and (for servers) name checks to
//! rustls' webpki verifiers under the cluster CA, then add what webpki cannot know: that the
//! certificate names exactly one paxbench identity, and (for servers) that it is the node dialed.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{
    Alpn, ClientCerts, Identity, NodeCerts, TlsError, TransportTuning, CLIENT_ALPN, PEER_ALPN,
};

/// The paxbench identity a certificate proves: its one SAN DNS name under `.paxbench`.
/// `what` names the certificate in errors (a path, or who presented it).
pub(crate) fn identity_of(cert: &CertificateDer<'_>, what: &str) -> Result<Identity, TlsError> {
    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|source| TlsError::BadCertificate {
            cert: what.to_owned(),
            source,
        })?;
    // webpki warns against using this list to *verify* a name; here it only reads which
    // identity the certificate claims. Verification is webpki's own name check (servers) or the
    // chain check plus this exactly-one rule (clients).
    let names: Vec<&str> = parsed
        .valid_dns_names()
        .filter(|name| name.to_ascii_lowercase().ends_with(super::NAME_SUFFIX))
        .collect();
    match names[..] {
        [] => Err(TlsError::NoIdentity {
            cert: what.to_owned(),
        }),
        [name] => Identity::from_dns_name(name).ok_or_else(|| TlsError::AmbiguousIdentity {
            cert: what.to_owned(),
            names: vec![name.to_owned()],
        }),
        _ => Err(TlsError::AmbiguousIdentity {
            cert: what.to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }),
    }
}

/// The crypto provider for everything here: ring, chosen explicitly so that another crate
/// enabling aws-lc-rs cannot make rustls' process-wide default ambiguous.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

/// Turns an identity problem into the rustls error a verifier returns. `Other` becomes the
/// `certificate_unknown` alert on the wire and keeps our message in the local error.
fn refuse(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Verifies a node's server certificate: webpki under the cluster CA for the dialed name, and
/// then that the certificate's one identity is exactly the dialed node.
#[derive(Debug)]
struct NodeServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let dialed = match server_name {
            ServerName::DnsName(name) => Identity::from_dns_name(name.as_ref()),
            _ => None,
        };
        let Some(expected @ Identity::Node(_)) = dialed else {
            return Err(refuse(TlsError::NotANodeName {
                name: server_name.to_str().into_owned(),
            }));
        };
        // Chain to the cluster CA, validity, serverAuth purpose and the SAN matching the name.
        self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // webpki accepts any SAN that matches, including a wildcard or a certificate that also
        // names other nodes; require that the certificate proves this node and nothing else.
        let what = format!("presented by server {expected}");
        let found = identity_of(end_entity, &what).map_err(refuse)?;
        if found != expected {
            return Err(refuse(TlsError::WrongIdentity {
                cert: what,
                expected,
                found,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Verifies a connecting party's certificate on a node: mandatory, chained to the cluster CA
/// with the clientAuth purpose (webpki), and naming exactly one identity. Which identity may
/// use which ALPN is decided after the handshake by [`authorize`](super::authorize), because a
/// verifier does not see the negotiated protocol.
#[derive(Debug)]
struct ClusterClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        identity_of(end_entity, "presented by client").map_err(refuse)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The rustls server configuration of a node, whatever carries it: its own certificate,
/// mandatory client certificates under the cluster CA, both ALPNs, TLS 1.3 only (QUIC requires
/// it; TCP uses the same configuration, so both transports authenticate alike).
pub(crate) fn server_tls(certs: &NodeCerts) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(certs.ca())?, provider.clone())
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ClusterClientVerifier { webpki }))
        .with_single_cert(certs.chain().to_vec(), certs.key().clone_key())?;
    tls.alpn_protocols = vec![PEER_ALPN.to_vec(), CLIENT_ALPN.to_vec()];
    Ok(tls)
}

/// The quinn server configuration of a node: [`server_tls`] with quinn's transport settings.
pub(crate) fn server_config(
    certs: &NodeCerts,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let tls = server_tls(certs)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(transport);
    Ok(server)
}

/// A quinn client configuration that dials nodes with `certs` and offers `alpn`.
///
/// The server's certificate must chain to the cluster CA and prove the node named by the server
/// name given to `connect` (see [`connect_node`](super::connect_node)). Node endpoints use this
/// with [`Alpn::Peer`] as their default; [`client_endpoint`](super::client_endpoint) with
/// [`Alpn::Client`]; with [`Alpn::Client`] the connections also ask nodes for fewer
/// acknowledgements ([`CLIENT_ACK_ELICITING_THRESHOLD`](super::CLIENT_ACK_ELICITING_THRESHOLD)).
/// [`Mtu::Auto`](super::Mtu::Auto) resolves to the real-network setting
/// here, since no local address is known.
pub fn client_config(
    certs: &ClientCerts,
    alpn: Alpn,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig, TlsError> {
    let mtu = tuning.mtu.resolve(None);
    let transport = match alpn {
        Alpn::Client => tuning.client_transport_config(mtu)?,
        Alpn::Peer => tuning.transport_config(mtu)?,
    };
    client_config_with(certs, alpn, Arc::new(transport))
}

/// The rustls client configuration that dials nodes with `certs` and offers `alpn`, whatever
/// carries it: TLS 1.3 only, the server proving the node named by the server name.
pub(crate) fn client_tls(
    certs: &ClientCerts,
    alpn: Alpn,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(roots(certs.ca())?, provider.clone())
        .build()?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeServerVerifier { webpki }))
        .with_client_auth_cert(certs.chain().to_vec(), certs.key().clone_key())?;
    tls.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    Ok(tls)
}

pub(crate) fn client_config_with(
    certs: &ClientCerts,
    alpn: Alpn,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let tls = client_tls(certs, alpn)?;
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    client.transport_config(transport);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxos::NodeId;
    use rcgen::{CertificateParams, KeyPair};

    fn self_signed(names: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn identity_is_the_one_paxbench_name() {
        let cert = self_signed(&["node-3.paxbench", "host.example"]);
        assert_eq!(identity_of(&cert, "t").unwrap(), Identity::Node(NodeId(3)));
        let cert = self_signed(&["client.paxbench"]);
        assert_eq!(identity_of(&cert, "t").unwrap(), Identity::Client);
    }

    #[test]
    fn no_or_several_paxbench_names_prove_nothing() {
        let cert = self_signed(&["host.example"]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::NoIdentity { .. })
        ));
        let cert = self_signed(&["node-1.paxbench", "node-2.paxbench"]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::AmbiguousIdentity { names, .. }) if names.len() == 2
        ));
        // A wildcard proves no single identity. webpki does not even list `*.paxbench` (too
        // few labels), so alone it is no name at all; one it does list makes the set ambiguous.
        let cert = self_signed(&["*.paxbench"]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::NoIdentity { .. })
        ));
        let cert = self_signed(&["node-1.paxbench", "*.x.paxbench"]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::AmbiguousIdentity { .. })
        ));
        let cert = self_signed(&["*.x.paxbench"]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::AmbiguousIdentity { .. })
        ));
    }

    #[test]
    fn garbage_is_a_bad_certificate() {
        let cert = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        assert!(matches!(
            identity_of(&cert, "t"),
            Err(TlsError::BadCertificate { .. })
        ));
    }
}
