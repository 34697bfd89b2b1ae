//! `paxbench sim`: sweeps seeds through the deterministic simulator and prints every failure
//! (seed, checker, short trace), then `N passed, M failed`.

use std::ops::Range;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use paxos::{BackoffMode, Bug, Protocol};
use sim::selftest::{self_test_case, BUG_CASES};
use sim::{
    contention, default_jobs, fixed_backoff, rtt_backoff, run_seeds, FaultProfile, SimConfig,
};

/// `println!` that stops quietly (exit status 2) when stdout is gone, e.g. piped into `head`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(2);
        }
    }};
}

/// `print!` with the same handling of a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(2);
        }
    }};
}

/// Arguments of `paxbench sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// The protocol to simulate.
    #[arg(long, value_enum, default_value_t = ProtocolArg::MultiPaxos)]
    protocol: ProtocolArg,
    /// Cluster size (default 3; the unreplicated baseline always has 1).
    #[arg(long)]
    nodes: Option<usize>,
    /// Seeds to run, as `A..B` (B excluded). A failing seed replays with `--seeds S..S+1`.
    #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Which faults to inject before the heal.
    #[arg(long, value_enum, default_value_t = FaultsArg::All)]
    faults: FaultsArg,
    /// Check that the checkers catch every deliberately broken protocol variant.
    #[arg(long)]
    self_test: bool,
    /// Seeds the self-test tries per variant before it gives up.
    #[arg(long, default_value_t = 5000)]
    self_test_seeds: u64,
    /// Run the Basic Paxos contention scenario (backoff against no backoff) instead of a sweep,
    /// with the first seed of `--seeds`.
    #[arg(long)]
    contention: bool,
    /// Simulated clients per run.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Commands each client issues (at most; it stops at the heal).
    #[arg(long, default_value_t = 20)]
    commands: usize,
    /// Virtual milliseconds of faults (and new commands) before the network heals.
    #[arg(long, default_value_t = 2000)]
    heal_after_ms: u64,
    /// Events of each failure's trace to print.
    #[arg(long, default_value_t = 20)]
    trace: usize,
    /// Threads (default: the machine's parallelism). Results do not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Run a deliberately broken variant (to replay a self-test catch).
    #[arg(long, value_enum, hide = true)]
    bug: Option<BugArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    MultiPaxos,
    BasicPaxos,
    Unreplicated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FaultsArg {
    None,
    Lossy,
    Partitions,
    Crashes,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BugArg {
    ForgetPromiseOnRestart,
    AcceptLowerBallot,
    SkipRecovery,
    CommitWithoutQuorum,
    ResurrectExpiredSessions,
    LocalReads,
    AckBeforeDurable,
    LeaseWithoutDriftMargin,
    ReadsAfterLeaseExpiry,
    PromiseInsideLease,
    LearnerVotes,
    ReconfigNextSlot,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::MultiPaxos => Protocol::MultiPaxos,
            ProtocolArg::BasicPaxos => Protocol::BasicPaxos,
            ProtocolArg::Unreplicated => Protocol::Unreplicated,
        }
    }
}

impl From<FaultsArg> for FaultProfile {
    fn from(f: FaultsArg) -> Self {
        match f {
            FaultsArg::None => FaultProfile::None,
            FaultsArg::Lossy => FaultProfile::Lossy,
            FaultsArg::Partitions => FaultProfile::Partitions,
            FaultsArg::Crashes => FaultProfile::Crashes,
            FaultsArg::All => FaultProfile::All,
        }
    }
}

impl From<BugArg> for Bug {
    fn from(b: BugArg) -> Self {
        match b {
            BugArg::ForgetPromiseOnRestart => Bug::ForgetPromiseOnRestart,
            BugArg::AcceptLowerBallot => Bug::AcceptLowerBallot,
            BugArg::SkipRecovery => Bug::SkipRecovery,
            BugArg::CommitWithoutQuorum => Bug::CommitWithoutQuorum,
            BugArg::ResurrectExpiredSessions => Bug::ResurrectExpiredSessions,
            BugArg::LocalReads => Bug::LocalReads,
            BugArg::AckBeforeDurable => Bug::AckBeforeDurable,
            BugArg::LeaseWithoutDriftMargin => Bug::LeaseWithoutDriftMargin,
            BugArg::ReadsAfterLeaseExpiry => Bug::ReadsAfterLeaseExpiry,
            BugArg::PromiseInsideLease => Bug::PromiseInsideLease,
            BugArg::LearnerVotes => Bug::LearnerVotes,
            BugArg::ReconfigNextSlot => Bug::ReconfigNextSlot,
        }
    }
}

fn bug_flag(bug: Bug) -> &'static str {
    match bug {
        Bug::ForgetPromiseOnRestart => "forget-promise-on-restart",
        Bug::AcceptLowerBallot => "accept-lower-ballot",
        Bug::SkipRecovery => "skip-recovery",
        Bug::CommitWithoutQuorum => "commit-without-quorum",
        Bug::ResurrectExpiredSessions => "resurrect-expired-sessions",
        Bug::LocalReads => "local-reads",
        Bug::AckBeforeDurable => "ack-before-durable",
        Bug::LeaseWithoutDriftMargin => "lease-without-drift-margin",
        Bug::ReadsAfterLeaseExpiry => "reads-after-lease-expiry",
        Bug::PromiseInsideLease => "promise-inside-lease",
        Bug::LearnerVotes => "learner-votes",
        Bug::ReconfigNextSlot => "reconfig-next-slot",
    }
}

