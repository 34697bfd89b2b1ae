//! The network model: per-message delay with jitter, loss, duplication, reordering spikes, and
//! timed partitions (symmetric or one-way) between nodes.
//!
//! The model only decides *when* (and how many times) a message arrives; the simulation's event
//! queue carries it. Clients talk to nodes over the same model, so requests and replies are
//! lost, duplicated and delayed too, but partitions only cut links between nodes. After the heal
//! time the network is reliable: nothing is lost, duplicated or cut, though messages are still
//! delayed with jitter (so they can still overtake each other).

use std::collections::BTreeSet;
use std::time::Duration;

use paxos::{ClientId, NodeId, Time};

use crate::rng::SimRng;

/// One end of a simulated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A node of the cluster.
    Node(NodeId),
    /// A simulated client.
    Client(ClientId),
}

/// How messages behave in flight while faults are on.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Every message takes at least this long.
    pub base_delay: Duration,
    /// Plus a uniform extra delay in `[0, jitter)`; so messages can overtake each other.
    pub jitter: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (the copy gets its own delay).
    pub duplicate: f64,
    /// Probability that a message is held back by an extra delay spike, reordering it behind
    /// many later messages.
    pub reorder: f64,
    /// The largest spike.
    pub reorder_delay: Duration,
}

impl NetworkConfig {
    /// A reliable network: small delays with jitter, nothing lost or duplicated.
    pub fn reliable() -> Self {
        NetworkConfig {
            base_delay: Duration::from_micros(200),
            jitter: Duration::from_micros(800),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
        }
    }
}

/// Which links a partition cuts, before it is resolved to concrete node ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionShape {
    /// Cut every link to and from one node (`None`: whichever node leads when it starts).
    Isolate(Option<NodeId>),
    /// Split the cluster in two: no message crosses between `side` and the rest.
    Split(BTreeSet<NodeId>),
    /// One-way: messages from `from` to the rest are lost, the other direction works.
    /// `None`: the leader at the time it starts (it still hears, but is not heard).
    MuteOutgoing(Option<NodeId>),
    /// One-way: messages *to* this node are lost, its own messages get out (`None`: the leader;
    /// it keeps sending heartbeats but hears no answers).
    DeafIncoming(Option<NodeId>),
    /// One link, both ways: the first node (`None`: the leader) and the second stop hearing each
    /// other while both still reach everyone else. If the two are the same node, the second is
    /// the next node in the cluster. This is what lets a follower that still hears the leader
    /// hold it a lease while a third node, cut from the leader, campaigns through it.
    CutLink(Option<NodeId>, NodeId),
}

impl PartitionShape {
    /// The directed links `(from, to)` this shape cuts, for this cluster and current leader.
    pub fn resolve(
        &self,
        nodes: &[NodeId],
        leader: Option<NodeId>,
        fallback: NodeId,
    ) -> BTreeSet<(NodeId, NodeId)> {
        let target = |t: &Option<NodeId>| t.or(leader).unwrap_or(fallback);
        let mut cut = BTreeSet::new();
        match self {
            PartitionShape::Isolate(t) => {
                let t = target(t);
                for &n in nodes.iter().filter(|n| **n != t) {
                    cut.insert((t, n));
                    cut.insert((n, t));
                }
            }
            PartitionShape::Split(side) => {
                for &a in nodes.iter().filter(|n| side.contains(n)) {
                    for &b in nodes.iter().filter(|n| !side.contains(n)) {
                        cut.insert((a, b));
                        cut.insert((b, a));
                    }
                }
            }
            PartitionShape::MuteOutgoing(t) => {
                let t = target(t);
                cut.extend(nodes.iter().filter(|n| **n != t).map(|&n| (t, n)));
            }
            PartitionShape::DeafIncoming(t) => {
                let t = target(t);
                cut.extend(nodes.iter().filter(|n| **n != t).map(|&n| (n, t)));
            }
            PartitionShape::CutLink(a, b) => {
                let a = target(a);
                let b = if *b != a {
                    *b
                } else {
                    let k = nodes.iter().position(|n| *n == a).unwrap_or(0);
                    nodes[(k + 1) % nodes.len()]
                };
                if a != b {
                    cut.insert((a, b));
                    cut.insert((b, a));
                }
            }
        }
        cut
    }
}

/// What happens to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Arrives at each of these times (two times for a duplicated message).
    Deliver(Vec<Time>),
    /// Never arrives.
    Dropped(DropReason),
}

/// Why a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss.
    Lost,
    /// The link is cut by a partition.
    Partitioned,
}

/// The network: its fault configuration, the partitions in force, and its own random stream.
#[derive(Debug)]
pub struct Network {
    faulty: NetworkConfig,
    reliable: NetworkConfig,
    healed: bool,
    /// Partitions in force: an id (to end it later) and the directed links it cuts.
    cuts: Vec<(u64, BTreeSet<(NodeId, NodeId)>)>,
    rng: SimRng,
}

