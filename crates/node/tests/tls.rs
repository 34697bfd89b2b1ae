//! Mutual TLS between real quinn endpoints on 127.0.0.1, inside one process: who gets in, who
//! is refused and with what error, and the certificate files `paxbench certs` writes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use node::{
    accept_incoming, client_config, client_endpoint, client_endpoint_on, connect_node, endpoint,
    peer_identity, write_cluster, Alpn, ClientCerts, ClusterCerts, Identity, NodeCerts, Remote,
    TlsError, TransportTuning, PEER_ALPN,
};
use paxos::NodeId;
use rustls::AlertDescription;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Guards against a hang turning into a stuck CI job; nothing here waits on time otherwise.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("handshake did not finish")
}

/// Accepts the next connection on a node endpoint through `accept_incoming`.
async fn accept(server: &quinn::Endpoint) -> Result<(quinn::Connection, Remote), TlsError> {
    let incoming = server.accept().await.expect("endpoint closed");
    accept_incoming(incoming).await
}

/// How a dialer's connection ended: the handshake error, or if the client's half of the
/// handshake completed before the server refused it, the close that followed.
async fn dial_outcome(addr: SocketAddr, result: Result<quinn::Connection, TlsError>) -> TlsError {
    match result {
        Err(e) => e,
        Ok(conn) => TlsError::Handshake {
            addr,
            source: conn.closed().await,
        },
    }
}

fn node_endpoint(certs: &NodeCerts) -> quinn::Endpoint {
    endpoint(loopback(), certs, &TransportTuning::default(), None).unwrap()
}

#[tokio::test]
async fn nodes_handshake_and_prove_their_ids_both_ways() {
    let certs = ClusterCerts::generate(2).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let n1 = node_endpoint(certs.node(NodeId(1)).unwrap());
    let addr = n1.local_addr().unwrap();

    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&n0, addr, NodeId(1)), accept(&n1)) }).await;
    let dialed = dialed.unwrap();
    let (accepted, remote) = accepted.unwrap();

    assert_eq!(remote, Remote::Peer(NodeId(0)));
    assert_eq!(peer_identity(&accepted).unwrap(), Identity::Node(NodeId(0)));
    assert_eq!(peer_identity(&dialed).unwrap(), Identity::Node(NodeId(1)));
    let alpn = dialed
        .handshake_data()
        .unwrap()
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .unwrap()
        .protocol;
    assert_eq!(alpn.as_deref(), Some(PEER_ALPN));

    // The connection carries data, and on loopback the tuned 4096-byte MTU is in force.
    let (mut send, _recv) = dialed.open_bi().await.unwrap();
    send.write_all(b"hello from node-0").await.unwrap();
    send.finish().unwrap();
    let (_send, mut recv) = within(accepted.accept_bi()).await.unwrap();
    let got = within(recv.read_to_end(1024)).await.unwrap();
    assert_eq!(got, b"hello from node-0");
    assert_eq!(dialed.stats().path.current_mtu, 4096);
}

/// Clients ask nodes, through QUIC's ACK-frequency extension, to acknowledge only every
/// `CLIENT_ACK_ELICITING_THRESHOLD` packets (replies carry the acknowledgements); nodes
/// dialing each other keep quinn's default.
#[tokio::test]
async fn clients_ask_nodes_for_fewer_acknowledgements_and_peers_do_not() {
    let certs = ClusterCerts::generate(2).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let n1 = node_endpoint(certs.node(NodeId(1)).unwrap());
    let addr = n0.local_addr().unwrap();
    let client =
        client_endpoint_on(loopback(), certs.client(), &TransportTuning::default()).unwrap();

    for (dialer, asks) in [(&client, true), (&n1, false)] {
        let (dialed, accepted) =
            within(async { tokio::join!(connect_node(dialer, addr, NodeId(0)), accept(&n0)) })
                .await;
        let (dialed, (accepted, _)) = (dialed.unwrap(), accepted.unwrap());
        // One exchange of data each way: the frame goes out with the first 1-RTT packets.
        let (mut send, mut recv) = dialed.open_bi().await.unwrap();
        send.write_all(b"ping").await.unwrap();
        send.finish().unwrap();
        let (mut back, mut got) = within(accepted.accept_bi()).await.unwrap();
        assert_eq!(within(got.read_to_end(64)).await.unwrap(), b"ping");
        back.write_all(b"pong").await.unwrap();
        back.finish().unwrap();
        assert_eq!(within(recv.read_to_end(64)).await.unwrap(), b"pong");

        let sent = dialed.stats().frame_tx.ack_frequency;
        let received = accepted.stats().frame_rx.ack_frequency;
        if asks {
            assert!(sent >= 1, "a client sent no ACK_FREQUENCY frame");
            assert_eq!(
                received, sent,
                "the node did not receive the client's ACK_FREQUENCY"
            );
        } else {
            assert_eq!(
                (sent, received),
                (0, 0),
                "a node asked its peer for fewer ACKs"
            );
        }
    }
}

