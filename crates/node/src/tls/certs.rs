//! The cluster CA and the certificates it issues, in memory and as PEM files with a
//! `cluster.toml` (what `paxbench certs` writes).

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use paxos::{NodeId, Protocol};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::verify::identity_of;
use super::{Identity, TlsError};
use crate::config::{
    ClusterFile, Durability, NodeFile, NodeRole, PaxosKnobs, TlsFiles, TransportKnobs,
};

/// The port of node 0 when none is given; node `id` listens on `DEFAULT_BASE_PORT + id`.
pub const DEFAULT_BASE_PORT: u16 = 7000;

/// A whole cluster's certificates, in memory: the CA, one certificate per node and a client
/// certificate, all DER. Made by [`ClusterCerts::generate`] (throwaway, for tests and local
/// runs) or by [`write_cluster`], which also writes them as PEM files.
///
/// Keys are ECDSA P-256. Certificates are valid from 1975 to 4096 (rcgen's defaults): a
/// benchmark cluster's CA is meant to be thrown away, not rotated.
pub struct ClusterCerts {
    ca: CertificateDer<'static>,
    ca_key: PrivateKeyDer<'static>,
    nodes: Vec<NodeCerts>,
    client: ClientCerts,
    /// The same material as PEM, by file name, for [`ClusterCerts::write`].
    pem_files: Vec<PemFile>,
}

struct PemFile {
    name: String,
    contents: String,
    secret: bool,
}

impl ClusterCerts {
    /// Makes a fresh cluster CA, certificates for nodes `0..nodes` (SAN `node-<id>.paxbench`,
    /// serverAuth + clientAuth) and one client certificate (SAN `client.paxbench`, clientAuth).
    pub fn generate(nodes: u32) -> Result<Self, TlsError> {
        if nodes == 0 {
            return Err(TlsError::NoNodes);
        }
        let mut pem_files = Vec::new();
        let mut pem = |name: String, contents: String, secret: bool| {
            pem_files.push(PemFile {
                name,
                contents,
                secret,
            })
        };

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        // Every cluster CA gets its own subject (named after its key), so a certificate from
        // another paxbench cluster fails as "unknown issuer" rather than as a bad signature
        // from a CA that merely shares our name.
        let key_id: String = ca_params.key_identifier(&ca_key)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("paxbench cluster CA {key_id}"));
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "paxbench");
        // The CA signs leaves only; no intermediate can be slipped in under it.
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        pem("ca.pem".into(), ca_cert.pem(), false);
        pem("ca-key.pem".into(), ca_key.serialize_pem(), true);
        let ca = ca_cert.der().clone();
        let ca_key_der = PrivatePkcs8KeyDer::from(ca_key.serialize_der()).into();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut issue = |identity: Identity| -> Result<_, TlsError> {
            let name = identity.dns_name();
            let mut params = CertificateParams::new(vec![name.clone()])?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            params
                .distinguished_name
                .push(DnType::OrganizationName, "paxbench");
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = match identity {
                Identity::Node(_) => vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                Identity::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            };
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            let stem = identity.to_string();
            pem(format!("{stem}.pem"), cert.pem(), false);
            pem(format!("{stem}-key.pem"), key.serialize_pem(), true);
            let key_der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
            Ok((cert.der().clone(), key_der))
        };

        let mut node_certs = Vec::with_capacity(nodes as usize);
        for id in 0..nodes {
            let (cert, key) = issue(Identity::Node(NodeId(id)))?;
            node_certs.push(NodeCerts {
                id: NodeId(id),
                ca: ca.clone(),
                chain: vec![cert],
                key,
            });
        }
        let (cert, key) = issue(Identity::Client)?;
        let client = ClientCerts {
            identity: Identity::Client,
            ca: ca.clone(),
            chain: vec![cert],
            key,
        };
        Ok(ClusterCerts {
            ca,
            ca_key: ca_key_der,
            nodes: node_certs,
            client,
            pem_files,
        })
    }

    /// The cluster CA's certificate: the one trust anchor of every node and client.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The cluster CA's private key (PKCS#8), for issuing more certificates.
    pub fn ca_key(&self) -> &PrivateKeyDer<'static> {
        &self.ca_key
    }

    /// Every node's certificates, indexed by node id.
    pub fn nodes(&self) -> &[NodeCerts] {
        &self.nodes
    }

    /// One node's certificates.
    pub fn node(&self, id: NodeId) -> Option<&NodeCerts> {
        self.nodes.get(id.0 as usize)
    }

    /// The client certificate (`client.paxbench`).
    pub fn client(&self) -> &ClientCerts {
        &self.client
    }

    /// Writes the PEM files (`ca.pem`, `ca-key.pem`, `node-<id>.pem`, `node-<id>-key.pem`,
    /// `client.pem`, `client-key.pem`) and `cluster.toml` into `dir`, creating it if needed.
    ///
    /// `cluster.toml` puts node `id` on `127.0.0.1:<base_port + id>`; `data_dir` is
    /// `<dir>/data` as an absolute path, every other path is relative to the file's directory.
    /// Nothing is overwritten: if any of the files exists this fails with
    /// [`TlsError::AlreadyExists`] before writing anything. Keys are written with mode 0600.
    pub fn write(&self, dir: &Path, base_port: u16) -> Result<(), TlsError> {
        let last = self.nodes.len() as u32 - 1;
        if u32::from(base_port) + last > u32::from(u16::MAX) {
            let id = u32::from(u16::MAX) - u32::from(base_port) + 1;
            return Err(TlsError::PortOverflow { base_port, id });
        }
        let names = self.pem_files.iter().map(|f| f.name.as_str());
        for name in names.chain([CLUSTER_TOML]) {
            let path = dir.join(name);
            match path.try_exists() {
                Ok(false) => {}
                Ok(true) => return Err(TlsError::AlreadyExists { path }),
                Err(source) => return Err(TlsError::Write { path, source }),
            }
        }
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let abs_dir = dir.canonicalize().map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        for file in &self.pem_files {
            write_new(&dir.join(&file.name), file.contents.as_bytes(), file.secret)?;
        }
        let toml = self
            .cluster_toml(&abs_dir.join("data"), base_port)
            .map_err(|e| TlsError::Write {
                path: dir.join(CLUSTER_TOML),
                source: std::io::Error::other(e),
            })?;
        write_new(&dir.join(CLUSTER_TOML), toml.as_bytes(), false)
    }

    /// The `cluster.toml` text: a comment for people, then the serialized [`ClusterFile`].
    fn cluster_toml(&self, data_dir: &Path, base_port: u16) -> Result<String, toml::ser::Error> {
        let n = self.nodes.len();
        let header = format!(
            "# A paxbench cluster of {n} nodes on loopback, written by `paxbench certs`.\n\
             #\n\
             # For real hosts: change each node's `addr` (certificates name node ids, not\n\
             # addresses, so they stay valid), and copy ca.pem plus node-<id>.pem and\n\
             # node-<id>-key.pem to the host of node <id>, and client.pem / client-key.pem to\n\
             # the load generators. ca-key.pem only signs certificates; keep it off the nodes.\n\
             # Relative paths are resolved against this file's directory. A node whose entry\n\
             # says `role = \"learner\"` executes what the others choose but never votes.\n\n"
        );
        let file = ClusterFile {
            protocol: Protocol::MultiPaxos,
            durability: Durability::None,
            data_dir: Some(data_dir.to_path_buf()),
            wal_segment_bytes: None,
            tls: TlsFiles {
                ca: "ca.pem".into(),
                client_cert: Some("client.pem".into()),
                client_key: Some("client-key.pem".into()),
            },
            paxos: PaxosKnobs::default(),
            transport: TransportKnobs::default(),
            emulation: None,
            nodes: self
                .nodes
                .iter()
                .map(|node| {
                    let id = node.id.0;
                    // Checked by `write`: base_port + id <= 65535.
                    let port = u32::from(base_port) + id;
                    NodeFile {
                        id,
                        addr: format!("127.0.0.1:{port}"),
                        cert: format!("node-{id}.pem").into(),
                        key: format!("node-{id}-key.pem").into(),
                        role: NodeRole::Voter,
                    }
                })
                .collect(),
        };
        Ok(header + &toml::to_string(&file)?)
    }
}

