//! Availability figures of a point with faults, computed from its [`Timeline`].
//!
//! Every figure is at bucket resolution: the timeline only says how many operations ended in
//! each bucket, not when inside it.

use serde::{Deserialize, Serialize};

use crate::headline::Stat;
use crate::point::FaultRecord;
use crate::timeline::{MarkerKind, Timeline, TimelineRow};

/// When one fault was in force, ms from the start of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// When the fault was applied.
    pub start_ms: f64,
    /// When it was undone; `None` when it never was within the window.
    pub end_ms: Option<f64>,
}

/// The windows of the faults in `faults` that were applied, in the order given.
pub fn fault_windows(faults: &[FaultRecord]) -> Vec<FaultWindow> {
    faults.iter().filter_map(FaultRecord::window).collect()
}

/// How a point's service fared under its faults. All figures concern the *first* fault (the
/// earliest start), except `longest_gap_ms`, which covers the whole timeline; `faults` says
/// how many there were, so a figure disturbed by a second fault can be recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// How many faults were applied during the point.
    pub faults: usize,
    /// Start of the first fault, ms from the start of the measured window.
    pub fault_start_ms: f64,
    /// The longest stretch of the timeline with no completion (ms), counted in whole buckets:
    /// consecutive buckets with no completions, and time with no bucket at all, from the
    /// timeline's first bucket to the end of its last. The true longest time between two
    /// completions is at least this and less than this plus two bucket widths. `None` when the
    /// timeline has no buckets.
    #[serde(default)]
    pub longest_gap_ms: Option<u64>,
    /// Where that longest gap starts (ms from the start of the window); `None` if there is no
    /// gap.
    #[serde(default)]
    pub longest_gap_start_ms: Option<u64>,
    /// Recovery through a new leader: from the first fault's start to the start of the first
    /// bucket that begins at or after the first leader change marked at or after the fault
    /// (and before the next fault starts), and has a completion (ms). Within one bucket width
    /// of the first completion after that leader change. `None` when no such leader change was
    /// marked (as for Basic Paxos, which has no leader) or nothing completed after it.
    #[serde(default)]
    pub to_new_leader_ms: Option<f64>,
    /// Recovery of throughput, defined for every protocol: from the first fault's start to the
    /// start of the first bucket beginning at or after it whose completion rate (per second)
    /// is at least half the median rate of the buckets that end at or before the fault (ms).
    /// Near 0 when the fault did not halve throughput. `None` when no bucket ends before the
    /// fault, their median is 0, or throughput never came back to half.
    #[serde(default)]
    pub to_half_throughput_ms: Option<f64>,
    /// p99 of the second before the first fault (µs): the highest bucket p99 among buckets
    /// that end within (fault − 1 s, fault]. An upper bound on the p99 of that second's
    /// completions taken together (buckets hold p99s, not histograms). `None` when no such
    /// bucket had a completion.
    #[serde(default)]
    pub p99_before_us: Option<u64>,
    /// p99 of the second after the first fault (µs), likewise: buckets that start within
    /// [fault, fault + 1 s). Covers completions only: timeouts are in `failed_during_fault`.
    #[serde(default)]
    pub p99_after_us: Option<u64>,
    /// Errors and timeouts of the requests meant to be sent in the buckets that overlap
    /// [fault start, `failed_window_end_ms`) (failures are filed under their intended send
    /// time, so a request the fault left unanswered counts however late its timeout expired).
    pub failed_during_fault: u64,
    /// End of the window of `failed_during_fault` (ms from the start of the measured window):
    /// the recovery — fault start plus `to_new_leader_ms` if known, else plus
    /// `to_half_throughput_ms` — else the first fault's end plus 1 s, else the end of the
    /// timeline.
    pub failed_window_end_ms: f64,
}

