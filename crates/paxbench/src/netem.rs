//! `[network] emulation = "netem"`: the experiment's links applied with `tc netem` on the node
//! hosts, for hosts whose kernel has it (`paxbench hosts check` says which do; a run that asks
//! for netem refuses to start on a host without it).
//!
//! Only peer traffic is shaped. On each node host's interface towards its peers, a `prio`
//! root qdisc sends everything to an unshaped band by default; each link gets a band of its
//! own with a `netem` leaf (delay, jitter, loss, rate, and a queue limit sized for the rate
//! and the delay), and a `u32` filter that matches the node's own UDP source port and the
//! peer's address and port. So ssh, the controller and load generators are never delayed.
//! `tc -s qdisc` is saved before the run and before teardown, to show what was sent and
//! dropped; the root qdisc is always removed afterwards.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use paxbench::hosts::Host;
use paxbench::shell::quote;
use paxbench::ssh::Ssh;

use crate::experiment::NetworkSpec;
use node::emulation::Link;

/// Most links one host can shape: a `prio` qdisc has at most 16 bands, and band 1 is the
/// unshaped default.
pub const MAX_LINKS_PER_HOST: usize = 15;

/// One shaped link as tc sees it: from the node's port to a peer's address and port.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The sending node's UDP port on this host.
    pub src_port: u16,
    /// The peer node.
    pub dst: SocketAddr,
    /// Delay, jitter, loss, rate.
    pub link: Link,
}

/// The rules of every node host: node i runs on `placed[i]` and listens on `base_port + i`;
/// each directed link of `net` between them becomes a rule on the sender's host.
pub fn rules_for(
    net: &NetworkSpec,
    placed: &[&Host],
    base_port: u16,
    needs_sudo: &HashMap<String, bool>,
) -> Vec<(Host, Vec<Rule>, bool)> {
    let regions: Vec<String> = placed
        .iter()
        .map(|h| h.region.clone().unwrap_or_default())
        .collect();
    let mut by_host: Vec<(Host, Vec<Rule>, bool)> = Vec::new();
    for link in net.links(&regions) {
        let from = placed[link.from as usize];
        let to = placed[link.to as usize];
        let rule = Rule {
            src_port: base_port + link.from as u16,
            dst: SocketAddr::new(to.addr, base_port + link.to as u16),
            link,
        };
        match by_host.iter_mut().find(|(h, _, _)| h.name == from.name) {
            Some((_, rules, _)) => rules.push(rule),
            None => by_host.push((
                from.clone(),
                vec![rule],
                needs_sudo.get(&from.name).copied().unwrap_or(true),
            )),
        }
    }
    by_host
}

/// The shell commands that install `rules` on `dev` (run as root).
pub fn setup_script(dev: &str, rules: &[Rule]) -> anyhow::Result<String> {
    if rules.len() > MAX_LINKS_PER_HOST {
        bail!(
            "{} links on one host: tc's prio qdisc shapes at most {MAX_LINKS_PER_HOST}",
            rules.len()
        );
    }
    let dev = quote(dev);
    let bands = rules.len() + 1;
    // Every priority maps to band 1 (unshaped): only the filters below pick the others.
    let mut s = format!(
        "set -e\ntc qdisc add dev {dev} root handle 1: prio bands {bands} priomap{}\n",
        " 0".repeat(16)
    );
    for (i, r) in rules.iter().enumerate() {
        let band = i + 2;
        let IpAddr::V4(dst) = r.dst.ip() else {
            bail!("netem emulation matches IPv4 peers only; {} is IPv6", r.dst);
        };
        let l = &r.link;
        // delay ± jitter, uniform: netem's default distribution, as in the node's emulation.
        let mut netem = format!("delay {}us", l.delay_us);
        if l.jitter_us > 0 {
            netem += &format!(" {}us", l.jitter_us);
        }
        if l.loss > 0.0 {
            netem += &format!(" loss {:.4}%", l.loss * 100.0);
        }
        if let Some(rate) = l.rate_bytes_per_s {
            netem += &format!(" rate {}bit", rate * 8);
        }
        netem += &format!(" limit {}", queue_limit(l));
        s += &format!(
            "tc qdisc add dev {dev} parent 1:{band} handle {h}: netem {netem}\n\
             tc filter add dev {dev} parent 1: protocol ip prio 1 u32 \
             match ip dst {dst}/32 match ip dport {dport} 0xffff match ip sport {sport} 0xffff \
             flowid 1:{band}\n",
            h = 10 + i,
            dport = r.dst.port(),
            sport = r.src_port,
        );
    }
    Ok(s)
}

/// The command that removes everything [`setup_script`] installed on `dev`.
pub fn teardown_script(dev: &str) -> String {
    format!("tc qdisc del dev {} root", quote(dev))
}

/// Packets a link's queue holds: what the delay keeps in flight at the rate (or at 1 Gbit/s
/// of 1200-byte packets when unlimited), twice over, and never below netem's default 1000.
fn queue_limit(l: &Link) -> u64 {
    let bytes_per_s = l.rate_bytes_per_s.unwrap_or(125_000_000);
    let in_flight = bytes_per_s as f64 * (l.delay_us + l.jitter_us) as f64 / 1e6 / 1200.0;
    ((in_flight * 2.0) as u64).max(1000)
}