/// Parses `A..B` into a seed range.
fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {s:?}"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|e| format!("bad start {a:?}: {e}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|e| format!("bad end {b:?}: {e}"))?;
    if b <= a {
        return Err(format!("empty seed range {a}..{b}"));
    }
    Ok(a..b)
}

/// Runs the subcommand; `Ok(false)` means some seed (or self-test variant) failed.
pub fn run(args: &SimArgs) -> Result<bool> {
    let protocol = Protocol::from(args.protocol);
    let nodes = match (protocol, args.nodes) {
        (Protocol::Unreplicated, Some(n)) if n != 1 => {
            bail!("the unreplicated baseline runs on exactly 1 node, not {n}")
        }
        (Protocol::Unreplicated, _) => 1,
        (_, Some(n)) if !(1..=64).contains(&n) => {
            bail!("--nodes must be between 1 and 64, not {n}")
        }
        (_, n) => n.unwrap_or(3),
    };
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    if args.self_test {
        return Ok(self_test(nodes, args.self_test_seeds, jobs));
    }
    if args.contention {
        return contention_report(args.seeds.start);
    }
    let mut base = SimConfig::new(protocol, nodes, 0, args.faults.into());
    base.trace_len = args.trace;
    base.workload.clients = args.clients.max(1);
    base.workload.commands_per_client = args.commands.max(1);
    base.heal_after = std::time::Duration::from_millis(args.heal_after_ms.max(1));
    base.bug = args.bug.map(Bug::from);
    let summary = run_seeds(&base, args.seeds.clone(), jobs, |report| {
        if let Some(f) = &report.failure {
            out!("{f}");
        }
    });
    outln!(
        "{} seeds of {} on {} nodes, faults {}: {:.1} seeds/s, {:.0} steps/s ({} threads)",
        summary.seeds(),
        protocol.name(),
        nodes,
        base.faults,
        summary.seeds_per_second(),
        summary.steps as f64 / summary.elapsed.as_secs_f64().max(1e-9),
        jobs
    );
    outln!(
        "work: {} commands issued, {} completed, {} slots chosen, {} node messages ({} dropped), \
         {} crashes ({} leaders killed mid-batch), {} snapshots taken, {} installed, \
         {} membership changes ({} refused)",
        summary.issued,
        summary.completed,
        summary.slots_chosen,
        summary.messages.0,
        summary.messages.1,
        summary.crashes,
        summary.mid_batch_kills,
        summary.snapshots.0,
        summary.snapshots.1,
        summary.reconfigs.0,
        summary.reconfigs.1
    );
    outln!(
        "{} passed, {} failed",
        summary.passed,
        summary.failures.len()
    );
    Ok(summary.failures.is_empty())
}

fn self_test(nodes: usize, max_seeds: u64, jobs: usize) -> bool {
    let mut caught = 0;
    for case in BUG_CASES {
        let result = self_test_case(case, nodes, max_seeds, jobs);
        let name = format!(
            "{:?} ({}, faults {})",
            case.bug,
            case.protocol.name(),
            case.faults
        );
        match &result.caught {
            Some(f) => {
                caught += 1;
                outln!(
                    "caught {name}: {} at seed {} (lowest failing seed; searched 0..{})",
                    f.check, f.seed, result.seeds_tried
                );
                outln!("  {}", f.detail);
                outln!(
                    "  replay: paxbench sim --protocol {} --nodes {nodes} --faults {} --bug {} --seeds {}..{}",
                    case.protocol.name(),
                    case.faults,
                    bug_flag(case.bug),
                    f.seed,
                    f.seed + 1
                );
            }
            None => outln!(
                "MISSED {name}: no safety checker failed in {} seeds ({} runs failed only liveness, stuck or panic)",
                result.seeds_tried, result.other_failures
            ),
        }
    }
    let missed = BUG_CASES.len() - caught;
    outln!("{caught} passed, {missed} failed");
    missed == 0
}

fn contention_report(seed: u64) -> Result<bool> {
    let with = contention(seed, fixed_backoff(BackoffMode::Full), 10);
    let without = contention(seed, fixed_backoff(BackoffMode::None), 10);
    let in_rtts = contention(seed, rtt_backoff(BackoffMode::Full), 10);
    for r in [&with, &in_rtts, &without] {
        let b = r.backoff;
        outln!(
            "backoff {} base {} cap {}: {}/{} commands completed, last at {} virtual; {} phase-1 rounds for {} slots ({} wasted), {} preemptions",
            b.mode, b.base, b.cap, r.completed, r.commands, r.virtual_time, r.phase1_rounds, r.slots_chosen, r.wasted_rounds, r.preemptions
        );
        if let Some(f) = &r.failure {
            out!("{f}");
        }
    }
    let ok = with.all_completed()
        && in_rtts.all_completed()
        && [&with, &in_rtts, &without]
            .iter()
            .all(|r| r.failure.is_none());
    let failed = usize::from(!ok);
    outln!("{} passed, {} failed", 1 - failed, failed);
    Ok(ok)
}