impl Availability {
    /// The figures of `timeline` for the faults in `faults` (see each field for its
    /// definition), or `None` when there was no fault.
    pub fn compute(timeline: &Timeline, faults: &[FaultWindow]) -> Option<Availability> {
        let first = faults
            .iter()
            .filter(|f| f.start_ms.is_finite())
            .min_by(|a, b| a.start_ms.total_cmp(&b.start_ms))?;
        let fault = first.start_ms;
        let mut rows: Vec<&TimelineRow> = timeline.rows.iter().collect();
        rows.sort_by_key(|r| r.t_ms);
        let start = |r: &TimelineRow| r.t_ms as f64;
        let end = |r: &TimelineRow| r.end_ms() as f64;

        let gap = longest_gap(&rows);

        let leader_change = first_leader_change(timeline, fault, faults.iter().map(|f| f.start_ms));
        let to_new_leader_ms = leader_change.and_then(|l| {
            rows.iter()
                .find(|r| start(r) >= l && r.completions > 0)
                .map(|r| start(r) - fault)
        });

        let before: Vec<f64> = rows
            .iter()
            .filter(|r| r.width_ms > 0 && end(r) <= fault)
            .map(|r| r.completions_per_s())
            .collect();
        let to_half_throughput_ms = Stat::of(&before)
            .map(|s| s.median)
            .filter(|m| *m > 0.0)
            .and_then(|median| {
                rows.iter()
                    .find(|r| {
                        r.width_ms > 0 && start(r) >= fault && r.completions_per_s() >= median / 2.0
                    })
                    .map(|r| start(r) - fault)
            });

        let max_p99 = |keep: &dyn Fn(&TimelineRow) -> bool| {
            rows.iter()
                .filter(|r| keep(r))
                .filter_map(|r| r.p99_us)
                .max()
        };
        let p99_before_us = max_p99(&|r| end(r) <= fault && end(r) > fault - 1000.0);
        let p99_after_us = max_p99(&|r| start(r) >= fault && start(r) < fault + 1000.0);

        let timeline_end = rows.iter().map(|r| end(r)).fold(fault, f64::max);
        let failed_window_end_ms = match to_new_leader_ms.or(to_half_throughput_ms) {
            Some(recovery) => fault + recovery,
            None => first.end_ms.map_or(timeline_end, |e| e + 1000.0),
        };
        let failed_during_fault = rows
            .iter()
            .filter(|r| start(r) < failed_window_end_ms && end(r) > fault)
            .map(|r| r.errors + r.timeouts)
            .sum();

        Some(Availability {
            faults: faults.len(),
            fault_start_ms: fault,
            longest_gap_ms: gap.map(|(len, _)| len),
            longest_gap_start_ms: gap.filter(|(len, _)| *len > 0).map(|(_, at)| at),
            to_new_leader_ms,
            to_half_throughput_ms,
            p99_before_us,
            p99_after_us,
            failed_during_fault,
            failed_window_end_ms,
        })
    }
}

/// How long after a membership change was sent its figures look: through the change being
/// chosen, the removed leader stepping down and the new voters electing one.
pub const CHANGE_SPAN_MS: f64 = 2000.0;

/// Throughput through one membership change (an applied `reconfigure` fault), from the point's
/// timeline. Rates are completions over whole 100 ms buckets inside the stated span, so at
/// bucket resolution; `None` where no bucket lies wholly inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFigures {
    /// What changed: `remove node 1, add node 3`.
    pub change: String,
    /// When it was sent, ms from the start of the measured window.
    pub sent_ms: f64,
    /// From sent to chosen (acknowledged), ms.
    pub chosen_after_ms: Option<f64>,
    /// Completions per second over the second before it was sent.
    pub before_ops: Option<f64>,
    /// Completions per second over the [`CHANGE_SPAN_MS`] from when it was sent.
    pub through_ops: Option<f64>,
    /// The lowest completion rate of one bucket in that span (per second).
    pub lowest_ops: Option<f64>,
    /// The longest run of buckets with no completion in that span, ms.
    pub gap_ms: Option<u64>,
    /// From sent to the first leader change marked after it (before the next fault), ms:
    /// a change that removed the leader has one.
    pub to_new_leader_ms: Option<f64>,
}

/// The figures of every applied `reconfigure` in `faults`, in order.
pub fn membership_changes(timeline: &Timeline, faults: &[FaultRecord]) -> Vec<ChangeFigures> {
    let mut rows: Vec<&TimelineRow> = timeline.rows.iter().filter(|r| r.width_ms > 0).collect();
    rows.sort_by_key(|r| r.t_ms);
    let inside = |a: f64, b: f64| -> Vec<&TimelineRow> {
        rows.iter()
            .filter(|r| r.t_ms as f64 >= a && r.end_ms() as f64 <= b)
            .copied()
            .collect()
    };
    let rate = |rs: &[&TimelineRow]| {
        let ms: u64 = rs.iter().map(|r| r.width_ms).sum();
        (ms > 0).then(|| rs.iter().map(|r| r.completions).sum::<u64>() as f64 * 1000.0 / ms as f64)
    };
    let starts: Vec<f64> = faults
        .iter()
        .filter(|f| f.applied)
        .map(|f| f.at_s * 1000.0)
        .collect();
    faults
        .iter()
        .filter(|f| f.applied && f.action == "reconfigure")
        .map(|f| {
            let sent = f.at_s * 1000.0;
            let span = inside(sent, sent + CHANGE_SPAN_MS);
            ChangeFigures {
                change: f.whom(),
                sent_ms: sent,
                chosen_after_ms: f.end_s.map(|e| e * 1000.0 - sent),
                before_ops: rate(&inside(sent - 1000.0, sent)),
                through_ops: rate(&span),
                lowest_ops: span
                    .iter()
                    .map(|r| r.completions_per_s())
                    .min_by(f64::total_cmp),
                gap_ms: longest_gap(&span).map(|(len, _)| len),
                to_new_leader_ms: first_leader_change(timeline, sent, starts.iter().copied())
                    .map(|l| l - sent),
            }
        })
        .collect()
}