/// netem installed on the node hosts; [`Installed::remove`] (or dropping it) removes it.
pub struct Installed {
    ssh: Ssh,
    /// Each host, its interface, and whether commands need `sudo -n`.
    on: Vec<(Host, String, bool)>,
    /// `tc -s qdisc show` of each host before and after, for the results.
    pub counters: Vec<(String, String)>,
}

impl Installed {
    /// Installs `rules_by_host` (host, its rules, whether it needs sudo).
    pub fn install(ssh: &Ssh, rules_by_host: Vec<(Host, Vec<Rule>, bool)>) -> anyhow::Result<Self> {
        let mut installed = Installed {
            ssh: ssh.clone(),
            on: Vec::new(),
            counters: Vec::new(),
        };
        for (host, rules, sudo) in rules_by_host {
            let Some(first) = rules.first() else { continue };
            let dev = route_device(ssh, &host, first.dst.ip())?;
            let script = setup_script(&dev, &rules)?;
            run_root(ssh, &host, sudo, &script)
                .with_context(|| format!("installing netem on {} ({dev})", host.name))?;
            // Recorded before anything else can fail, so that Drop removes it.
            installed.on.push((host.clone(), dev.clone(), sudo));
            let before = counters(ssh, &host, sudo, &dev)?;
            installed
                .counters
                .push((format!("{}-before", host.name), before));
        }
        Ok(installed)
    }

    /// Saves the counters and removes the qdiscs from every host.
    pub fn remove(mut self) -> anyhow::Result<Vec<(String, String)>> {
        let mut first_error = None;
        for (host, dev, sudo) in std::mem::take(&mut self.on) {
            match counters(&self.ssh, &host, sudo, &dev) {
                Ok(after) => self.counters.push((format!("{}-after", host.name), after)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            if let Err(e) = run_root(&self.ssh, &host, sudo, &teardown_script(&dev)) {
                first_error.get_or_insert(e.context(format!("removing netem from {}", host.name)));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut self.counters)),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (host, dev, sudo) in &self.on {
            let _ = run_root(&self.ssh, host, *sudo, &teardown_script(dev));
        }
    }
}

/// The interface a host routes `to` through.
fn route_device(ssh: &Ssh, host: &Host, to: IpAddr) -> anyhow::Result<String> {
    let out = ssh.probe(host, &format!("ip -o route get {to}"))?.check()?;
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "dev")
        .map(|w| w[1].to_string())
        .with_context(|| format!("{}: no route to {to}: {}", host.name, out.stdout.trim()))
}

/// `tc -s qdisc show` of `dev`: what each qdisc sent and dropped so far.
fn counters(ssh: &Ssh, host: &Host, sudo: bool, dev: &str) -> anyhow::Result<String> {
    run_root(
        ssh,
        host,
        sudo,
        &format!("tc -s qdisc show dev {}", quote(dev)),
    )
}

fn run_root(ssh: &Ssh, host: &Host, sudo: bool, script: &str) -> anyhow::Result<String> {
    let cmd = if sudo {
        format!("sudo -n sh -c {}", quote(script))
    } else {
        format!("sh -c {}", quote(script))
    };
    Ok(ssh.run(host, &cmd)?.check()?.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(delay_us: u64, loss: f64, rate: Option<u64>) -> Link {
        Link {
            from: 0,
            to: 1,
            delay_us,
            jitter_us: 0,
            loss,
            rate_bytes_per_s: rate,
        }
    }

    #[test]
    fn a_script_shapes_only_the_node_ports() {
        let rules = vec![
            Rule {
                src_port: 7000,
                dst: "198.18.0.12:7001".parse().unwrap(),
                link: link(40_000, 0.0, None),
            },
            Rule {
                src_port: 7000,
                dst: "198.18.0.13:7002".parse().unwrap(),
                link: link(75_000, 0.01, Some(12_500_000)),
            },
        ];
        let s = setup_script("eth0", &rules).unwrap();
        assert!(
            s.contains("root handle 1: prio bands 3 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"),
            "{s}"
        );
        assert!(
            s.contains("parent 1:2 handle 10: netem delay 40000us limit"),
            "{s}"
        );
        assert!(
            s.contains("netem delay 75000us loss 1.0000% rate 100000000bit limit"),
            "{s}"
        );
        assert!(s.contains("match ip dst 198.18.0.13/32 match ip dport 7002 0xffff match ip sport 7000 0xffff flowid 1:3"), "{s}");
        assert_eq!(teardown_script("eth0"), "tc qdisc del dev eth0 root");
        // 12.5 MB/s for 75 ms is ~780 packets in flight: the limit covers twice that.
        assert_eq!(queue_limit(&link(75_000, 0.0, Some(12_500_000))), 1562);
        assert_eq!(queue_limit(&link(1_000, 0.0, Some(1_000))), 1000);
        let too_many = vec![rules[0].clone(); MAX_LINKS_PER_HOST + 1];
        assert!(setup_script("eth0", &too_many).is_err());
        let v6 = vec![Rule {
            dst: "[::1]:7001".parse().unwrap(),
            ..rules[0].clone()
        }];
        assert!(setup_script("eth0", &v6)
            .unwrap_err()
            .to_string()
            .contains("IPv4"));
    }
}
