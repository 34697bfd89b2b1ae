//! A running cluster as the fault schedule and the timeline see it: status polled from every
//! node at once with a short timeout (a paused or killed node must not hold the others up), a
//! background watch that notes every leader change during a point, and [`FaultHost`] for the
//! launcher's [`Cluster`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use node::client::Connection;
use node::config::ClusterConfig;
use paxos::{Ballot, NodeId, Role};
use wire::NodeStatus;

use crate::faults::{note_leader, FaultHost, LeaderSeen, LinkFault, Signal, RECONFIGURE_TIMEOUT};
use crate::launcher::Cluster;

/// How long a node has to answer a status request before it counts as not answering.
const STATUS_TIMEOUT: Duration = Duration::from_millis(250);

/// How often the leader watch asks.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Status requests to every node of a cluster, concurrently, over connections kept open.
pub struct StatusPoller {
    endpoint: node::ClientEndpoint,
    nodes: Vec<(NodeId, SocketAddr)>,
    conns: Vec<Option<Connection>>,
}

impl StatusPoller {
    /// A poller for the cluster in `file` (a client file: it holds the client certificate).
    /// Must be called inside a tokio runtime.
    pub fn new(file: &Path) -> anyhow::Result<StatusPoller> {
        let cluster = ClusterConfig::load(file)?;
        let certs = cluster.client_certs()?;
        let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
        let conns = nodes.iter().map(|_| None).collect();
        Ok(StatusPoller {
            endpoint,
            nodes,
            conns,
        })
    }