impl Network {
    /// A network that behaves as `faulty` until [`Network::heal`], drawing from `rng`.
    pub fn new(faulty: NetworkConfig, rng: SimRng) -> Self {
        let reliable = NetworkConfig {
            base_delay: faulty.base_delay,
            jitter: faulty.jitter,
            ..NetworkConfig::reliable()
        };
        Network {
            faulty,
            reliable,
            healed: false,
            cuts: Vec::new(),
            rng,
        }
    }

    /// Starts partition `id`, cutting these directed links (ignored after the heal).
    pub fn start_partition(&mut self, id: u64, cut: BTreeSet<(NodeId, NodeId)>) {
        if !self.healed {
            self.cuts.push((id, cut));
        }
    }

    /// Ends partition `id` (a no-op if it is not in force).
    pub fn end_partition(&mut self, id: u64) {
        self.cuts.retain(|(i, _)| *i != id);
    }

    /// Faults stop: partitions end, and from now on nothing is lost or duplicated.
    pub fn heal(&mut self) {
        self.healed = true;
        self.cuts.clear();
    }

    /// Whether faults have stopped.
    pub fn is_healed(&self) -> bool {
        self.healed
    }

    /// Whether a partition currently cuts the link `from -> to`.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts.iter().any(|(_, cut)| cut.contains(&(from, to)))
    }

    /// Number of partitions in force.
    pub fn partitions(&self) -> usize {
        self.cuts.len()
    }

    /// Decides the fate of one message sent at `now`. Partitions cut links between nodes only
    /// and are checked at send time.
    pub fn route(&mut self, from: Endpoint, to: Endpoint, now: Time) -> Fate {
        if let (Endpoint::Node(a), Endpoint::Node(b)) = (from, to) {
            if self.is_cut(a, b) {
                return Fate::Dropped(DropReason::Partitioned);
            }
        }
        let config = if self.healed {
            &self.reliable
        } else {
            &self.faulty
        };
        let config = config.clone();
        if self.rng.chance(config.loss) {
            return Fate::Dropped(DropReason::Lost);
        }
        let copies = if self.rng.chance(config.duplicate) {
            2
        } else {
            1
        };
        let times = (0..copies)
            .map(|_| {
                let mut delay =
                    config.base_delay + self.rng.duration(Duration::ZERO, config.jitter);
                if self.rng.chance(config.reorder) {
                    delay += self.rng.duration(Duration::ZERO, config.reorder_delay);
                }
                now + delay
            })
            .collect();
        Fate::Deliver(times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u32) -> Vec<NodeId> {
        (0..n).map(NodeId).collect()
    }

    fn lossy() -> NetworkConfig {
        NetworkConfig {
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.1,
            reorder_delay: Duration::from_millis(50),
            ..NetworkConfig::reliable()
        }
    }

    #[test]
    fn reliable_network_delivers_once_within_its_delay_bounds() {
        let cfg = NetworkConfig::reliable();
        let mut net = Network::new(cfg.clone(), SimRng::new(1));
        let now = Time(1_000_000);
        for _ in 0..1000 {
            let Fate::Deliver(times) =
                net.route(Endpoint::Node(NodeId(0)), Endpoint::Node(NodeId(1)), now)
            else {
                panic!("a reliable network dropped a message");
            };
            assert_eq!(times.len(), 1);
            assert!(
                times[0] >= now + cfg.base_delay && times[0] < now + cfg.base_delay + cfg.jitter
            );
        }
    }

    #[test]
    fn lossy_network_loses_duplicates_and_reorders_at_about_its_rates() {
        let mut net = Network::new(lossy(), SimRng::new(2));
        let (mut lost, mut dup, mut spikes) = (0, 0, 0);
        let now = Time::ZERO;
        let normal_max =
            now + NetworkConfig::reliable().base_delay + NetworkConfig::reliable().jitter;
        for _ in 0..10_000 {
            match net.route(
                Endpoint::Client(ClientId(1)),
                Endpoint::Node(NodeId(0)),
                now,
            ) {
                Fate::Dropped(DropReason::Lost) => lost += 1,
                Fate::Dropped(DropReason::Partitioned) => panic!("no partition is in force"),
                Fate::Deliver(times) => {
                    dup += usize::from(times.len() == 2);
                    spikes += times.iter().filter(|t| **t >= normal_max).count();
                }
            }
        }
        assert!((2_700..3_300).contains(&lost), "lost {lost}");
        // Duplication applies to the 70% that are not lost.
        assert!((1_200..1_600).contains(&dup), "dup {dup}");
        assert!(spikes > 300, "spikes {spikes}");
    }

    #[test]
    fn heal_stops_loss_duplication_and_partitions_but_keeps_delay() {
        let mut net = Network::new(lossy(), SimRng::new(3));
        net.start_partition(
            1,
            PartitionShape::Isolate(Some(NodeId(0))).resolve(&nodes(3), None, NodeId(0)),
        );
        assert!(net.is_cut(NodeId(0), NodeId(1)));
        net.heal();
        assert!(!net.is_cut(NodeId(0), NodeId(1)));
        net.start_partition(
            2,
            PartitionShape::Isolate(Some(NodeId(1))).resolve(&nodes(3), None, NodeId(0)),
        );
        assert_eq!(net.partitions(), 0, "no partition starts after the heal");
        for _ in 0..1000 {
            match net.route(
                Endpoint::Node(NodeId(0)),
                Endpoint::Node(NodeId(1)),
                Time::ZERO,
            ) {
                Fate::Deliver(t) => {
                    assert_eq!(t.len(), 1);
                    assert!(t[0] > Time::ZERO);
                }
                Fate::Dropped(r) => panic!("healed network dropped a message: {r:?}"),
            }
        }
    }

    #[test]
    fn partitions_cut_the_right_directions() {
        let all = nodes(5);
        let iso = PartitionShape::Isolate(None).resolve(&all, Some(NodeId(2)), NodeId(0));
        assert!(iso.contains(&(NodeId(2), NodeId(4))) && iso.contains(&(NodeId(4), NodeId(2))));
        assert!(!iso.contains(&(NodeId(0), NodeId(1))));
        assert_eq!(iso.len(), 8);

        let side: BTreeSet<NodeId> = [NodeId(0), NodeId(1)].into();
        let split = PartitionShape::Split(side).resolve(&all, None, NodeId(0));
        assert_eq!(split.len(), 2 * 2 * 3);
        assert!(split.contains(&(NodeId(1), NodeId(3))) && split.contains(&(NodeId(3), NodeId(1))));
        assert!(
            !split.contains(&(NodeId(0), NodeId(1))) && !split.contains(&(NodeId(3), NodeId(4)))
        );

        let mute = PartitionShape::MuteOutgoing(Some(NodeId(1))).resolve(&all, None, NodeId(0));
        assert!(mute.contains(&(NodeId(1), NodeId(0))) && !mute.contains(&(NodeId(0), NodeId(1))));
        let deaf = PartitionShape::DeafIncoming(None).resolve(&all, None, NodeId(3));
        assert!(deaf.contains(&(NodeId(0), NodeId(3))) && !deaf.contains(&(NodeId(3), NodeId(0))));

        let link =
            PartitionShape::CutLink(None, NodeId(4)).resolve(&all, Some(NodeId(1)), NodeId(0));
        assert_eq!(
            link,
            [(NodeId(1), NodeId(4)), (NodeId(4), NodeId(1))].into()
        );
        let same =
            PartitionShape::CutLink(None, NodeId(4)).resolve(&all, Some(NodeId(4)), NodeId(0));
        assert_eq!(
            same,
            [(NodeId(4), NodeId(0)), (NodeId(0), NodeId(4))].into()
        );
    }

    #[test]
    fn partitions_drop_node_links_only_and_end_by_id() {
        let mut net = Network::new(NetworkConfig::reliable(), SimRng::new(4));
        net.start_partition(
            7,
            PartitionShape::MuteOutgoing(Some(NodeId(0))).resolve(&nodes(3), None, NodeId(0)),
        );
        net.start_partition(
            8,
            PartitionShape::DeafIncoming(Some(NodeId(2))).resolve(&nodes(3), None, NodeId(0)),
        );
        let n = |i| Endpoint::Node(NodeId(i));
        assert_eq!(
            net.route(n(0), n(1), Time::ZERO),
            Fate::Dropped(DropReason::Partitioned)
        );
        assert!(matches!(
            net.route(n(1), n(0), Time::ZERO),
            Fate::Deliver(_)
        ));
        assert_eq!(
            net.route(n(1), n(2), Time::ZERO),
            Fate::Dropped(DropReason::Partitioned)
        );
        // Clients are never partitioned.
        assert!(matches!(
            net.route(Endpoint::Client(ClientId(0)), n(2), Time::ZERO),
            Fate::Deliver(_)
        ));
        net.end_partition(7);
        assert!(matches!(
            net.route(n(0), n(1), Time::ZERO),
            Fate::Deliver(_)
        ));
        assert_eq!(
            net.route(n(0), n(2), Time::ZERO),
            Fate::Dropped(DropReason::Partitioned)
        );
        net.end_partition(8);
        assert_eq!(net.partitions(), 0);
    }

    #[test]
    fn same_seed_same_fates() {
        let run = |seed| {
            let mut net = Network::new(lossy(), SimRng::new(seed));
            (0..200)
                .map(|i| {
                    net.route(
                        Endpoint::Node(NodeId(0)),
                        Endpoint::Node(NodeId(1)),
                        Time(i),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
