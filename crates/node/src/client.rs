//! A client of a paxbench cluster: one connection per node (over whichever transport the
//! [`ClientEndpoint`] dials), one long-lived request stream per connection, requests pipelined
//! with request ids and answered in any order.
//! [`KvClient`] follows `NotLeader` redirects; it backs `paxbench kv` and the integration tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use paxos::{ClientId, Command, NodeId, Op, Outcome, RequestId, Role};
use thiserror::Error;
use wire::{ClientFrame, ClientResponse, Codec, Impairment, NodeStatus, ResponseFrame};

pub use crate::transport::ClientEndpoint;
use crate::transport::{Conn, RecvStream, SendStream};

/// What went wrong talking to a cluster.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Could not reach or handshake with a node.
    #[error("cannot connect to node {node} at {addr}: {why}")]
    Connect {
        /// The node.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The connection or stream broke.
    #[error("connection to node {node} lost: {why}")]
    Lost {
        /// The node.
        node: NodeId,
        /// Why.
        why: String,
    },
    /// The node sent something that does not decode.
    #[error("node {node} sent a bad frame: {source}")]
    Wire {
        /// The node.
        node: NodeId,
        /// The decode error.
        source: wire::WireError,
    },
    /// No node accepted the request in time.
    #[error("no leader answered after {attempts} attempts (last: {last})")]
    NoLeader {
        /// How many nodes were tried.
        attempts: usize,
        /// What the last one said.
        last: String,
    },
    /// The cluster did not become ready in time.
    #[error("cluster not ready after {after:?}; last statuses: {last}")]
    NotReady {
        /// How long it waited.
        after: Duration,
        /// What the nodes said last.
        last: String,
    },
    /// The request's reply is gone from the reply cache.
    #[error("request expired: it is older than the node's reply cache remembers")]
    Expired,
    /// The leader's queue was full: the request was not taken (retrying it is safe).
    #[error("the leader is overloaded (its queue of waiting commands is full); retry later")]
    Overloaded,
    /// An impairment was refused: by this client before sending it (a loss that is not a
    /// probability, a peer listed twice), or by the node (no `[emulation]` section, a peer
    /// that is not in its cluster, too long a delay). The node keeps the impairment it had.
    #[error("impairment of node {} refused: {why}", node.0)]
    Impair {
        /// The node.
        node: NodeId,
        /// Why, as the node or the check said it.
        why: String,
    },
    /// No node with this id in the cluster map.
    #[error("no node {} in the cluster", node.0)]
    UnknownNode {
        /// The id asked for.
        node: NodeId,
    },
}

/// A stream to one node.
pub struct Connection {
    node: NodeId,
    conn: Conn,
    send: SendStream,
    recv: RecvStream,
    buf: BytesMut,
    codec: Codec,
}

impl Connection {
    /// Connects to node `node` at `addr` with a client endpoint of the cluster (a
    /// [`ClientEndpoint`] or a quinn client endpoint, by reference or value).
    pub async fn open(
        endpoint: impl Into<ClientEndpoint>,
        node: NodeId,
        addr: SocketAddr,
    ) -> Result<Connection, ClientError> {
        let endpoint: ClientEndpoint = endpoint.into();
        let fail = |why: String| ClientError::Connect { node, addr, why };
        let conn = endpoint
            .connect_node(addr, node)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
        Ok(Connection {
            node,
            conn,
            send,
            recv,
            buf: BytesMut::new(),
            codec: Codec::default(),
        })
    }