/// When (ms) the first leader change marked at or after the fault that started at `fault` was,
/// among the faults starting at `starts`: a leader change after the next fault started is that
/// fault's.
fn first_leader_change(
    timeline: &Timeline,
    fault: f64,
    starts: impl Iterator<Item = f64>,
) -> Option<f64> {
    let next_fault = starts.filter(|t| *t > fault).fold(f64::INFINITY, f64::min);
    timeline
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::LeaderChange && m.t_ms >= fault && m.t_ms < next_fault)
        .map(|m| m.t_ms)
        .min_by(f64::total_cmp)
}

/// The longest time (ms) with no completion between the first row's start and the last row's
/// end, and where it starts; `None` without rows. `rows` are in time order.
fn longest_gap(rows: &[&TimelineRow]) -> Option<(u64, u64)> {
    let first = rows.first()?;
    let mut best = (0, first.t_ms);
    // End of the last bucket with a completion so far (the timeline's start before any).
    let mut served_until = first.t_ms;
    for r in rows.iter().filter(|r| r.completions > 0) {
        let gap = r.t_ms.saturating_sub(served_until);
        if gap > best.0 {
            best = (gap, served_until);
        }
        served_until = served_until.max(r.end_ms());
    }
    let end = rows.iter().map(|r| r.end_ms()).max().unwrap_or(first.t_ms);
    let gap = end.saturating_sub(served_until);
    if gap > best.0 {
        best = (gap, served_until);
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Marker;

    /// 100 ms buckets over [0, 6 s), 100 completions each with p50 500 µs and p99 1 ms.
    fn steady() -> Vec<TimelineRow> {
        (0..60)
            .map(|i| TimelineRow {
                t_ms: i * 100,
                width_ms: 100,
                completions: 100,
                errors: 0,
                timeouts: 0,
                p50_us: Some(500),
                p99_us: Some(1000),
            })
            .collect()
    }

    fn at(rows: &mut [TimelineRow], t_ms: u64) -> &mut TimelineRow {
        rows.iter_mut().find(|r| r.t_ms == t_ms).unwrap()
    }

    fn silence(rows: &mut [TimelineRow], from: u64, to: u64) {
        for r in rows.iter_mut().filter(|r| r.t_ms >= from && r.t_ms < to) {
            r.completions = 0;
            r.p50_us = None;
            r.p99_us = None;
        }
    }

    fn marker(t_ms: f64, kind: MarkerKind, label: &str) -> Marker {
        Marker {
            t_ms,
            kind,
            label: label.into(),
        }
    }

    fn kill(start_ms: f64, end_ms: Option<f64>) -> FaultWindow {
        FaultWindow { start_ms, end_ms }
    }

    /// The leader is killed at 2 s and restarted at 4 s; a new leader is seen at 2.5 s and
    /// the first completion after it comes at 2.7 s.
    fn leader_kill() -> Timeline {
        let mut rows = steady();
        silence(&mut rows, 2000, 2700);
        at(&mut rows, 2700).completions = 30;
        at(&mut rows, 2700).p99_us = Some(80_000);
        at(&mut rows, 2800).completions = 60;
        at(&mut rows, 2900).p99_us = Some(3000);
        // Just outside the second after: must not count.
        at(&mut rows, 3000).p99_us = Some(99_999);
        // Inside the second before (ends in (1 s, 2 s]) and just outside it.
        at(&mut rows, 1900).p99_us = Some(1500);
        at(&mut rows, 1000).p99_us = Some(1200);
        at(&mut rows, 900).p99_us = Some(9999);
        // Failures: two inside [2 s, 2.7 s), two after it.
        at(&mut rows, 2100).errors = 1;
        at(&mut rows, 2300).timeouts = 2;
        at(&mut rows, 2800).timeouts = 5;
        at(&mut rows, 4500).errors = 7;
        Timeline {
            rows,
            markers: vec![
                marker(2000.0, MarkerKind::FaultStart, "kill node 1"),
                marker(2500.0, MarkerKind::LeaderChange, "leader 2, ballot 7.2"),
                marker(4000.0, MarkerKind::FaultEnd, "restart node 1"),
            ],
        }
    }

    #[test]
    fn a_leader_kill_gives_the_gap_and_the_time_to_the_new_leader() {
        let t = leader_kill();
        let a = Availability::compute(&t, &[kill(2000.0, Some(4000.0))]).unwrap();
        assert_eq!(a.faults, 1);
        assert_eq!(a.fault_start_ms, 2000.0);
        assert_eq!(a.longest_gap_ms, Some(700));
        assert_eq!(a.longest_gap_start_ms, Some(2000));
        assert_eq!(a.to_new_leader_ms, Some(700.0));
        // Pre-fault median 1000/s; 30 at 2.7 s is under half, 60 at 2.8 s is not.
        assert_eq!(a.to_half_throughput_ms, Some(800.0));
        assert_eq!(a.p99_before_us, Some(1500));
        assert_eq!(a.p99_after_us, Some(80_000));
        // [2 s, 2.7 s): the error at 2.1 s and the two timeouts at 2.3 s.
        assert_eq!(a.failed_window_end_ms, 2700.0);
        assert_eq!(a.failed_during_fault, 3);
    }

    #[test]
    fn missing_buckets_count_as_gap() {
        let mut t = leader_kill();
        t.rows.retain(|r| r.completions > 0);
        let a = Availability::compute(&t, &[kill(2000.0, Some(4000.0))]).unwrap();
        assert_eq!(a.longest_gap_ms, Some(700));
        assert_eq!(a.to_new_leader_ms, Some(700.0));
        // A second fault before the leader change owns it: none for the first.
        let a =
            Availability::compute(&t, &[kill(2000.0, Some(4000.0)), kill(2400.0, None)]).unwrap();
        assert_eq!(a.to_new_leader_ms, None);
    }

    #[test]
    fn a_leader_change_before_the_fault_does_not_count() {
        let mut t = leader_kill();
        t.markers[1].t_ms = 1500.0;
        let a = Availability::compute(&t, &[kill(2000.0, Some(4000.0))]).unwrap();
        assert_eq!(a.to_new_leader_ms, None);
        // Recovery falls back to ½ throughput: [2 s, 2.8 s) adds nothing at 2.8 s itself.
        assert_eq!(a.failed_window_end_ms, 2800.0);
        assert_eq!(a.failed_during_fault, 3);
    }

    #[test]
    fn no_fault_no_figures() {
        let t = leader_kill();
        assert_eq!(Availability::compute(&t, &[]), None);
        let not_applied = FaultRecord {
            action: "kill".into(),
            target: "leader".into(),
            node: None,
            added: None,
            at_s: 2.0,
            end_s: Some(4.0),
            applied: false,
            error: Some("no leader".into()),
        };
        assert!(fault_windows(std::slice::from_ref(&not_applied)).is_empty());
        let applied = FaultRecord {
            applied: true,
            error: None,
            ..not_applied
        };
        assert_eq!(fault_windows(&[applied]), vec![kill(2000.0, Some(4000.0))]);
    }

    #[test]
    fn without_a_leader_recovery_is_back_to_half_throughput() {
        // Basic Paxos, one node paused over [2 s, 3 s): throughput falls to 10 per bucket
        // until 2.5 s, then comes back to 80.
        let mut rows = steady();
        for r in rows.iter_mut().filter(|r| r.t_ms >= 2000 && r.t_ms < 2500) {
            r.completions = 10;
            r.timeouts = 1;
        }
        for r in rows.iter_mut().filter(|r| r.t_ms >= 2500 && r.t_ms < 3000) {
            r.completions = 80;
        }
        let t = Timeline {
            rows,
            markers: vec![
                marker(2000.0, MarkerKind::FaultStart, "pause node 3"),
                marker(3000.0, MarkerKind::FaultEnd, "resume node 3"),
            ],
        };
        let a = Availability::compute(&t, &[kill(2000.0, Some(3000.0))]).unwrap();
        assert_eq!(a.to_new_leader_ms, None);
        assert_eq!(a.to_half_throughput_ms, Some(500.0));
        assert_eq!(a.longest_gap_ms, Some(0));
        assert_eq!(a.longest_gap_start_ms, None);
        assert_eq!(a.failed_window_end_ms, 2500.0);
        assert_eq!(a.failed_during_fault, 5);
    }

    #[test]
    fn no_recovery_counts_failures_to_the_fault_end_plus_one_second() {
        let mut rows = steady();
        silence(&mut rows, 2000, 6000);
        for r in rows.iter_mut().filter(|r| r.t_ms >= 2000) {
            r.timeouts = 1;
        }
        let t = Timeline {
            rows,
            markers: Vec::new(),
        };
        let a = Availability::compute(&t, &[kill(2000.0, Some(3000.0))]).unwrap();
        assert_eq!((a.to_new_leader_ms, a.to_half_throughput_ms), (None, None));
        assert_eq!(a.longest_gap_ms, Some(4000));
        assert_eq!(a.p99_after_us, None);
        assert_eq!(a.failed_window_end_ms, 4000.0);
        assert_eq!(a.failed_during_fault, 20);
        // A fault never undone: to the end of the timeline.
        let a = Availability::compute(&t, &[kill(2000.0, None)]).unwrap();
        assert_eq!(a.failed_window_end_ms, 6000.0);
        assert_eq!(a.failed_during_fault, 40);
    }

    #[test]
    fn with_several_faults_the_figures_are_about_the_earliest() {
        let t = leader_kill();
        let a =
            Availability::compute(&t, &[kill(5000.0, None), kill(2000.0, Some(4000.0))]).unwrap();
        assert_eq!(a.faults, 2);
        assert_eq!(a.fault_start_ms, 2000.0);
        assert_eq!(a.to_new_leader_ms, Some(700.0));
    }

    #[test]
    fn an_empty_timeline_has_no_figures_but_the_fault() {
        let a = Availability::compute(&Timeline::default(), &[kill(1000.0, None)]).unwrap();
        assert_eq!(a.longest_gap_ms, None);
        assert_eq!(a.to_half_throughput_ms, None);
        assert_eq!(a.failed_during_fault, 0);
    }

    fn record(action: &str, at_s: f64, end_s: Option<f64>, applied: bool) -> FaultRecord {
        FaultRecord {
            action: action.into(),
            target: "remove leader add 4".into(),
            node: Some(0),
            added: Some(4),
            at_s,
            end_s,
            applied,
            error: None,
        }
    }

    #[test]
    fn a_membership_change_gets_its_throughput_before_and_through_it() {
        // 1000 ops/s steady; the leader is replaced at 2 s, chosen at 2.01 s; nothing
        // completes over [2.1 s, 2.4 s); a new leader at 2.35 s. A later kill at 3 s bounds the
        // leader-change search; a change that was not applied has no figures.
        let mut rows = steady();
        silence(&mut rows, 2100, 2400);
        at(&mut rows, 2400).completions = 50;
        let timeline = Timeline {
            rows,
            markers: vec![
                marker(2350.0, MarkerKind::LeaderChange, "leader 2, ballot 2.2"),
                marker(3500.0, MarkerKind::LeaderChange, "leader 3, ballot 3.3"),
            ],
        };
        let faults = [
            record("reconfigure", 2.0, Some(2.01), true),
            record("kill", 3.0, None, true),
            record("reconfigure", 4.0, None, false),
        ];
        let changes = membership_changes(&timeline, &faults);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let c = &changes[0];
        assert_eq!(c.change, "remove node 0, add node 4");
        assert!((c.chosen_after_ms.unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(c.before_ops, Some(1000.0));
        // 2 s from 2.0 s: 20 buckets, 3 of them empty and one with 50 of 100.
        assert_eq!(c.through_ops, Some((16.0 * 100.0 + 50.0) * 1000.0 / 2000.0));
        assert_eq!(c.lowest_ops, Some(0.0));
        assert_eq!(c.gap_ms, Some(300));
        assert_eq!(c.to_new_leader_ms, Some(350.0));
        // The 3.5 s leader change comes after the kill: not this change's.
        let late = Timeline {
            markers: vec![marker(3500.0, MarkerKind::LeaderChange, "leader 3")],
            ..timeline
        };
        assert_eq!(membership_changes(&late, &faults)[0].to_new_leader_ms, None);
    }
}