    /// The status of every node that answers within [`STATUS_TIMEOUT`], by node id.
    pub async fn statuses(&mut self) -> Vec<NodeStatus> {
        let mut set = tokio::task::JoinSet::new();
        for (i, &(node, addr)) in self.nodes.iter().enumerate() {
            let conn = self.conns[i].take();
            let endpoint = self.endpoint.clone();
            set.spawn(async move {
                let asked = tokio::time::timeout(STATUS_TIMEOUT, async move {
                    let mut c = match conn {
                        Some(c) => c,
                        None => Connection::open(&endpoint, node, addr).await?,
                    };
                    let status = c.status().await?;
                    Ok::<_, node::client::ClientError>((c, status))
                })
                .await;
                (i, asked)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            // A connection that timed out is dropped: a late answer must not be read as the
            // answer to the next request.
            if let Ok((i, Ok(Ok((conn, status))))) = done {
                self.conns[i] = Some(conn);
                out.push(status);
            }
        }
        out.sort_by_key(|s| s.node);
        out
    }

    /// The node that says it leads at the highest ballot, if any.
    pub async fn leadership(&mut self) -> Option<(NodeId, Ballot)> {
        leader_of(&self.statuses().await)
    }

    /// Replaces the link faults of node `node` (see [`FaultHost::impair_links`]).
    pub async fn impair(
        &mut self,
        node: NodeId,
        links: &[(NodeId, LinkFault)],
    ) -> anyhow::Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|(n, _)| *n == node)
            .ok_or_else(|| anyhow::anyhow!("node {} is not in the cluster", node.0))?;
        let addr = self.nodes[i].1;
        let impairment = wire::Impairment {
            links: links
                .iter()
                .map(|(peer, f)| {
                    (
                        *peer,
                        wire::LinkImpairment {
                            blocked: f.blocked,
                            extra_delay_us: f.delay.as_micros() as u64,
                            loss: f.loss,
                        },
                    )
                })
                .collect(),
        };
        let conn = self.conns[i].take();
        let endpoint = self.endpoint.clone();
        let asked = tokio::time::timeout(IMPAIR_TIMEOUT, async move {
            let mut c = match conn {
                Some(c) => c,
                None => Connection::open(&endpoint, node, addr).await?,
            };
            let applied = c.impair(impairment).await;
            Ok::<_, node::client::ClientError>((c, applied))
        })
        .await;
        match asked {
            Ok(Ok((c, applied))) => {
                self.conns[i] = Some(c);
                Ok(applied?)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!("no answer within {IMPAIR_TIMEOUT:?}"),
        }
    }
}

impl StatusPoller {
    /// Has the cluster choose a membership change: `add` becomes a voter, `remove` stops being
    /// one. When it was chosen, or why not (refused, no answer within
    /// [`RECONFIGURE_TIMEOUT`]).
    pub async fn reconfigure(
        &self,
        add: Option<NodeId>,
        remove: Option<NodeId>,
    ) -> anyhow::Result<SystemTime> {
        // A session of its own (its id carries the time it began), so its request ids never
        // meet a generator's.
        let session = node::client::new_session(u64::from(std::process::id()));
        let mut client =
            node::client::KvClient::new(self.endpoint.clone(), self.nodes.clone(), session);
        let op = paxos::Op::Reconfigure {
            add: add.into_iter().collect(),
            remove: remove.into_iter().collect(),
        };
        match tokio::time::timeout(RECONFIGURE_TIMEOUT, client.call(op)).await {
            Ok(Ok(paxos::Outcome::Done)) => Ok(SystemTime::now()),
            Ok(Ok(paxos::Outcome::Refused(why))) => anyhow::bail!("refused: {why}"),
            Ok(Ok(other)) => anyhow::bail!("unexpected answer: {other:?}"),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!("not chosen within {RECONFIGURE_TIMEOUT:?}"),
        }
    }
}

/// How long a node (perhaps just restarted) has to take a link fault.
const IMPAIR_TIMEOUT: Duration = Duration::from_secs(2);

/// The node that says it leads at the highest ballot among `statuses`.
pub fn leader_of(statuses: &[NodeStatus]) -> Option<(NodeId, Ballot)> {
    statuses
        .iter()
        .filter(|s| s.role == Role::Leader)
        .map(|s| (s.node, s.ballot))
        .max_by_key(|&(_, ballot)| ballot)
}

/// One status poll's executed slots: the leader's and each learner's, for their lag.
#[derive(Clone, Debug)]
pub struct LagSample {
    /// When the poll was made.
    pub at: SystemTime,
    /// The leader's next slot to execute.
    pub leader_executed: u64,
    /// Each learner that answered, with its next slot to execute.
    pub learners: Vec<(NodeId, u64)>,
}

/// Notes every leader change of a cluster, and the learners' executed slots beside the
/// leader's, on a thread of its own, until dropped.
pub struct LeaderWatch {
    seen: Arc<Mutex<Vec<LeaderSeen>>>,
    lags: Arc<Mutex<Vec<LagSample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaderWatch {
    /// Starts watching the cluster in `file`, whose learners are `learners`.
    pub fn start(file: &Path, learners: Vec<NodeId>) -> anyhow::Result<LeaderWatch> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let lags = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut poller = rt.block_on(async { StatusPoller::new(file) })?;
        let thread = {
            let (seen, lags, stop) = (seen.clone(), lags.clone(), stop.clone());
            std::thread::Builder::new()
                .name("leader-watch".into())
                .spawn(move || {
                    rt.block_on(async {
                        while !stop.load(Ordering::SeqCst) {
                            let next = tokio::time::Instant::now() + WATCH_EVERY;
                            let now = SystemTime::now();
                            let statuses = poller.statuses().await;
                            let leader = leader_of(&statuses);
                            note_leader(
                                &mut seen.lock().unwrap_or_else(|e| e.into_inner()),
                                now,
                                leader,
                            );
                            let leads = statuses
                                .iter()
                                .find(|s| Some(s.node) == leader.map(|l| l.0));
                            if let (Some(l), false) = (leads, learners.is_empty()) {
                                lags.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(LagSample {
                                        at: now,
                                        leader_executed: l.executed.0,
                                        learners: statuses
                                            .iter()
                                            .filter(|s| learners.contains(&s.node))
                                            .map(|s| (s.node, s.executed.0))
                                            .collect(),
                                    });
                            }
                            tokio::time::sleep_until(next).await;
                        }
                    })
                })?
        };
        Ok(LeaderWatch {
            seen,
            lags,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching; every leader seen, in order, and the lag samples.
    pub fn finish(mut self) -> (Vec<LeaderSeen>, Vec<LagSample>) {
        self.halt();
        fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
            std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
        }
        (take(&self.seen), take(&self.lags))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The launcher's cluster, with a poller on this thread's runtime, as the fault schedule's host.
pub struct LiveCluster<'a> {
    /// The cluster.
    pub cluster: &'a mut Cluster,
    /// A runtime of this thread.
    pub rt: &'a tokio::runtime::Runtime,
    /// Its status connections.
    pub poller: StatusPoller,
}

impl FaultHost for LiveCluster<'_> {
    fn leadership(&mut self) -> Option<(NodeId, Ballot)> {
        self.rt.block_on(self.poller.leadership())
    }

    fn signal(&mut self, node: NodeId, signal: Signal) -> anyhow::Result<()> {
        self.cluster.signal(node, signal)
    }

    fn restart(&mut self, node: NodeId) -> anyhow::Result<()> {
        self.cluster.restart(node)
    }

    fn impair_links(&mut self, node: NodeId, links: &[(NodeId, LinkFault)]) -> anyhow::Result<()> {
        self.rt.block_on(self.poller.impair(node, links))
    }

    fn reconfigure(
        &mut self,
        add: Option<NodeId>,
        remove: Option<NodeId>,
    ) -> anyhow::Result<SystemTime> {
        self.rt.block_on(self.poller.reconfigure(add, remove))
    }
}
