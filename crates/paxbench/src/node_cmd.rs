//! `paxbench node --cluster cluster.toml --id N`: runs one node until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use node::config::ClusterConfig;
use paxos::NodeId;

/// Arguments of `paxbench node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The cluster file (see `paxbench certs`, which writes one).
    #[arg(long)]
    pub cluster: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    pub id: u32,
}

pub fn run(args: &NodeArgs) -> anyhow::Result<bool> {
    let cluster = ClusterConfig::load(&args.cluster)?;
    // One thread by default: the core is one task anyway, and on a machine shared with other
    // nodes and a load generator a worker pool mostly adds cross-thread wake-ups (it doubled
    // a lightly loaded node's CPU time).
    let threads = cluster.transport.threads.unwrap_or(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    }
    .enable_all()
    .build()
    .context("starting the tokio runtime")?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            tracing::info!("shutting down");
            tx.send_replace(true);
        });
        let metrics = Arc::new(node::runtime::Metrics::default());
        node::serve::serve(&cluster, NodeId(args.id), metrics, rx)
            .await
            .with_context(|| format!("node {} of {}", args.id, args.cluster.display()))
    })?;
    Ok(true)
}
