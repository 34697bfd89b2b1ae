//! Fault profiles and the fault schedule a seed draws from one of them.
//!
//! A schedule is made up front, before the run starts, from its own random stream: the network's
//! fault rates, and a list of timed events (partitions, crashes, killing the leader mid-batch).
//! Targets named "the leader" are resolved when the event fires. Every fault ends by the heal
//! time: partitions end, crashed nodes restart, and the network stops losing and duplicating.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use paxos::{NodeId, Time};

use crate::network::{NetworkConfig, PartitionShape};
use crate::rng::SimRng;

/// A family of faults to draw a schedule from (the CLI's `--faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultProfile {
    /// A reliable network with jittered delays; no crashes.
    None,
    /// Message loss, duplication and reordering spikes.
    Lossy,
    /// Timed partitions: isolating a node or the leader, splitting the cluster, one-way cuts, and
    /// cutting the one link between the leader and a follower.
    Partitions,
    /// Node crashes and restarts, including killing the leader while a batch is in flight.
    Crashes,
    /// Everything above at once.
    All,
}

impl FaultProfile {
    /// Every profile, in CLI order.
    pub const ALL: [FaultProfile; 5] = [
        FaultProfile::None,
        FaultProfile::Lossy,
        FaultProfile::Partitions,
        FaultProfile::Crashes,
        FaultProfile::All,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FaultProfile::None => "none",
            FaultProfile::Lossy => "lossy",
            FaultProfile::Partitions => "partitions",
            FaultProfile::Crashes => "crashes",
            FaultProfile::All => "all",
        }
    }

    fn lossy(self) -> bool {
        matches!(self, FaultProfile::Lossy | FaultProfile::All)
    }

    fn partitions(self) -> bool {
        matches!(self, FaultProfile::Partitions | FaultProfile::All)
    }

    fn crashes(self) -> bool {
        matches!(self, FaultProfile::Crashes | FaultProfile::All)
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultProfile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown fault profile {s:?} (none, lossy, partitions, crashes, all)")
            })
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultEvent {
    /// Cut links for a while.
    Partition {
        /// Identifies the partition, so its end removes exactly it.
        id: u64,
        /// Which links.
        shape: PartitionShape,
        /// How long it lasts (it ends at the heal time at the latest).
        duration: Duration,
    },
    /// Crash a node (`None`: whichever node leads when it fires) and restart it after `downtime`
    /// (at the heal time at the latest). A node already down is left alone.
    Crash {
        /// The victim.
        node: Option<NodeId>,
        /// Time until it restarts from its durable state.
        downtime: Duration,
    },
    /// From this time on, crash the leader right after it sends an Accept carrying client
    /// commands, while that batch is in flight (its own write not yet done, no Accepted back).
    KillLeaderMidBatch {
        /// Time until it restarts.
        downtime: Duration,
    },
}

/// A run's fault schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// How messages behave until the heal.
    pub network: NetworkConfig,
    /// Timed faults, in time order.
    pub events: Vec<(Time, FaultEvent)>,
    /// When faults stop.
    pub heal: Time,
    /// Writes take between 20 µs and this long (in token order). Crash profiles make the disk
    /// slow on some seeds, so that more writes are in flight, and lost, when a node crashes.
    pub persist_max: Duration,
}

