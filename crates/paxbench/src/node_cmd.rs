//! `paxbench node --cluster cluster.toml --id N`: runs one node until SIGINT or SIGTERM.
//!
//! Started over ssh, a node's stdin is the controller's lifeline: with `--exit-on-stdin-eof`
//! the node also shuts down when its stdin ends or fails (the controller died, or its ssh
//! session did), so no node outlives the run that started it; with `--lifeline-timeout SECS`
//! also when stdin stays silent that long (the controller sends a heartbeat, so this catches a
//! dropped link that sshd has not noticed). With
//! `--remove-on-lifeline-loss DIR` it then also removes DIR, its working directory, so a
//! killed controller leaves no remote directories behind either; a SIGTERM (an orderly stop,
//! after which the controller fetches the logs) leaves DIR alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
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
    /// Also shut down (as on SIGTERM) when stdin reaches end of file or fails: stdin is the
    /// lifeline of a controller that started this node over ssh.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// With --exit-on-stdin-eof: also shut down when nothing at all arrived on stdin for
    /// this many seconds. A controller that sends a heartbeat (a newline every second or so)
    /// thus stops the node even when the link dropped and sshd never noticed.
    #[arg(long, value_name = "SECS", requires = "exit_on_stdin_eof")]
    pub lifeline_timeout: Option<f64>,
    /// After a shutdown caused by the lifeline (stdin ended, failed or fell silent; not after
    /// SIGTERM or SIGINT), remove this directory and everything in it: the node's working
    /// directory.
    #[arg(long, value_name = "DIR", requires = "exit_on_stdin_eof")]
    pub remove_on_lifeline_loss: Option<PathBuf>,
}

/// Why the node stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Signal,
    Lifeline,
}

pub fn run(args: &NodeArgs) -> anyhow::Result<bool> {
    let cluster = ClusterConfig::load(&args.cluster)?;
    // Refuse a directory that must never be removed before starting anything.
    let remove = args
        .remove_on_lifeline_loss
        .as_deref()
        .map(removable)
        .transpose()?;
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
    let silence = match args.lifeline_timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e6 => Some(Duration::from_secs_f64(t)),
        Some(t) => bail!("--lifeline-timeout {t}: give a number of seconds above 0"),
    };
    let lifeline = args.exit_on_stdin_eof.then(|| watch_stdin(silence));
    let reason = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (reason_tx, reason_rx) = tokio::sync::oneshot::channel();
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
            let lost = async {
                match lifeline {
                    Some(rx) => {
                        let _ = rx.await;
                    }
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = tokio::signal::ctrl_c() => Reason::Signal,
                _ = term => Reason::Signal,
                _ = lost => Reason::Lifeline,
            };
            match reason {
                Reason::Lifeline => {
                    tracing::info!("the controller's lifeline (stdin) is lost: shutting down")
                }
                Reason::Signal => tracing::info!("shutting down"),
            }
            let _ = reason_tx.send(reason);
            tx.send_replace(true);
        });
        let metrics = Arc::new(node::runtime::Metrics::default());
        let mut reason_rx = reason_rx;
        node::serve::serve(&cluster, NodeId(args.id), metrics, rx)
            .await
            .with_context(|| format!("node {} of {}", args.id, args.cluster.display()))?;
        // The reason was sent before the shutdown that ended serve().
        anyhow::Ok(reason_rx.try_recv().ok())
    })?;
    if let (Some(dir), Some(Reason::Lifeline)) = (remove, reason) {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing {} after the lifeline closed", dir.display()))?;
        tracing::info!(dir = %dir.display(), "removed the working directory");
    }
    Ok(true)
}

/// Resolves once stdin reaches end of file or fails, or (with `silence`) once nothing arrived
/// on it for that long; whatever arrives is ignored. Reads fd 0 directly, with poll(2), so no
/// buffer hides what has arrived.
pub fn watch_stdin(silence: Option<Duration>) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("lifeline".into())
        .spawn(move || {
            let why = loop {
                if let Some(limit) = silence {
                    let mut fd = libc::pollfd {
                        fd: 0,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
                    // SAFETY: one valid pollfd, for the duration of the call.
                    match unsafe { libc::poll(&mut fd, 1, ms) } {
                        0 => break format!("nothing on stdin for {limit:?}"),
                        r if r < 0
                            && std::io::Error::last_os_error().kind()
                                == std::io::ErrorKind::Interrupted =>
                        {
                            continue
                        }
                        r if r < 0 => break format!("poll: {}", std::io::Error::last_os_error()),
                        _ => {}
                    }
                }
                let mut buf = [0u8; 512];
                // SAFETY: reads at most buf.len() bytes into buf.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n == 0 {
                    break "end of stdin".to_string();
                }
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    break format!("reading stdin: {e}");
                }
            };
            tracing::info!(why, "lifeline lost");
            let _ = tx.send(());
        })
        .expect("spawning the lifeline thread");
    rx
}

/// The directory, canonical, if it may be removed: it exists, and it is neither `/` nor the
/// home directory nor one of its ancestors.
pub fn removable(dir: &Path) -> anyhow::Result<PathBuf> {
    let canon = dir
        .canonicalize()
        .with_context(|| format!("--remove-on-lifeline-loss {}", dir.display()))?;
    if !canon.is_dir() {
        bail!(
            "--remove-on-lifeline-loss {}: not a directory",
            dir.display()
        );
    }
    let home = std::env::var_os("HOME").and_then(|h| Path::new(&h).canonicalize().ok());
    if canon.parent().is_none() || home.is_some_and(|h| h.starts_with(&canon)) {
        bail!(
            "--remove-on-lifeline-loss {}: refusing to remove / or a directory holding the home directory",
            dir.display()
        );
    }
    Ok(canon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_home_are_never_removable() {
        assert!(removable(Path::new("/")).is_err());
        if let Some(home) = std::env::var_os("HOME") {
            assert!(removable(Path::new(&home)).is_err());
        }
        assert!(removable(Path::new("/nonexistent/px")).is_err());
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            removable(d.path()).unwrap(),
            d.path().canonicalize().unwrap()
        );
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(removable(&f).is_err());
    }
}