    /// The node this connection talks to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Sends frames without waiting for answers (pipelining): all of them in one write.
    pub async fn send(&mut self, frames: &[ClientFrame]) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        for f in frames {
            self.codec
                .encode(f, &mut out)
                .map_err(|source| ClientError::Wire {
                    node: self.node,
                    source,
                })?;
        }
        let written = self.send.write_all(&out).await;
        written.map_err(|e| self.lost(e))
    }

    /// Sends frames already encoded with [`Connection::codec`] (any number of them, back to
    /// back) in one write, handing `bytes` to the transport without a copy where it can: what
    /// a client that batches many requests per write uses to skip re-encoding and copying.
    pub async fn send_encoded(&mut self, bytes: Bytes) -> Result<(), ClientError> {
        let written = self.send.write_chunk(bytes).await;
        written.map_err(|e| self.lost(e))
    }

    /// The codec this connection frames with (for [`Connection::send_encoded`]).
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The next frame already received, without waiting for more to arrive: `Ok(None)` when
    /// no whole frame is buffered. After [`Connection::recv`] returns, the rest of what the
    /// same read brought is here, so a client can take every reply of one packet at once.
    pub fn try_recv(&mut self) -> Result<Option<ResponseFrame>, ClientError> {
        self.codec
            .decode::<ResponseFrame>(&mut self.buf)
            .map_err(|source| ClientError::Wire {
                node: self.node,
                source,
            })
    }

    /// The next frame from the node.
    pub async fn recv(&mut self) -> Result<ResponseFrame, ClientError> {
        loop {
            match self.codec.decode::<ResponseFrame>(&mut self.buf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Wire {
                        node: self.node,
                        source,
                    })
                }
            }
            let read = self.recv.read_into(&mut self.buf).await;
            if !read.map_err(|e| self.lost(e))? {
                return Err(self.lost("stream finished"));
            }
        }
    }

    /// The connection broke: why, with the node's close reason when it closed it (a node that
    /// refuses a frame says what was wrong with it there).
    fn lost(&self, e: impl std::fmt::Display) -> ClientError {
        let why = match self.conn.close_reason() {
            Some(reason) => format!("{e}: {reason}"),
            None => e.to_string(),
        };
        ClientError::Lost {
            node: self.node,
            why,
        }
    }

    /// Asks for the node's status.
    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        self.send(&[ClientFrame::StatusRequest]).await?;
        loop {
            if let ResponseFrame::Status(s) = self.recv().await? {
                return Ok(s);
            }
        }
    }

    /// Replaces the node's whole impairment (see [`wire::Impairment`]; [`Impairment::none`]
    /// lifts every fault) and waits until the node applied it. The impairment is checked here
    /// first ([`Impairment::check`]), so that a bad one is refused with a
    /// [`ClientError::Impair`] rather than by closing the connection; the node's refusals
    /// (no `[emulation]` section, unknown peer, too long a delay) come back the same way.
    ///
    /// Each node impairs only what it sends: a partition needs an impairment on every node of
    /// both sides ([`crate::emulation::partition`]).
    ///
    /// It waits for the answer as long as the connection lives, like [`Connection::status`];
    /// [`KvClient::impair`] bounds the wait.
    pub async fn impair(&mut self, impairment: Impairment) -> Result<(), ClientError> {
        let node = self.node;
        impairment
            .check()
            .map_err(|why| ClientError::Impair { node, why })?;
        self.send(&[ClientFrame::Impair(impairment)]).await?;
        loop {
            if let ResponseFrame::Impaired(result) = self.recv().await? {
                return result.map_err(|why| ClientError::Impair { node, why });
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(0, b"done");
    }
}

/// A new client session numbered `nonce`, begun now by this machine's clock. Session ids carry
/// their creation time, which is what lets the nodes expire silent sessions safely (see
/// `paxos::KvState`); a session id made without it counts as created at time zero and its
/// commands are answered `Expired`.
pub fn new_session(nonce: u64) -> ClientId {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    ClientId::new(paxos::Time(now), nonce)
}

/// A key-value client of a whole cluster: sends each request to the node it believes leads and
/// follows `NotLeader` redirects (with the address the node supplies, or the cluster map).
pub struct KvClient {
    endpoint: ClientEndpoint,
    nodes: Vec<(NodeId, SocketAddr)>,
    conns: HashMap<NodeId, Connection>,
    target: usize,
    client: ClientId,
    next_request: u64,
    /// Give up after this many redirects or failed nodes per request.
    pub max_attempts: usize,
    /// How long a connection attempt may take. A QUIC handshake to a node that is down gets no
    /// answer at all, so without a bound it would wait for the idle timeout.
    pub connect_timeout: Duration,
    /// Nodes that just failed, and when: a `NotLeader` hint naming one is not followed for a
    /// second (followers keep naming a dead leader until their election timeout).
    failed: HashMap<NodeId, std::time::Instant>,
}

impl KvClient {
    /// A client with id `client` of the cluster whose nodes are `nodes`, dialing through
    /// `endpoint` (a [`ClientEndpoint`] or a quinn client endpoint).
    pub fn new(
        endpoint: impl Into<ClientEndpoint>,
        nodes: Vec<(NodeId, SocketAddr)>,
        client: ClientId,
    ) -> Self {
        KvClient {
            endpoint: endpoint.into(),
            nodes,
            conns: HashMap::new(),
            target: 0,
            client,
            next_request: 0,
            max_attempts: 40,
            connect_timeout: Duration::from_millis(500),
            failed: HashMap::new(),
        }
    }

    /// Runs one operation to completion, following redirects; returns its outcome.
    pub async fn call(&mut self, op: Op) -> Result<Outcome, ClientError> {
        self.next_request += 1;
        let cmd = Command {
            client: self.client,
            request: RequestId(self.next_request),
            op,
        };
        let mut last = String::from("nothing tried");
        for attempt in 0..self.max_attempts {
            let (node, addr) = self.nodes[self.target % self.nodes.len()];
            let outcome = match self.try_once(node, addr, &cmd).await {
                Ok(o) => o,
                Err(e) => {
                    last = e.to_string();
                    self.conns.remove(&node);
                    self.failed.insert(node, std::time::Instant::now());
                    self.target += 1;
                    tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1).min(10)))
                        .await;
                    continue;
                }
            };
            match outcome {
                Outcome::NotLeader { leader } => {
                    last = format!("node {node} is not the leader (it believes in {leader:?})");
                    let recently_failed = |l: &NodeId| {
                        self.failed
                            .get(l)
                            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
                    };
                    let hint = leader.filter(|l| !recently_failed(l));
                    match hint.and_then(|l| self.nodes.iter().position(|(n, _)| *n == l)) {
                        Some(i) if i != self.target % self.nodes.len() => self.target = i,
                        _ => {
                            // No leader known yet (an election is running): try another node soon.
                            self.target += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                Outcome::Expired => return Err(ClientError::Expired),
                Outcome::Overloaded => return Err(ClientError::Overloaded),
                other => return Ok(other),
            }
        }
        Err(ClientError::NoLeader {
            attempts: self.max_attempts,
            last,
        })
    }

    async fn try_once(
        &mut self,
        node: NodeId,
        addr: SocketAddr,
        cmd: &Command,
    ) -> Result<Outcome, ClientError> {
        self.connect(node, addr).await?;
        let conn = self.conns.get_mut(&node).expect("inserted above");
        conn.send(&[ClientFrame::Request(cmd.clone())]).await?;
        let wait = async {
            loop {
                if let ResponseFrame::Response(ClientResponse { reply, .. }) = conn.recv().await? {
                    if reply.client == cmd.client && reply.request == cmd.request {
                        return Ok(reply.outcome);
                    }
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), wait).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Lost {
                node,
                why: "no reply within 2 s".into(),
            }),
        }
    }

    /// Opens (or keeps) the connection to `node`, within `connect_timeout`.
    async fn connect(&mut self, node: NodeId, addr: SocketAddr) -> Result<(), ClientError> {
        if self.conns.contains_key(&node) {
            return Ok(());
        }
        let open = Connection::open(&self.endpoint, node, addr);
        let conn = tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| ClientError::Connect {
                node,
                addr,
                why: format!("no answer within {:?}", self.connect_timeout),
            })??;
        self.conns.insert(node, conn);
        Ok(())
    }

    /// Polls every node's status until `expected` nodes answer, each has a connection to every
    /// other one that answers (so the first measured requests do not wait for peer links to
    /// form), and, where the protocol has a leader, exactly one node leads and every node agrees
    /// on it. Returns that node (the single node for Unreplicated, `None` for Basic Paxos, where
    /// every node proposes).
    pub async fn wait_ready(
        &mut self,
        expected: usize,
        limit: Duration,
    ) -> Result<Option<NodeId>, ClientError> {
        let start = std::time::Instant::now();
        loop {
            let statuses = self.statuses().await;
            let answering: Vec<NodeId> = statuses.iter().map(|s| s.node).collect();
            let linked = statuses.iter().all(|s| {
                answering
                    .iter()
                    .all(|n| *n == s.node || s.peer_rtt_us.iter().any(|(p, _)| p == n))
            });
            if statuses.len() == expected && linked {
                if statuses
                    .iter()
                    .all(|s| s.protocol == paxos::Protocol::BasicPaxos)
                {
                    return Ok(None);
                }
                let leads = |r: paxos::Role| r == paxos::Role::Leader || r == paxos::Role::Single;
                let leaders: Vec<_> = statuses
                    .iter()
                    .filter(|s| leads(s.role))
                    .map(|s| s.node)
                    .collect();
                if let [l] = leaders[..] {
                    if statuses.iter().all(|s| s.leader == Some(l)) {
                        return Ok(Some(l));
                    }
                }
            }
            if start.elapsed() > limit {
                return Err(ClientError::NotReady {
                    after: limit,
                    last: format!("{statuses:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node that says it leads, with its ballot (the highest, should two say so). Compare
    /// two answers to learn whether an election ran in between: a leader re-elected keeps its
    /// id but not its ballot.
    pub async fn leadership(&mut self) -> Option<(NodeId, paxos::Ballot)> {
        self.statuses()
            .await
            .into_iter()
            .filter(|s| s.role == Role::Leader)
            .map(|s| (s.node, s.ballot))
            .max_by_key(|&(_, ballot)| ballot)
    }

    /// Replaces node `node`'s whole impairment, on a connection to that node itself, within
    /// `connect_timeout` to connect and 2 s for the answer; see [`Connection::impair`].
    pub async fn impair(
        &mut self,
        node: NodeId,
        impairment: Impairment,
    ) -> Result<(), ClientError> {
        let addr = self
            .nodes
            .iter()
            .find(|(n, _)| *n == node)
            .map(|&(_, a)| a)
            .ok_or(ClientError::UnknownNode { node })?;
        self.connect(node, addr).await?;
        let conn = self.conns.get_mut(&node).expect("inserted above");
        match tokio::time::timeout(Duration::from_secs(2), conn.impair(impairment)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                if !matches!(e, ClientError::Impair { .. }) {
                    self.conns.remove(&node);
                }
                Err(e)
            }
            Err(_) => {
                self.conns.remove(&node);
                Err(ClientError::Lost {
                    node,
                    why: "no answer to the impairment within 2 s".into(),
                })
            }
        }
    }

    /// The status of every node that answers.
    pub async fn statuses(&mut self) -> Vec<NodeStatus> {
        self.status_results()
            .await
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .collect()
    }

    /// Every node of the cluster with its status, or why it could not be had (no connection,
    /// a lost one, no answer within 1 s), in the cluster's order.
    pub async fn status_results(&mut self) -> Vec<(NodeId, Result<NodeStatus, String>)> {
        let mut out = Vec::new();
        for (node, addr) in self.nodes.clone() {
            if let Err(e) = self.connect(node, addr).await {
                out.push((node, Err(e.to_string())));
                continue;
            }
            let conn = self.conns.get_mut(&node).expect("inserted above");
            let got = match tokio::time::timeout(Duration::from_secs(1), conn.status()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no status within 1 s".to_string()),
            };
            if got.is_err() {
                self.conns.remove(&node);
            }
            out.push((node, got));
        }
        out
    }
}
