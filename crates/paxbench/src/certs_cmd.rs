//! `paxbench certs --out DIR --nodes N [--base-port P]`: a cluster CA, one certificate per node
//! (its id bound into the certificate), a client certificate, and a ready-to-use
//! `DIR/cluster.toml` for N nodes on loopback that a person can edit for real hosts.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `paxbench certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Where to write the PEM files and cluster.toml.
    #[arg(long)]
    pub out: PathBuf,
    /// How many nodes.
    #[arg(long)]
    pub nodes: u32,
    /// Node i listens on 127.0.0.1:(base-port + i).
    #[arg(long, default_value_t = node::DEFAULT_BASE_PORT)]
    pub base_port: u16,
}

pub fn run(args: &CertsArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    node::write_cluster(&args.out, args.nodes, args.base_port)?;
    println!(
        "wrote a cluster CA, {} node certificates, a client certificate and {}",
        args.nodes,
        args.out.join("cluster.toml").display()
    );
    Ok(true)
}