impl fmt::Debug for ClusterCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCerts")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

const CLUSTER_TOML: &str = "cluster.toml";

/// Makes a cluster CA and certificates for `nodes` nodes and a client, and writes them with a
/// ready-to-use `cluster.toml` into `dir` (see [`ClusterCerts::write`]). This is
/// `paxbench certs --out DIR --nodes N [--base-port P]`.
pub fn write_cluster(dir: &Path, nodes: u32, base_port: u16) -> Result<ClusterCerts, TlsError> {
    let certs = ClusterCerts::generate(nodes)?;
    certs.write(dir, base_port)?;
    Ok(certs)
}

/// What one node needs for TLS: its id, the cluster CA it trusts, its certificate chain (leaf
/// first, naming `node-<id>.paxbench`) and its private key.
pub struct NodeCerts {
    id: NodeId,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl NodeCerts {
    /// Bundles DER material for node `id`. Checks that the leaf certificate names exactly
    /// `node-<id>.paxbench` and that the key belongs to it; whether the chain leads to `ca` is
    /// left to the peers' handshakes.
    pub fn new(
        id: NodeId,
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        check_pair(
            &chain,
            &key,
            Identity::Node(id),
            Path::new(MEMORY),
            Path::new(MEMORY),
        )?;
        Ok(NodeCerts { id, ca, chain, key })
    }

    /// Loads node `id`'s material from PEM files (as named in `cluster.toml`), with the same
    /// checks as [`NodeCerts::new`]; errors name the file at fault.
    pub fn load(id: NodeId, ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ca_der = load_certs(ca)?.swap_remove(0);
        let chain = load_certs(cert)?;
        let key_der = load_key(key)?;
        check_pair(&chain, &key_der, Identity::Node(id), cert, key)?;
        Ok(NodeCerts {
            id,
            ca: ca_der,
            chain,
            key: key_der,
        })
    }

    /// The node id its certificate proves.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster CA certificate it trusts.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// Its certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Its private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The same material used as a client (a node may act as a client of another node).
    pub fn as_client(&self) -> ClientCerts {
        ClientCerts {
            identity: Identity::Node(self.id),
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Clone for NodeCerts {
    fn clone(&self) -> Self {
        NodeCerts {
            id: self.id,
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for NodeCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCerts")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a client needs for TLS: the cluster CA it trusts, a certificate chain (leaf first) and
/// its key. Usually the `client.paxbench` certificate; any cluster certificate works, since any
/// identity may use the client ALPN.
pub struct ClientCerts {
    identity: Identity,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientCerts {
    /// Bundles DER material. Checks that the leaf names exactly one identity and that the key
    /// belongs to it.
    pub fn new(
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let identity = leaf_identity(&chain, Path::new(MEMORY))?;
        check_pair(&chain, &key, identity, Path::new(MEMORY), Path::new(MEMORY))?;
        Ok(ClientCerts {
            identity,
            ca,
            chain,
            key,
        })
    }

    /// Loads client material from PEM files (`[tls]` in `cluster.toml`); errors name the file.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ca_der = load_certs(ca)?.swap_remove(0);
        let chain = load_certs(cert)?;
        let key_der = load_key(key)?;
        let identity = leaf_identity(&chain, cert)?;
        check_pair(&chain, &key_der, identity, cert, key)?;
        Ok(ClientCerts {
            identity,
            ca: ca_der,
            chain,
            key: key_der,
        })
    }

    /// The identity its certificate proves.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The cluster CA certificate it trusts.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// Its certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Its private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }
}

impl Clone for ClientCerts {
    fn clone(&self) -> Self {
        ClientCerts {
            identity: self.identity,
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCerts")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// How errors name material that did not come from a file.
const MEMORY: &str = "<memory>";

fn leaf_identity(chain: &[CertificateDer<'_>], path: &Path) -> Result<Identity, TlsError> {
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: path.to_owned(),
    })?;
    identity_of(leaf, &path.display().to_string())
}

/// Checks that `chain`'s leaf proves `expected` and that `key` is its private key.
fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    expected: Identity,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let found = leaf_identity(chain, cert_path)?;
    if found != expected {
        return Err(TlsError::WrongIdentity {
            cert: cert_path.display().to_string(),
            expected,
            found,
        });
    }
    let mismatch = |source| TlsError::KeyMismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    };
    // Parses the key and compares its public half with the leaf's.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider)
        .map_err(mismatch)?;
    Ok(())
}

/// Every certificate in a PEM file, in order; at least one.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        source,
    })
}

/// Creates `path` (failing if it exists) and writes `contents`; secrets get mode 0600.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let error = |source| TlsError::Write {
        path: PathBuf::from(path),
        source,
    };
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => TlsError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => error(source),
    })?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_certificates_prove_their_identities() {
        let certs = ClusterCerts::generate(3).unwrap();
        assert_eq!(certs.nodes().len(), 3);
        for (i, node) in certs.nodes().iter().enumerate() {
            assert_eq!(node.id(), NodeId(i as u32));
            let identity = identity_of(&node.chain()[0], "t").unwrap();
            assert_eq!(identity, Identity::Node(NodeId(i as u32)));
        }
        assert_eq!(certs.client().identity(), Identity::Client);
        assert_eq!(certs.node(NodeId(1)).unwrap().id(), NodeId(1));
        assert!(certs.node(NodeId(3)).is_none());
    }

    #[test]
    fn node_certs_must_name_their_id_and_match_their_key() {
        let certs = ClusterCerts::generate(2).unwrap();
        let n0 = certs.node(NodeId(0)).unwrap();
        let n1 = certs.node(NodeId(1)).unwrap();
        let wrong_id = NodeCerts::new(
            NodeId(1),
            n0.ca().clone(),
            n0.chain().to_vec(),
            n0.key().clone_key(),
        );
        assert!(matches!(
            wrong_id,
            Err(TlsError::WrongIdentity {
                expected: Identity::Node(NodeId(1)),
                found: Identity::Node(NodeId(0)),
                ..
            })
        ));
        let wrong_key = NodeCerts::new(
            NodeId(0),
            n0.ca().clone(),
            n0.chain().to_vec(),
            n1.key().clone_key(),
        );
        assert!(
            matches!(wrong_key, Err(TlsError::KeyMismatch { .. })),
            "{wrong_key:?}"
        );
    }

    #[test]
    fn zero_nodes_is_an_error() {
        assert!(matches!(ClusterCerts::generate(0), Err(TlsError::NoNodes)));
    }
}