#[tokio::test]
async fn clients_and_nodes_acting_as_clients_use_the_client_alpn() {
    let certs = ClusterCerts::generate(2).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let addr = n0.local_addr().unwrap();
    let tuning = TransportTuning::default();

    // The usual client endpoint (dual-stack or IPv4 on an ephemeral port) reaches a node on
    // 127.0.0.1.
    let client = client_endpoint(certs.client(), &tuning).unwrap();
    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&client, addr, NodeId(0)), accept(&n0)) }).await;
    assert_eq!(accepted.unwrap().1, Remote::Client(Identity::Client));
    assert_eq!(
        peer_identity(&dialed.unwrap()).unwrap(),
        Identity::Node(NodeId(0))
    );

    // Node 1's certificate used as a client.
    let as_client = certs.node(NodeId(1)).unwrap().as_client();
    let client = client_endpoint_on(loopback(), &as_client, &tuning).unwrap();
    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&client, addr, NodeId(0)), accept(&n0)) }).await;
    dialed.unwrap();
    assert_eq!(
        accepted.unwrap().1,
        Remote::Client(Identity::Node(NodeId(1)))
    );
}

#[tokio::test]
async fn peer_with_a_foreign_ca_certificate_is_refused() {
    let certs = ClusterCerts::generate(2).unwrap();
    let foreign = ClusterCerts::generate(1).unwrap();
    let n1 = node_endpoint(certs.node(NodeId(1)).unwrap());
    let addr = n1.local_addr().unwrap();
    // It trusts our CA (so it accepts node 1's certificate) but holds another CA's node-0
    // certificate: the refusal is the server's.
    let stolen = foreign.node(NodeId(0)).unwrap();
    let impostor = NodeCerts::new(
        NodeId(0),
        certs.ca().clone(),
        stolen.chain().to_vec(),
        stolen.key().clone_key(),
    )
    .unwrap();
    let impostor = node_endpoint(&impostor);

    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&impostor, addr, NodeId(1)), accept(&n1)) }).await;
    let server_err = accepted.unwrap_err();
    assert!(
        matches!(server_err, TlsError::Handshake { .. }),
        "{server_err}"
    );
    assert_eq!(server_err.tls_alert(), Some(AlertDescription::UnknownCA));
    let client_err = within(dial_outcome(addr, dialed)).await;
    assert_eq!(
        client_err.tls_alert(),
        Some(AlertDescription::UnknownCA),
        "{client_err}"
    );
}

#[tokio::test]
async fn dialing_a_node_id_the_server_certificate_does_not_name_is_refused() {
    let certs = ClusterCerts::generate(3).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let n1 = node_endpoint(certs.node(NodeId(1)).unwrap());
    let addr = n1.local_addr().unwrap();

    // Node 0 believes node 2 lives at node 1's address.
    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&n0, addr, NodeId(2)), accept(&n1)) }).await;
    let client_err = dialed.unwrap_err();
    assert!(
        matches!(client_err, TlsError::Handshake { .. }),
        "{client_err}"
    );
    assert_eq!(
        client_err.tls_alert(),
        Some(AlertDescription::BadCertificate)
    );
    let server_err = accepted.unwrap_err();
    assert_eq!(
        server_err.tls_alert(),
        Some(AlertDescription::BadCertificate),
        "{server_err}"
    );
}

/// Issues a node-style certificate with the given SAN names under `certs`' CA, bypassing the
/// checks `ClusterCerts` applies, the way a careless or hostile CA operator could.
fn issue_under(
    certs: &ClusterCerts,
    names: &[&str],
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let ca_key = KeyPair::try_from(certs.ca_key()).unwrap();
    let issuer = Issuer::from_ca_cert_der(certs.ca(), ca_key).unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    (vec![cert.der().clone()], key)
}

