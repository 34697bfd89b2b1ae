//! The contention scenario: three Basic Paxos proposers, each with a client pinned to it, all
//! issuing at the same instant, so every slot is fought over. Run with randomized exponential
//! backoff (a fixed base, or one in measured round trips) and with [`BackoffMode::None`] to show
//! what backoff buys.

use std::time::Duration;

use paxos::{Backoff, BackoffMode, BackoffSpan, Protocol, Time};

use crate::checker::Check;
use crate::faults::FaultProfile;
use crate::simulation::{run, Failure, SimConfig, Workload};

/// What one contention run measured.
#[derive(Clone, Debug)]
pub struct ContentionReport {
    /// The backoff.
    pub backoff: Backoff,
    /// Commands issued.
    pub commands: u64,
    /// Commands that completed.
    pub completed: u64,
    /// Virtual time when the last command completed.
    pub virtual_time: Time,
    /// Phase-1 rounds started, summed over the proposers.
    pub phase1_rounds: u64,
    /// Preemptions, summed over the proposers.
    pub preemptions: u64,
    /// Slots chosen.
    pub slots_chosen: u64,
    /// Phase-1 rounds beyond one per chosen slot: work lost to contention.
    pub wasted_rounds: u64,
    /// A safety failure, if any (a liveness failure just means not everything completed).
    pub failure: Option<Failure>,
}

impl ContentionReport {
    /// Whether every command completed.
    pub fn all_completed(&self) -> bool {
        self.completed == self.commands
    }
}

/// The backoff the scenario used before bases could be given in round trips: `mode` with a
/// 1 ms base and a 100 ms cap (the core's defaults).
pub fn fixed_backoff(mode: BackoffMode) -> Backoff {
    Backoff {
        mode,
        base: Duration::from_millis(1).into(),
        cap: Duration::from_millis(100).into(),
    }
}

/// `mode` with a base of two measured phase-1 round trips and a cap of 64.
pub fn rtt_backoff(mode: BackoffMode) -> Backoff {
    Backoff {
        mode,
        base: BackoffSpan::Rtts { milli: 2000 },
        cap: BackoffSpan::Rtts { milli: 64_000 },
    }
}

/// Runs the scenario with `commands` commands per proposer.
pub fn contention(seed: u64, backoff: Backoff, commands: usize) -> ContentionReport {
    let mut cfg = SimConfig::new(Protocol::BasicPaxos, 3, seed, FaultProfile::None);
    cfg.vary_knobs = false;
    cfg.backoff = Some(backoff);
    cfg.workload = Workload {
        clients: 3,
        commands_per_client: commands,
        max_outstanding: 1,
        keys: 2,
        think: Some(Duration::ZERO),
        client_timeout: Duration::from_secs(1),
        pinned: true,
    };
    cfg.heal_after = Duration::from_secs(20);
    cfg.liveness_bound = Duration::from_secs(10);
    let report = run(&cfg);
    let phase1_rounds: u64 = report
        .stats
        .node_stats
        .iter()
        .map(|s| s.phase1_rounds)
        .sum();
    let preemptions = report.stats.node_stats.iter().map(|s| s.preemptions).sum();
    ContentionReport {
        backoff,
        commands: report.stats.issued,
        completed: report.stats.completed,
        virtual_time: report.stats.last_completion,
        phase1_rounds,
        preemptions,
        slots_chosen: report.stats.slots_chosen,
        wasted_rounds: phase1_rounds.saturating_sub(report.stats.slots_chosen),
        failure: report.failure.filter(|f| f.check != Check::Liveness),
    }
}
