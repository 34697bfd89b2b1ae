//! Running many seeds, on several threads, with results reported in seed order.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::simulation::{run, Failure, RunReport, SimConfig};

/// What a sweep over a range of seeds found.
#[derive(Clone, Debug, Default)]
pub struct SweepSummary {
    /// Seeds whose every checker passed.
    pub passed: u64,
    /// The failures, in seed order.
    pub failures: Vec<Failure>,
    /// Simulation steps over all seeds.
    pub steps: u64,
    /// Commands clients issued, over all seeds.
    pub issued: u64,
    /// Commands that completed, over all seeds.
    pub completed: u64,
    /// Slots chosen, over all seeds.
    pub slots_chosen: u64,
    /// Node crashes, over all seeds.
    pub crashes: u64,
    /// Leaders killed mid-batch, over all seeds.
    pub mid_batch_kills: u64,
    /// Snapshots taken and installed from a peer, over all seeds (counted on the nodes' last
    /// incarnations).
    pub snapshots: (u64, u64),
    /// Messages between nodes, and how many of them were dropped, over all seeds.
    pub messages: (u64, u64),
    /// Membership changes answered `Done` and `Refused`, over all seeds.
    pub reconfigs: (u64, u64),
    /// Wall-clock time the sweep took (for reporting seeds per second only; it never affects a run).
    pub elapsed: Duration,
}

impl SweepSummary {
    /// Seeds run.
    pub fn seeds(&self) -> u64 {
        self.passed + self.failures.len() as u64
    }

    /// Seeds per wall-clock second.
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `base` with every seed in `seeds` on `jobs` threads. `each` sees every report in seed
/// order (whatever the thread count), as soon as all earlier seeds are done.
pub fn run_seeds(
    base: &SimConfig,
    seeds: Range<u64>,
    jobs: usize,
    mut each: impl FnMut(&RunReport),
) -> SweepSummary {
    let started = Instant::now();
    let mut summary = SweepSummary::default();
    let next = AtomicU64::new(seeds.start);
    let jobs = jobs.clamp(1, 256);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<RunReport>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                if tx.send(run(&base.with_seed(seed))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut waiting: BTreeMap<u64, RunReport> = BTreeMap::new();
        let mut expected = seeds.start;
        for report in rx {
            waiting.insert(report.seed, report);
            while let Some(report) = waiting.remove(&expected) {
                each(&report);
                let stats = &report.stats;
                summary.steps += stats.steps;
                summary.issued += stats.issued;
                summary.completed += stats.completed;
                summary.slots_chosen += stats.slots_chosen;
                summary.crashes += stats.crashes;
                summary.mid_batch_kills += stats.mid_batch_kills;
                for n in &stats.node_stats {
                    summary.snapshots.0 += n.snapshots_taken;
                    summary.snapshots.1 += n.snapshots_installed;
                }
                summary.messages.0 += stats.messages;
                summary.messages.1 += stats.dropped;
                summary.reconfigs.0 += stats.reconfigs_done;
                summary.reconfigs.1 += stats.reconfigs_refused;
                match report.failure {
                    Some(f) => summary.failures.push(f),
                    None => summary.passed += 1,
                }
                expected += 1;
            }
        }
    });
    summary.elapsed = started.elapsed();
    summary
}

/// Threads to use by default: what the machine offers.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