#[tokio::test]
async fn a_server_certificate_naming_several_nodes_is_refused() {
    // webpki alone accepts this certificate for node-2.paxbench, since one of its names
    // matches; the node verifier requires it to name that node and nothing else.
    let certs = ClusterCerts::generate(3).unwrap();
    let (chain, key) = issue_under(&certs, &["node-1.paxbench", "node-2.paxbench"]);
    // NodeCerts refuses to carry such a certificate, so the rogue server is built by hand.
    assert!(NodeCerts::new(
        NodeId(1),
        certs.ca().clone(),
        chain.clone(),
        key.clone_key()
    )
    .is_err());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let rogue =
        quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(quic)), loopback())
            .unwrap();
    let addr = rogue.local_addr().unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());

    let (dialed, _) = within(async {
        tokio::join!(connect_node(&n0, addr, NodeId(2)), async {
            rogue.accept().await.unwrap().await
        })
    })
    .await;
    let client_err = dialed.unwrap_err();
    assert_eq!(
        client_err.tls_alert(),
        Some(AlertDescription::CertificateUnknown),
        "{client_err}"
    );
    assert!(
        client_err.to_string().contains("AmbiguousIdentity"),
        "{client_err}"
    );
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    let certs = ClusterCerts::generate(1).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let addr = n0.local_addr().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![Alpn::Client.as_bytes().to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(quic));
    let client = quinn::Endpoint::client(loopback()).unwrap();

    let connecting = client
        .connect_with(config, addr, "node-0.paxbench")
        .unwrap();
    let (dialed, accepted) = within(async { tokio::join!(connecting, accept(&n0)) }).await;
    let server_err = accepted.unwrap_err();
    assert_eq!(
        server_err.tls_alert(),
        Some(AlertDescription::CertificateRequired),
        "{server_err}"
    );
    let client_err = within(dial_outcome(
        addr,
        dialed.map_err(|source| TlsError::Handshake { addr, source }),
    ))
    .await;
    assert_eq!(
        client_err.tls_alert(),
        Some(AlertDescription::CertificateRequired),
        "{client_err}"
    );
}

#[tokio::test]
async fn client_with_a_foreign_certificate_is_refused() {
    let certs = ClusterCerts::generate(1).unwrap();
    let foreign = ClusterCerts::generate(1).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let addr = n0.local_addr().unwrap();
    let stranger = ClientCerts::new(
        certs.ca().clone(),
        foreign.client().chain().to_vec(),
        foreign.client().key().clone_key(),
    )
    .unwrap();
    let client = client_endpoint_on(loopback(), &stranger, &TransportTuning::default()).unwrap();

    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&client, addr, NodeId(0)), accept(&n0)) }).await;
    let server_err = accepted.unwrap_err();
    assert_eq!(
        server_err.tls_alert(),
        Some(AlertDescription::UnknownCA),
        "{server_err}"
    );
    let client_err = within(dial_outcome(addr, dialed)).await;
    assert_eq!(
        client_err.tls_alert(),
        Some(AlertDescription::UnknownCA),
        "{client_err}"
    );
}

#[tokio::test]
async fn client_certificate_on_the_peer_alpn_is_refused() {
    let certs = ClusterCerts::generate(1).unwrap();
    let n0 = node_endpoint(certs.node(NodeId(0)).unwrap());
    let addr = n0.local_addr().unwrap();
    let tuning = TransportTuning::default();
    let client = client_endpoint_on(loopback(), certs.client(), &tuning).unwrap();
    let as_peer = client_config(certs.client(), Alpn::Peer, &tuning).unwrap();

    let connecting = client
        .connect_with(as_peer, addr, "node-0.paxbench")
        .unwrap();
    let (dialed, accepted) = within(async { tokio::join!(connecting, accept(&n0)) }).await;
    let server_err = accepted.unwrap_err();
    assert!(
        matches!(
            server_err,
            TlsError::PeerAlpnNotAllowed {
                identity: Identity::Client
            }
        ),
        "{server_err}"
    );
    let dialed = dialed.map_err(|source| TlsError::Handshake { addr, source });
    let client_err = within(dial_outcome(addr, dialed)).await;
    assert!(client_err.is_refused_by_remote(), "{client_err}");
}

