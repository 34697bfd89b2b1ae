//! Prints the fingerprint of a sweep ([`sim::fingerprint`]) per protocol and fault profile, and
//! per deliberately broken variant, to compare the core's behaviour before and after a change
//! that must not alter it (same seeds, same fingerprints).
//!
//! `cargo run -p sim --example fingerprint -- [SEEDS] [BUG_SEEDS] [PER_SEED_FILE]`: `SEEDS`
//! seeds (default 200) per protocol x profile, a quarter of them for five Multi-Paxos nodes
//! under all faults, and `BUG_SEEDS` (default 20) per broken variant of the self-test. With a
//! file, every seed's own fingerprint goes there too, to find the first seed that differs.

use std::fmt::Write as _;

use paxos::Protocol;
use sim::fingerprint::Fingerprint;
use sim::selftest::BUG_CASES;
use sim::{run_seeds, FaultProfile, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: u64 = args.first().map_or(200, |s| s.parse().expect("SEEDS"));
    let bug_seeds: u64 = args.get(1).map_or(20, |s| s.parse().expect("BUG_SEEDS"));
    let mut per_seed = String::new();
    let mut total = Fingerprint::default();
    let mut sweep = |label: String, base: SimConfig, n: u64| {
        let mut f = Fingerprint::default();
        let summary = run_seeds(&base, 0..n, 1, |r| {
            f.add(&(r.seed, r.fingerprint));
            writeln!(per_seed, "{label} seed {}: {:016x}", r.seed, r.fingerprint).unwrap();
        });
        println!(
            "{label:<40} {n:>4} seeds {:016x}  ({} failed, {} steps)",
            f.value(),
            summary.failures.len(),
            summary.steps
        );
        total.add(&f.value());
    };
    let profiles = [
        FaultProfile::None,
        FaultProfile::Lossy,
        FaultProfile::Partitions,
        FaultProfile::Crashes,
        FaultProfile::All,
    ];
    for protocol in [
        Protocol::MultiPaxos,
        Protocol::BasicPaxos,
        Protocol::Unreplicated,
    ] {
        let nodes = if protocol == Protocol::Unreplicated {
            1
        } else {
            3
        };
        for faults in profiles {
            let base = SimConfig::new(protocol, nodes, 0, faults);
            sweep(format!("{} {faults}", protocol.name()), base, seeds);
        }
    }
    let five = SimConfig::new(Protocol::MultiPaxos, 5, 0, FaultProfile::All);
    sweep("multi-paxos all, 5 nodes".into(), five, (seeds / 4).max(1));
    for case in BUG_CASES {
        let mut base = SimConfig::new(case.protocol, 3, 0, case.faults);
        base.bug = Some(case.bug);
        let label = format!("bug {:?} {}", case.bug, case.faults);
        sweep(label, base, bug_seeds);
    }
    println!("total {:016x}", total.value());
    if let Some(path) = args.get(2) {
        std::fs::write(path, per_seed).expect("write the per-seed file");
    }
}
