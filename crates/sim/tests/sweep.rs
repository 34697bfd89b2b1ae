//! Sweeps seeds for every protocol and fault profile; every checker must pass on every seed.
//!
//! `SIM_SEEDS` sets the number of seeds per protocol x profile (default 300). The sweep also
//! asserts that the runs did real work under the faults they claim, so a simulator that
//! silently stopped injecting faults or issuing commands fails here too.

use paxos::Protocol;
use sim::{run_seeds, FaultProfile, SimConfig, SweepSummary};

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn sweep(protocol: Protocol, faults: FaultProfile) -> SweepSummary {
    let nodes = if protocol == Protocol::Unreplicated {
        1
    } else {
        3
    };
    let n = seeds();
    let base = SimConfig::new(protocol, nodes, 0, faults);
    // One thread per test: the test harness already runs the tests side by side.
    let summary = run_seeds(&base, 0..n, 1, |_| {});
    for f in &summary.failures {
        eprintln!("{f}");
    }
    assert!(
        summary.failures.is_empty(),
        "{} of {n} seeds failed for {protocol:?} under {faults}: {:?}",
        summary.failures.len(),
        summary
            .failures
            .iter()
            .map(|f| (f.seed, f.check.name()))
            .collect::<Vec<_>>()
    );
    assert_eq!(summary.passed, n);
    assert_eq!(
        summary.completed, summary.issued,
        "a passing run completes every command"
    );
    assert!(
        summary.issued >= 5 * n,
        "too little load: {} commands in {n} seeds",
        summary.issued
    );
    let (messages, dropped) = summary.messages;
    match faults {
        FaultProfile::None => assert_eq!((dropped, summary.crashes), (0, 0)),
        FaultProfile::Lossy | FaultProfile::Partitions if protocol != Protocol::Unreplicated => {
            assert!(
                dropped * 100 >= messages,
                "{dropped} of {messages} messages dropped"
            )
        }
        FaultProfile::Crashes | FaultProfile::All if protocol != Protocol::Unreplicated => {
            assert!(
                summary.crashes >= n / 2,
                "only {} crashes in {n} seeds",
                summary.crashes
            )
        }
        _ => {}
    }
    summary
}

macro_rules! sweeps {
    ($($name:ident: $protocol:expr, $faults:expr;)*) => {
        $(
            #[test]
            fn $name() {
                sweep($protocol, $faults);
            }
        )*
    };
}

sweeps! {
    multi_paxos_none: Protocol::MultiPaxos, FaultProfile::None;
    multi_paxos_lossy: Protocol::MultiPaxos, FaultProfile::Lossy;
    multi_paxos_partitions: Protocol::MultiPaxos, FaultProfile::Partitions;
    multi_paxos_crashes: Protocol::MultiPaxos, FaultProfile::Crashes;
    multi_paxos_all: Protocol::MultiPaxos, FaultProfile::All;
    basic_paxos_none: Protocol::BasicPaxos, FaultProfile::None;
    basic_paxos_lossy: Protocol::BasicPaxos, FaultProfile::Lossy;
    basic_paxos_partitions: Protocol::BasicPaxos, FaultProfile::Partitions;
    basic_paxos_crashes: Protocol::BasicPaxos, FaultProfile::Crashes;
    basic_paxos_all: Protocol::BasicPaxos, FaultProfile::All;
    unreplicated_none: Protocol::Unreplicated, FaultProfile::None;
    unreplicated_lossy: Protocol::Unreplicated, FaultProfile::Lossy;
    unreplicated_partitions: Protocol::Unreplicated, FaultProfile::Partitions;
    unreplicated_crashes: Protocol::Unreplicated, FaultProfile::Crashes;
    unreplicated_all: Protocol::Unreplicated, FaultProfile::All;
}

#[test]
fn five_node_multi_paxos_all_faults() {
    let n = (seeds() / 4).max(1);
    let base = SimConfig::new(Protocol::MultiPaxos, 5, 0, FaultProfile::All);
    let summary = run_seeds(&base, 0..n, 1, |_| {});
    for f in &summary.failures {
        eprintln!("{f}");
    }
    assert!(
        summary.failures.is_empty(),
        "{} five-node seeds failed",
        summary.failures.len()
    );
}