#[tokio::test]
async fn written_files_load_and_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    write_cluster(&dir, 3, 7100).unwrap();
    // The runtime owns the schema; what `paxbench certs` writes must load as it is.
    node::config::ClusterConfig::load(&dir.join("cluster.toml")).unwrap();

    for name in [
        "ca.pem",
        "ca-key.pem",
        "node-0.pem",
        "node-0-key.pem",
        "node-2.pem",
        "node-2-key.pem",
        "client.pem",
        "client-key.pem",
    ] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    #[cfg(unix)]
    for name in ["ca-key.pem", "node-1-key.pem", "client-key.pem"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    let toml: toml::Table = std::fs::read_to_string(dir.join("cluster.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(toml["protocol"].as_str(), Some("multi-paxos"));
    assert_eq!(toml["durability"].as_str(), Some("none"));
    let data_dir = Path::new(toml["data_dir"].as_str().unwrap());
    assert!(data_dir.is_absolute());
    assert_eq!(data_dir, dir.canonicalize().unwrap().join("data"));
    let tls = toml["tls"].as_table().unwrap();
    assert_eq!(tls["ca"].as_str(), Some("ca.pem"));
    assert_eq!(tls["client_cert"].as_str(), Some("client.pem"));
    assert_eq!(tls["client_key"].as_str(), Some("client-key.pem"));
    let nodes = toml["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["id"].as_integer(), Some(i as i64));
        assert_eq!(
            node["addr"].as_str().unwrap(),
            format!("127.0.0.1:{}", 7100 + i)
        );
        assert_eq!(node["cert"].as_str().unwrap(), format!("node-{i}.pem"));
        assert_eq!(node["key"].as_str().unwrap(), format!("node-{i}-key.pem"));
    }

    // What a node and a client would load from those paths (relative to the file's directory).
    let path = |key: &toml::Value| dir.join(key.as_str().unwrap());
    let n2 = NodeCerts::load(
        NodeId(2),
        &path(&tls["ca"]),
        &path(&nodes[2]["cert"]),
        &path(&nodes[2]["key"]),
    )
    .unwrap();
    let client = ClientCerts::load(
        &path(&tls["ca"]),
        &path(&tls["client_cert"]),
        &path(&tls["client_key"]),
    )
    .unwrap();
    assert_eq!(client.identity(), Identity::Client);

    let server = node_endpoint(&n2);
    let addr = server.local_addr().unwrap();
    let client = client_endpoint_on(loopback(), &client, &TransportTuning::default()).unwrap();
    let (dialed, accepted) =
        within(async { tokio::join!(connect_node(&client, addr, NodeId(2)), accept(&server)) })
            .await;
    dialed.unwrap();
    assert_eq!(accepted.unwrap().1, Remote::Client(Identity::Client));
}

#[test]
fn file_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_cluster(dir, 2, 7000).unwrap();

    // Never overwrites an existing cluster.
    let again = write_cluster(dir, 2, 7000).unwrap_err();
    assert!(
        matches!(&again, TlsError::AlreadyExists { path } if path.starts_with(dir)),
        "{again}"
    );

    // A node loading another node's certificate.
    let wrong = NodeCerts::load(
        NodeId(0),
        &dir.join("ca.pem"),
        &dir.join("node-1.pem"),
        &dir.join("node-1-key.pem"),
    )
    .unwrap_err();
    assert!(
        matches!(&wrong, TlsError::WrongIdentity {
            cert,
            expected: Identity::Node(NodeId(0)),
            found: Identity::Node(NodeId(1)),
        } if cert.ends_with("node-1.pem")),
        "{wrong}"
    );

    // A key that belongs to another certificate.
    let mismatch = NodeCerts::load(
        NodeId(0),
        &dir.join("ca.pem"),
        &dir.join("node-0.pem"),
        &dir.join("node-1-key.pem"),
    )
    .unwrap_err();
    assert!(
        matches!(&mismatch, TlsError::KeyMismatch { key, .. } if key.ends_with("node-1-key.pem")),
        "{mismatch}"
    );

    // A missing file, and a file with no key in it.
    let missing = dir.join("node-9.pem");
    let err = NodeCerts::load(
        NodeId(9),
        &dir.join("ca.pem"),
        &missing,
        &dir.join("node-0-key.pem"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("node-9.pem"), "{err}");
    let err = ClientCerts::load(
        &dir.join("ca.pem"),
        &dir.join("client.pem"),
        &dir.join("client.pem"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path.ends_with("client.pem")),
        "{err}"
    );
}

#[test]
fn ports_past_65535_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_cluster(tmp.path(), 3, 65534).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::PortOverflow {
                base_port: 65534,
                id: 2
            }
        ),
        "{err}"
    );
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "nothing written"
    );
}