impl FaultPlan {
    /// Draws a schedule for `profile` on this cluster with faults in `[0, heal)`. `crashes` is
    /// false for a protocol that keeps nothing durable across a crash by design.
    pub fn draw(
        profile: FaultProfile,
        nodes: &[NodeId],
        heal: Time,
        crashes: bool,
        rng: &mut SimRng,
    ) -> FaultPlan {
        let mut network = NetworkConfig::reliable();
        let mut events = Vec::new();
        let mut persist_max = Duration::from_millis(1);
        let window = heal.as_nanos();
        if profile.lossy() {
            network.loss = 0.01 + 0.2 * rng.unit();
            network.duplicate = 0.1 * rng.unit();
            network.reorder = 0.1 * rng.unit();
            // Half the seeds hold messages back for longer than an election timeout (500 ms by
            // default, up to 1 s randomized), so that a deposed leader's messages arrive after
            // its successor took over.
            let spike = if rng.chance(0.5) { 60 } else { 1500 };
            network.reorder_delay =
                rng.duration(Duration::from_millis(2), Duration::from_millis(spike));
            network.jitter = rng.duration(Duration::from_micros(200), Duration::from_millis(4));
        }
        let replicated = nodes.len() > 1;
        if profile.partitions() && replicated {
            if !profile.lossy() {
                network.loss = 0.01 * rng.unit();
            }
            for id in 0..rng.range(1, 5) {
                let at = Time(rng.below(window));
                let shape = match rng.below(6) {
                    0 => PartitionShape::Isolate(None),
                    1 => PartitionShape::Isolate(Some(*rng.pick(nodes))),
                    2 => {
                        let side: BTreeSet<NodeId> =
                            nodes.iter().copied().filter(|_| rng.chance(0.5)).collect();
                        PartitionShape::Split(side)
                    }
                    3 => PartitionShape::MuteOutgoing(if rng.chance(0.5) {
                        None
                    } else {
                        Some(*rng.pick(nodes))
                    }),
                    4 => PartitionShape::DeafIncoming(if rng.chance(0.5) {
                        None
                    } else {
                        Some(*rng.pick(nodes))
                    }),
                    _ => PartitionShape::CutLink(None, *rng.pick(nodes)),
                };
                let duration =
                    rng.duration(Duration::from_millis(100), Duration::from_millis(1200));
                events.push((
                    at,
                    FaultEvent::Partition {
                        id,
                        shape,
                        duration,
                    },
                ));
            }
        }
        if profile.crashes() && crashes {
            if rng.chance(0.3) {
                persist_max = rng.duration(Duration::from_millis(2), Duration::from_millis(20));
            }
            for _ in 0..rng.range(1, 5) {
                let at = Time(rng.below(window));
                let node = if rng.chance(0.4) {
                    None
                } else {
                    Some(*rng.pick(nodes))
                };
                let downtime = rng.duration(Duration::from_millis(20), Duration::from_millis(800));
                events.push((at, FaultEvent::Crash { node, downtime }));
            }
            if replicated && rng.chance(0.7) {
                let at = Time(rng.below(window));
                let downtime = rng.duration(Duration::from_millis(20), Duration::from_millis(600));
                events.push((at, FaultEvent::KillLeaderMidBatch { downtime }));
            }
        }
        // Stable order: by time, then by the order drawn.
        events.sort_by_key(|(at, _)| *at);
        FaultPlan {
            network,
            events,
            heal,
            persist_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeId> {
        (0..3).map(NodeId).collect()
    }

    #[test]
    fn profiles_parse_and_print() {
        for p in FaultProfile::ALL {
            assert_eq!(p.name().parse::<FaultProfile>(), Ok(p));
        }
        assert!("flaky".parse::<FaultProfile>().is_err());
    }

    #[test]
    fn none_has_no_faults_and_all_has_every_kind_somewhere() {
        let heal = Time(2_000_000_000);
        for seed in 0..50 {
            let plan = FaultPlan::draw(
                FaultProfile::None,
                &nodes(),
                heal,
                true,
                &mut SimRng::new(seed),
            );
            assert!(plan.events.is_empty());
            assert_eq!(plan.network.loss, 0.0);
            assert_eq!(plan.network.duplicate, 0.0);
        }
        let (mut parts, mut crashes, mut kills, mut lossy) = (0, 0, 0, 0);
        for seed in 0..50 {
            let plan = FaultPlan::draw(
                FaultProfile::All,
                &nodes(),
                heal,
                true,
                &mut SimRng::new(seed),
            );
            lossy += usize::from(plan.network.loss > 0.0);
            for (at, e) in &plan.events {
                assert!(*at < heal, "fault after the heal");
                match e {
                    FaultEvent::Partition { .. } => parts += 1,
                    FaultEvent::Crash { .. } => crashes += 1,
                    FaultEvent::KillLeaderMidBatch { .. } => kills += 1,
                }
            }
            assert!(
                plan.events.windows(2).all(|w| w[0].0 <= w[1].0),
                "events out of order"
            );
        }
        assert!(parts > 0 && crashes > 0 && kills > 0 && lossy == 50);
    }

    #[test]
    fn profiles_only_draw_their_own_faults() {
        let heal = Time(1_000_000_000);
        for seed in 0..30 {
            let crashes = FaultPlan::draw(
                FaultProfile::Crashes,
                &nodes(),
                heal,
                true,
                &mut SimRng::new(seed),
            );
            assert!(crashes
                .events
                .iter()
                .all(|(_, e)| !matches!(e, FaultEvent::Partition { .. })));
            assert_eq!(crashes.network.loss, 0.0);
            let parts = FaultPlan::draw(
                FaultProfile::Partitions,
                &nodes(),
                heal,
                true,
                &mut SimRng::new(seed),
            );
            assert!(parts
                .events
                .iter()
                .all(|(_, e)| matches!(e, FaultEvent::Partition { .. })));
            let no_crash = FaultPlan::draw(
                FaultProfile::All,
                &nodes(),
                heal,
                false,
                &mut SimRng::new(seed),
            );
            assert!(no_crash
                .events
                .iter()
                .all(|(_, e)| matches!(e, FaultEvent::Partition { .. })));
            let single = FaultPlan::draw(
                FaultProfile::Partitions,
                &[NodeId(0)],
                heal,
                true,
                &mut SimRng::new(seed),
            );
            assert!(
                single.events.is_empty(),
                "a single node has no links to cut"
            );
        }
    }
}
