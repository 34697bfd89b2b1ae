//! `paxbench kv --cluster cluster.toml put KEY VALUE | get KEY | del KEY | status | reconfigure
//! --add ID[=ADDR] --remove ID`: a small client for people and scripts. It follows NotLeader
//! redirects, prints the value or a clear error, and exits non-zero on failure.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use node::config::ClusterConfig;
use paxos::{NodeId, Op, Outcome};

/// Arguments of `paxbench kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    /// The cluster file; its `[tls] client_cert` and `client_key` are used.
    #[arg(long)]
    pub cluster: PathBuf,
    #[command(subcommand)]
    pub op: KvOp,
}

/// One operation.
#[derive(Debug, Subcommand)]
pub enum KvOp {
    /// Write a key.
    Put { key: String, value: String },
    /// Read a key (prints the value; exits 1 if the key does not exist).
    Get { key: String },
    /// Remove a key.
    Del { key: String },
    /// Print every node's role, ballot, leader and last executed slot.
    Status,
    /// Change the voting members (Multi-Paxos) through the log: the change governs from
    /// `window` slots after the slot it is chosen in. Added nodes must be in the cluster file
    /// (a running learner, or a node started empty, which catches up before it votes).
    Reconfigure {
        /// A node to make a voter: its id, optionally `=ADDR`, which must be the address the
        /// cluster file gives it. Repeatable.
        #[arg(long = "add", value_name = "ID[=ADDR]")]
        add: Vec<String>,
        /// A voter to remove (it keeps executing, as a learner). Repeatable.
        #[arg(long = "remove", value_name = "ID")]
        remove: Vec<u32>,
    },
}

/// `ID` or `ID=ADDR` of `--add`, checked against the cluster file: membership change picks
/// voters among the nodes the file lists (every node dials every other at start, so a node's
/// address cannot be new).
fn added_node(cluster: &ClusterConfig, arg: &str) -> anyhow::Result<NodeId> {
    let (id, addr) = match arg.split_once('=') {
        Some((id, addr)) => (id, Some(addr)),
        None => (arg, None),
    };
    let id: u32 = id
        .trim()
        .parse()
        .with_context(|| format!("--add {arg:?}: {id:?} is not a node id"))?;
    let Some(entry) = cluster.node(NodeId(id)) else {
        bail!(
            "--add {arg:?}: node {id} is not in {}; add it there (role = \"learner\"), start it, \
             then make it a voter",
            cluster.path.display()
        );
    };
    if let Some(addr) = addr {
        let addr: std::net::SocketAddr = addr.trim().parse().with_context(|| {
            format!("--add {arg:?}: {addr:?} is not an address like 127.0.0.1:7003")
        })?;
        if addr != entry.addr {
            bail!(
                "--add {arg:?}: {} gives node {id} the address {}, not {addr}",
                cluster.path.display(),
                entry.addr
            );
        }
    }
    Ok(NodeId(id))
}

pub fn run(args: &KvArgs) -> anyhow::Result<bool> {
    let cluster = ClusterConfig::load(&args.cluster)?;
    let certs = cluster.client_certs()?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
        // A fresh session per invocation (its id carries the time it began, its nonce the pid),
        // so request ids never collide with an earlier run.
        let session = node::client::new_session(u64::from(std::process::id()));
        let mut client = node::client::KvClient::new(endpoint, nodes, session);
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let op = match &args.op {
            KvOp::Put { key, value } => Op::Put {
                key: b(key),
                value: b(value),
            },
            KvOp::Get { key } => Op::Get { key: b(key) },
            KvOp::Del { key } => Op::Delete { key: b(key) },
            KvOp::Reconfigure { add, remove } => {
                if add.is_empty() && remove.is_empty() {
                    bail!("reconfigure needs at least one --add or --remove");
                }
                let add = add
                    .iter()
                    .map(|a| added_node(&cluster, a))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Op::Reconfigure {
                    add,
                    remove: remove.iter().copied().map(NodeId).collect(),
                }
            }
            KvOp::Status => {
                let statuses = client.statuses().await;
                if statuses.is_empty() {
                    bail!("no node of {} answered", cluster.path.display());
                }
                for s in &statuses {
                    let rtts: Vec<String> = s
                        .peer_rtt_us
                        .iter()
                        .map(|(p, us)| format!("{}:{:.1}ms", p.0, *us as f64 / 1000.0))
                        .collect();
                    // A Multi-Paxos node that votes in no configuration now: a learner of the
                    // file, a removed voter, a node that rejoined without its state.
                    let learner = !s.voting && s.protocol == paxos::Protocol::MultiPaxos;
                    println!(
                        "node {} {:?} {:?}{} ballot {} leader {} executed {} rtt {}",
                        s.node.0,
                        s.protocol,
                        s.role,
                        if learner { " (learner)" } else { "" },
                        s.ballot,
                        s.leader.map_or("-".to_string(), |l| l.0.to_string()),
                        s.executed.0,
                        if rtts.is_empty() {
                            "-".to_string()
                        } else {
                            rtts.join(",")
                        }
                    );
                }
                return Ok(statuses.len() == cluster.nodes.len());
            }
        };
        match client.call(op).await? {
            Outcome::Value(Some(v)) => {
                println!("{}", String::from_utf8_lossy(&v));
                Ok(true)
            }
            Outcome::Value(None) => {
                eprintln!("not found");
                Ok(false)
            }
            Outcome::Done => Ok(true),
            Outcome::Refused(why) => bail!("refused: {why}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    })
}
