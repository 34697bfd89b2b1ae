//! Fault schedules: what an experiment's `[[faults]]` entries do to a cluster during a measured
//! window, and when.
//!
//! ```toml
//! [[faults]]
//! at_s = 2.0               # seconds from the start of the measured window
//! action = "kill"          # kill | pause | partition | delay | loss
//! target = "leader"        # leader | follower | any | a node id
//! restart_after_s = 2.0    # kill: restart it this long after (default: it stays down)
//!
//! [[faults]]
//! at_s = 1.0
//! action = "pause"         # SIGSTOP, then SIGCONT after for_s: a stalled node, a GC pause
//! target = 2
//! for_s = 0.5
//!
//! [[faults]]
//! at_s = 3.0
//! action = "partition"     # isolate the target, or split the nodes into `groups`
//! target = "leader"
//! for_s = 1.0
//! groups = [[0], [1, 2]]   # optional; then `target` is not used
//!
//! [[faults]]
//! at_s = 1.0
//! action = "delay"         # add delay_ms to every link of the target (both ways), or only
//! target = 0               # to the link between the target and `peer`
//! delay_ms = 50.0
//! peer = 1
//! for_s = 2.0
//!
//! [[faults]]
//! at_s = 1.0
//! action = "loss"          # drop this share of the datagrams on the target's links, both ways
//! target = "follower"
//! loss = 0.2
//! for_s = 2.0
//!
//! [[faults]]
//! at_s = 2.0
//! action = "reconfigure"   # Multi-Paxos: a membership change through the log, under load
//! remove = "follower"      # a voter to remove (it goes on executing, as a learner)
//! add = 3                  # a node to make a voter: an id, or "learner"
//! ```
//!
//! A target is resolved when its fault starts, among the voters the schedule knows (the first
//! `nodes` ids, changed by each `reconfigure` that was chosen): `leader` asks the cluster which
//! node leads at that moment (a protocol without a leader, Basic Paxos or Unreplicated, has
//! none to lose: there `leader` is node 0, the first node generators send to); `follower` is
//! the lowest-numbered voter that is not the leader; `any` is a voter drawn from the
//! repetition's seed; `learner` is a node that votes in no configuration: the lowest-numbered
//! one that never voted (a `[cluster] learners` node), else the lowest-numbered removed voter.
//! A `reconfigure` replaces a node when it both removes and adds; it is applied when the
//! cluster acknowledges it (the change is chosen, and governs `window` slots later) and gives up
//! after [`RECONFIGURE_TIMEOUT`]; its record's start is when it was sent and its end when it was
//! chosen. A fault that cannot be applied (no leader at that moment, a node id outside the
//! cluster, a signal that failed, a change the cluster refused) is recorded with its error in
//! the point, never skipped in silence. Link faults (`partition`, `delay`, `loss`) go through the nodes' emulated links, so
//! they work on loopback, in namespaces and on VMs alike without `tc netem`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use paxos::{Ballot, NodeId};
use serde::{Deserialize, Serialize};

/// One `[[faults]]` entry as written in the file. [`FaultSpec::fault`] turns it into a typed
/// [`Fault`], rejecting keys that do not belong to its action.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Seconds from the start of the measured window.
    pub at_s: f64,
    /// What happens.
    pub action: ActionName,
    /// Which node (not used by a partition with `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// `kill`: restart the node this long after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after_s: Option<f64>,
    /// How long a pause, partition, delay or loss lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_s: Option<f64>,
    /// `partition`: the groups to split the nodes into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Vec<u32>>>,
    /// `delay`: milliseconds added one way, on each direction of the links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<f64>,
    /// `delay`: only the link between the target and this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<u32>,
    /// `loss`: the share of datagrams dropped, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// `reconfigure`: the node to make a voter (`learner` or a node id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Target>,
    /// `reconfigure`: the voter to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Target>,
}

/// How long a `reconfigure` waits for the cluster to choose the change (through an election,
/// if one is running) before it is recorded as not applied.
pub const RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `action` of a fault.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// SIGKILL.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut links.
    Partition,
    /// Slow links.
    Delay,
    /// Lossy links.
    Loss,
    /// A membership change.
    Reconfigure,
}

impl ActionName {
    /// Its name in experiment files and results.
    pub fn name(self) -> &'static str {
        match self {
            ActionName::Kill => "kill",
            ActionName::Pause => "pause",
            ActionName::Partition => "partition",
            ActionName::Delay => "delay",
            ActionName::Loss => "loss",
            ActionName::Reconfigure => "reconfigure",
        }
    }
}

/// Which node a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The node that leads when the fault starts.
    Leader,
    /// The lowest-numbered node that does not lead.
    Follower,
    /// A voter drawn from the repetition's seed.
    Any,
    /// A node that votes in no configuration (one that never voted first).
    Learner,
    /// This node.
    Node(u32),
}

impl Target {
    /// As written in files and results.
    pub fn name(self) -> String {
        match self {
            Target::Leader => "leader".into(),
            Target::Follower => "follower".into(),
            Target::Any => "any".into(),
            Target::Learner => "learner".into(),
            Target::Node(n) => n.to_string(),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::Node(n) => s.serialize_u32(*n),
            other => s.serialize_str(&other.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Target;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""leader", "follower", "any", "learner" or a node id"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Target, E> {
                match v {
                    "leader" => Ok(Target::Leader),
                    "follower" => Ok(Target::Follower),
                    "any" => Ok(Target::Any),
                    "learner" => Ok(Target::Learner),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Target, E> {
                u32::try_from(v)
                    .map(Target::Node)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Target, E> {
                u32::try_from(v)
                    .map(Target::Node)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A fault, typed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// When it starts, from the start of the measured window.
    pub at: Duration,
    /// What it does.
    pub action: Action,
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// SIGKILL the target; restart it after the given time, if any.
    Kill {
        /// The node.
        target: Target,
        /// Restart it this long after the kill.
        restart_after: Option<Duration>,
    },
    /// SIGSTOP the target, SIGCONT it after `span`.
    Pause {
        /// The node.
        target: Target,
        /// How long it stays stopped.
        span: Duration,
    },
    /// Cut every link between groups for `span`.
    Partition {
        /// The side that is cut off.
        cut: Cut,
        /// How long.
        span: Duration,
    },
    /// Add `delay` to the target's links (or one of them), each way, for `span`.
    Delay {
        /// The node.
        target: Target,
        /// Only its link to this node.
        peer: Option<u32>,
        /// Added one way.
        delay: Duration,
        /// How long.
        span: Duration,
    },
    /// Drop `loss` of the datagrams on the target's links, each way, for `span`.
    Loss {
        /// The node.
        target: Target,
        /// The share dropped.
        loss: f64,
        /// How long.
        span: Duration,
    },
    /// Change the voters through the log: `add` becomes one, `remove` stops being one (at
    /// least one of them is set).
    Reconfigure {
        /// The node to make a voter: [`Target::Learner`] or a node.
        add: Option<Target>,
        /// The voter to remove.
        remove: Option<Target>,
    },
}

/// Who a partition cuts off.
#[derive(Clone, Debug, PartialEq)]
pub enum Cut {
    /// One node from all the others.
    Isolate(Target),
    /// Nodes in different groups cannot talk; a node in no group is cut off from all.
    Groups(Vec<Vec<u32>>),
}

impl Action {
    /// Its name.
    pub fn name(&self) -> ActionName {
        match self {
            Action::Kill { .. } => ActionName::Kill,
            Action::Pause { .. } => ActionName::Pause,
            Action::Partition { .. } => ActionName::Partition,
            Action::Delay { .. } => ActionName::Delay,
            Action::Loss { .. } => ActionName::Loss,
            Action::Reconfigure { .. } => ActionName::Reconfigure,
        }
    }

    /// How long it lasts, if it ends by itself (a kill ends with its restart).
    pub fn span(&self) -> Option<Duration> {
        match self {
            Action::Kill { restart_after, .. } => *restart_after,
            // It ends when the change is chosen, not after a set time.
            Action::Reconfigure { .. } => None,
            Action::Pause { span, .. }
            | Action::Partition { span, .. }
            | Action::Delay { span, .. }
            | Action::Loss { span, .. } => Some(*span),
        }
    }

    /// Whether it works on links (and needs the nodes' emulated links).
    pub fn on_links(&self) -> bool {
        matches!(
            self,
            Action::Partition { .. } | Action::Delay { .. } | Action::Loss { .. }
        )
    }

    /// The target as configured, for results.
    pub fn target_name(&self) -> String {
        match (self.target(), self) {
            (Some(t), _) => t.name(),
            (
                None,
                Action::Partition {
                    cut: Cut::Groups(g),
                    ..
                },
            ) => format!("groups {g:?}"),
            (None, Action::Reconfigure { add, remove }) => {
                let remove = remove.map(|t| format!("remove {}", t.name()));
                let add = add.map(|t| format!("add {}", t.name()));
                [remove, add]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            (None, _) => String::new(),
        }
    }

    fn target(&self) -> Option<Target> {
        match self {
            Action::Kill { target, .. }
            | Action::Pause { target, .. }
            | Action::Delay { target, .. }
            | Action::Loss { target, .. }
            | Action::Partition {
                cut: Cut::Isolate(target),
                ..
            } => Some(*target),
            Action::Partition { .. } | Action::Reconfigure { .. } => None,
        }
    }

    /// Every node id it names, with the key that names it.
    fn named_nodes(&self) -> Vec<(&'static str, u32)> {
        let mut out = Vec::new();
        if let Some(Target::Node(n)) = self.target() {
            out.push(("target", n));
        }
        match self {
            Action::Delay { peer: Some(p), .. } => out.push(("peer", *p)),
            Action::Partition {
                cut: Cut::Groups(g),
                ..
            } => out.extend(g.iter().flatten().map(|n| ("groups", *n))),
            Action::Reconfigure { add, remove } => {
                if let Some(Target::Node(n)) = add {
                    out.push(("add", *n));
                }
                if let Some(Target::Node(n)) = remove {
                    out.push(("remove", *n));
                }
            }
            _ => {}
        }
        out
    }
}

/// Seconds as a duration: finite, >= 0 and at most an hour.
fn seconds(key: &str, s: f64) -> Result<Duration, (String, String)> {
    if s.is_finite() && (0.0..=3600.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err((key.into(), format!("{s}: must be in [0, 3600] seconds")))
    }
}

impl FaultSpec {
    /// The typed fault, or (key, why) for a missing key, a key its action does not use, or a
    /// value out of range.
    pub fn fault(&self) -> Result<Fault, (String, String)> {
        let action = self.action;
        let name = action.name();
        let unused = |key: &str, set: bool| -> Result<(), (String, String)> {
            if set {
                Err((key.into(), format!("`{key}` does not apply to `{name}`")))
            } else {
                Ok(())
            }
        };
        let needed = |key: &str| (key.to_string(), format!("`{name}` needs `{key}`"));
        let target = || self.target.ok_or_else(|| needed("target"));
        let span = || {
            seconds("for_s", self.for_s.ok_or_else(|| needed("for_s"))?).and_then(|d| {
                if d.is_zero() {
                    Err(("for_s".into(), "must be above 0".into()))
                } else {
                    Ok(d)
                }
            })
        };
        unused(
            "restart_after_s",
            action != ActionName::Kill && self.restart_after_s.is_some(),
        )?;
        unused("for_s", action == ActionName::Kill && self.for_s.is_some())?;
        unused(
            "groups",
            action != ActionName::Partition && self.groups.is_some(),
        )?;
        unused(
            "delay_ms",
            action != ActionName::Delay && self.delay_ms.is_some(),
        )?;
        unused("peer", action != ActionName::Delay && self.peer.is_some())?;
        unused("loss", action != ActionName::Loss && self.loss.is_some())?;
        let reconfigure = action == ActionName::Reconfigure;
        unused("add", !reconfigure && self.add.is_some())?;
        unused("remove", !reconfigure && self.remove.is_some())?;
        if reconfigure && self.target.is_some() {
            return Err((
                "target".into(),
                "`reconfigure` names its nodes with `remove` and `add`, not `target`".into(),
            ));
        }
        let action = match action {
            ActionName::Kill => Action::Kill {
                target: target()?,
                restart_after: self
                    .restart_after_s
                    .map(|s| seconds("restart_after_s", s))
                    .transpose()?,
            },
            ActionName::Pause => Action::Pause {
                target: target()?,
                span: span()?,
            },
            ActionName::Partition => Action::Partition {
                cut: match (&self.groups, self.target) {
                    (Some(_), Some(_)) => {
                        return Err((
                            "groups".into(),
                            "give `groups` or a `target` to isolate, not both".into(),
                        ))
                    }
                    (Some(groups), None) => {
                        let mut seen = std::collections::BTreeSet::new();
                        if groups.len() < 2 || groups.iter().any(|g| g.is_empty()) {
                            return Err((
                                "groups".into(),
                                "name at least two non-empty groups".into(),
                            ));
                        }
                        if let Some(n) = groups.iter().flatten().find(|n| !seen.insert(**n)) {
                            return Err(("groups".into(), format!("node {n} is in two groups")));
                        }
                        Cut::Groups(groups.clone())
                    }
                    (None, Some(t)) => Cut::Isolate(t),
                    (None, None) => return Err(needed("target")),
                },
                span: span()?,
            },
            ActionName::Delay => {
                let ms = self.delay_ms.ok_or_else(|| needed("delay_ms"))?;
                if !(ms.is_finite() && ms > 0.0 && ms <= 60_000.0) {
                    return Err(("delay_ms".into(), format!("{ms}: must be in (0, 60000]")));
                }
                let target = target()?;
                if let (Target::Node(t), Some(p)) = (target, self.peer) {
                    if t == p {
                        return Err(("peer".into(), format!("node {p} is the target itself")));
                    }
                }
                Action::Delay {
                    target,
                    peer: self.peer,
                    delay: Duration::from_secs_f64(ms / 1000.0),
                    span: span()?,
                }
            }
            ActionName::Loss => {
                let loss = self.loss.ok_or_else(|| needed("loss"))?;
                if !(loss > 0.0 && loss <= 1.0) {
                    return Err(("loss".into(), format!("{loss}: must be in (0, 1]")));
                }
                Action::Loss {
                    target: target()?,
                    loss,
                    span: span()?,
                }
            }
            ActionName::Reconfigure => {
                unused("for_s", self.for_s.is_some())?;
                match (self.add, self.remove) {
                    (None, None) => {
                        return Err((
                            "add".into(),
                            "`reconfigure` needs `add`, `remove` or both".into(),
                        ))
                    }
                    (Some(t @ (Target::Leader | Target::Follower | Target::Any)), _) => {
                        return Err((
                            "add".into(),
                            format!(
                                "{:?} is a voter already: add \"learner\" or a node id",
                                t.name()
                            ),
                        ))
                    }
                    (_, Some(Target::Learner)) => {
                        return Err((
                            "remove".into(),
                            "\"learner\" votes in no configuration: remove \"leader\", \"follower\", \"any\" or a node id".into(),
                        ))
                    }
                    (Some(Target::Node(a)), Some(Target::Node(r))) if a == r => {
                        return Err(("add".into(), format!("node {a} is both added and removed")))
                    }
                    (add, remove) => Action::Reconfigure { add, remove },
                }
            }
        };
        Ok(Fault {
            at: seconds("at_s", self.at_s)?,
            action,
        })
    }
}

impl Fault {
    /// Checks the node ids it names against a cluster of `nodes` (voters and learners) and its
    /// times against the measured window; (key, why) otherwise.
    pub fn check(&self, nodes: u32, window: Duration) -> Result<(), (String, String)> {
        for (key, n) in self.action.named_nodes() {
            if n >= nodes {
                return Err((
                    key.to_string(),
                    format!("node {n} is not in a cluster of {nodes}"),
                ));
            }
        }
        if self.action.on_links() && nodes < 2 {
            return Err((
                "action".into(),
                format!(
                    "`{}` needs a cluster of 2 or more",
                    self.action.name().name()
                ),
            ));
        }
        if self.at >= window {
            return Err((
                "at_s".into(),
                format!(
                    "{} s is past the measured window of {} s",
                    self.at.as_secs_f64(),
                    window.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }
}

/// A signal a fault sends to a node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL.
    Kill,
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
}

impl Signal {
    /// The name `kill -<name>` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// What a fault imposes on one directed link: the sender drops everything (`blocked`), or adds
/// `delay`, or drops a share `loss`, on top of the link's configured emulation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    /// Drop everything.
    pub blocked: bool,
    /// Added one-way delay.
    pub delay: Duration,
    /// Share dropped, 0..=1.
    pub loss: f64,
}

impl LinkFault {
    /// Both faults at once: blocked if either is, delays added, losses independent.
    fn and(self, other: LinkFault) -> LinkFault {
        LinkFault {
            blocked: self.blocked || other.blocked,
            delay: self.delay + other.delay,
            loss: 1.0 - (1.0 - self.loss) * (1.0 - other.loss),
        }
    }
}

/// What the schedule needs of a running cluster. The launcher's cluster implements it; tests
/// use a fake.
pub trait FaultHost {
    /// The node that leads now and its ballot, if one does.
    fn leadership(&mut self) -> Option<(NodeId, Ballot)>;
    /// Sends `signal` to node `node`'s process, by its pid.
    fn signal(&mut self, node: NodeId, signal: Signal) -> anyhow::Result<()>;
    /// Starts node `node` again, in its own directory (it keeps what it made durable).
    fn restart(&mut self, node: NodeId) -> anyhow::Result<()>;
    /// Replaces every fault on the links node `node` sends on (empty: none).
    fn impair_links(&mut self, node: NodeId, links: &[(NodeId, LinkFault)]) -> anyhow::Result<()>;
    /// Submits a membership change (`add` becomes a voter, `remove` stops being one) and waits
    /// up to [`RECONFIGURE_TIMEOUT`] until it is chosen: when it was, or why it was not (the
    /// cluster's refusal, no answer).
    fn reconfigure(
        &mut self,
        add: Option<NodeId>,
        remove: Option<NodeId>,
    ) -> anyhow::Result<SystemTime>;
}

/// What happened to one fault of a point, for its results.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Its action.
    pub action: ActionName,
    /// Its target as configured.
    pub target: String,
    /// The node it hit, once resolved (a `reconfigure`: the node it removed).
    pub node: Option<u32>,
    /// A `reconfigure`: the node it made a voter.
    pub added: Option<u32>,
    /// When it was applied.
    pub started: Option<SystemTime>,
    /// When it was lifted (a pause resumed, a killed node restarted, a link healed).
    pub ended: Option<SystemTime>,
    /// Why it (or its end) could not be applied.
    pub error: Option<String>,
}

/// A leader seen while faults ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderSeen {
    /// When it was first seen.
    pub at: SystemTime,
    /// The node.
    pub leader: NodeId,
    /// Its ballot.
    pub ballot: Ballot,
}

/// A fault on the directed link (from, to).
type DirectedFault = ((u32, u32), LinkFault);

/// Appends `leadership` to `seen` if it differs from the last leader seen.
pub fn note_leader(
    seen: &mut Vec<LeaderSeen>,
    at: SystemTime,
    leadership: Option<(NodeId, Ballot)>,
) {
    if let Some((leader, ballot)) = leadership {
        if seen
            .last()
            .is_none_or(|l| (l.leader, l.ballot) != (leader, ballot))
        {
            seen.push(LeaderSeen { at, leader, ballot });
        }
    }
}

/// The faults of one point, applied as the measured window goes by: [`Schedule::step`] applies
/// every start and end that is due; [`Schedule::finish`] lifts whatever is still in force.
pub struct Schedule {
    faults: Vec<Fault>,
    /// Voters and learners.
    nodes: u32,
    /// The voters now, as the schedule's own changes left them: ids below the cluster's voter
    /// count at first.
    voters: std::collections::BTreeSet<u32>,
    /// Every node that was a voter at some time.
    ever_voted: std::collections::BTreeSet<u32>,
    has_leader: bool,
    seed: u64,
    /// Start (false) and end (true) events by time, in order.
    events: Vec<(Duration, usize, bool)>,
    next: usize,
    outcomes: Vec<Outcome>,
    /// Link faults in force, by fault index: each directed link's fault.
    links: BTreeMap<usize, Vec<DirectedFault>>,
    /// Nodes a kill took down and no restart has brought back.
    down: std::collections::BTreeSet<u32>,
}

impl Schedule {
    /// The schedule of `faults` for a cluster of `voters` voting nodes (ids from 0) and
    /// `learners` learners after them; `has_leader` says whether the protocol elects one;
    /// `seed` draws `any` targets.
    pub fn new(
        faults: &[Fault],
        voters: u32,
        learners: u32,
        has_leader: bool,
        seed: u64,
    ) -> Schedule {
        let mut events = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            events.push((f.at, i, false));
            if let Some(span) = f.action.span() {
                events.push((f.at + span, i, true));
            }
        }
        events.sort_by_key(|&(at, i, end)| (at, end, i));
        Schedule {
            outcomes: faults
                .iter()
                .map(|f| Outcome {
                    action: f.action.name(),
                    target: f.action.target_name(),
                    node: None,
                    added: None,
                    started: None,
                    ended: None,
                    error: None,
                })
                .collect(),
            faults: faults.to_vec(),
            nodes: voters + learners,
            voters: (0..voters).collect(),
            ever_voted: (0..voters).collect(),
            has_leader,
            seed,
            events,
            next: 0,
            links: BTreeMap::new(),
            down: Default::default(),
        }
    }

    /// When the next start or end is due, from the start of the window.
    pub fn next_due(&self) -> Option<Duration> {
        self.events.get(self.next).map(|e| e.0)
    }

    /// Applies every event due by `elapsed` (time since the window started).
    pub fn step(&mut self, host: &mut dyn FaultHost, elapsed: Duration, now: SystemTime) {
        while let Some(&(at, i, end)) = self.events.get(self.next) {
            if at > elapsed {
                break;
            }
            self.next += 1;
            if end {
                self.end(host, i, now);
            } else {
                self.start(host, i, now);
            }
        }
    }

    /// Lifts every fault still in force (its end was not due yet): paused nodes resume, links
    /// heal. A killed node with no restart stays down.
    pub fn finish(&mut self, host: &mut dyn FaultHost, now: SystemTime) {
        while let Some(&(_, i, end)) = self.events.get(self.next) {
            self.next += 1;
            if end {
                self.end(host, i, now);
            } else {
                // Never started: the window ended first.
                self.outcomes[i].error = Some("the measured window ended before it".into());
            }
        }
    }

    /// What happened to each fault, in the order of the file.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    fn resolve(&mut self, host: &mut dyn FaultHost, target: Target) -> Result<u32, String> {
        let lead = if self.has_leader {
            host.leadership().map(|(n, _)| n.0)
        } else {
            Some(0)
        };
        match target {
            Target::Node(n) if n < self.nodes => Ok(n),
            Target::Node(n) => Err(format!("node {n} is not in a cluster of {}", self.nodes)),
            Target::Leader => lead.ok_or_else(|| "no node leads at this moment".into()),
            Target::Follower => {
                let lead = lead.ok_or("no node leads at this moment, so none follows")?;
                self.voters
                    .iter()
                    .copied()
                    .find(|n| *n != lead)
                    .ok_or_else(|| "the cluster has no follower".into())
            }
            Target::Learner => (0..self.nodes)
                .filter(|n| !self.voters.contains(n))
                .min_by_key(|n| (self.ever_voted.contains(n), *n))
                .ok_or_else(|| "every node of the cluster votes: there is no learner".into()),
            Target::Any => {
                // SplitMix64 of the seed and the fault count so far: reproducible per point.
                let mut z = self
                    .seed
                    .wrapping_add(self.next as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let voters: Vec<u32> = self.voters.iter().copied().collect();
                voters
                    .get(((z ^ (z >> 31)) % voters.len().max(1) as u64) as usize)
                    .copied()
                    .ok_or_else(|| "the cluster has no voter".into())
            }
        }
    }

    /// Resolves a reconfigure's nodes and has the cluster choose the change.
    fn reconfigure(
        &mut self,
        host: &mut dyn FaultHost,
        i: usize,
        add: Option<Target>,
        remove: Option<Target>,
        now: SystemTime,
    ) {
        let mut node = |key: &str, t: Option<Target>| match t {
            None => Ok(None),
            Some(t) => self
                .resolve(host, t)
                .map(Some)
                .map_err(|why| format!("{key} {}: {why}", t.name())),
        };
        let resolved = node("remove", remove).and_then(|r| Ok((r, node("add", add)?)));
        let (removed, added) = match resolved {
            Ok(nodes) => nodes,
            Err(why) => {
                self.outcomes[i].error = Some(why);
                return;
            }
        };
        let o = &mut self.outcomes[i];
        (o.node, o.added) = (removed, added);
        match host.reconfigure(added.map(NodeId), removed.map(NodeId)) {
            Ok(chosen) => {
                o.started = Some(now);
                o.ended = Some(chosen);
                if let Some(r) = removed {
                    self.voters.remove(&r);
                }
                if let Some(a) = added {
                    self.voters.insert(a);
                    self.ever_voted.insert(a);
                }
            }
            Err(e) => o.error = Some(format!("{e:#}")),
        }
    }

    fn start(&mut self, host: &mut dyn FaultHost, i: usize, now: SystemTime) {
        let action = self.faults[i].action.clone();
        if let Action::Reconfigure { add, remove } = action {
            return self.reconfigure(host, i, add, remove, now);
        }
        let node = match action.target() {
            Some(t) => match self.resolve(host, t) {
                Ok(n) => Some(n),
                Err(why) => {
                    self.outcomes[i].error = Some(why);
                    return;
                }
            },
            None => None,
        };
        self.outcomes[i].node = node;
        let applied = match (&action, node) {
            (Action::Kill { .. }, Some(n)) => host.signal(NodeId(n), Signal::Kill).map(|()| {
                self.down.insert(n);
            }),
            (Action::Pause { .. }, Some(n)) => host.signal(NodeId(n), Signal::Stop),
            _ => {
                let links = self.link_faults(&action, node);
                self.links.insert(i, links);
                // Even if some node refused it, others may have taken it: it is in force, so
                // its end lifts it everywhere.
                let pushed = self.push_links(host, None);
                self.outcomes[i].started = Some(now);
                pushed
            }
        };
        match applied {
            Ok(()) => self.outcomes[i].started = Some(now),
            Err(e) => self.outcomes[i].error = Some(format!("{e:#}")),
        }
    }

    fn end(&mut self, host: &mut dyn FaultHost, i: usize, now: SystemTime) {
        if self.outcomes[i].started.is_none() {
            return; // it never took effect: nothing to lift
        }
        let node = self.outcomes[i].node.map(NodeId);
        let lifted = match (&self.faults[i].action, node) {
            (Action::Kill { .. }, Some(n)) => host.restart(n).and_then(|()| {
                self.down.remove(&n.0);
                // A new process has no link faults: give it those still in force.
                if self.links.is_empty() {
                    Ok(())
                } else {
                    self.push_links(host, Some(n.0))
                }
            }),
            (Action::Pause { .. }, Some(n)) => host.signal(n, Signal::Cont),
            _ => {
                self.links.remove(&i);
                self.push_links(host, None)
            }
        };
        match lifted {
            Ok(()) => self.outcomes[i].ended = Some(now),
            Err(e) => {
                let why = format!("ending it: {e:#}");
                self.outcomes[i].error = Some(why);
            }
        }
    }

    /// The directed links a link fault touches, each with what it imposes.
    fn link_faults(&self, action: &Action, node: Option<u32>) -> Vec<DirectedFault> {
        let all: Vec<u32> = (0..self.nodes).collect();
        let both = |a: u32, b: u32, f: LinkFault| [((a, b), f), ((b, a), f)];
        match action {
            Action::Partition { cut, .. } => {
                let group_of = |n: u32| -> Option<usize> {
                    match cut {
                        Cut::Isolate(_) => Some(usize::from(Some(n) == node)),
                        Cut::Groups(g) => g.iter().position(|g| g.contains(&n)),
                    }
                };
                let blocked = LinkFault {
                    blocked: true,
                    ..LinkFault::default()
                };
                let mut out = Vec::new();
                for &a in &all {
                    for &b in &all {
                        let apart = match (group_of(a), group_of(b)) {
                            (Some(x), Some(y)) => x != y,
                            _ => true,
                        };
                        if a != b && apart {
                            out.push(((a, b), blocked));
                        }
                    }
                }
                out
            }
            Action::Delay { peer, delay, .. } => {
                let n = node.expect("delay has a target");
                let f = LinkFault {
                    delay: *delay,
                    ..LinkFault::default()
                };
                all.iter()
                    .filter(|p| **p != n && peer.is_none_or(|q| q == **p))
                    .flat_map(|p| both(n, *p, f))
                    .collect()
            }
            Action::Loss { loss, .. } => {
                let n = node.expect("loss has a target");
                let f = LinkFault {
                    loss: *loss,
                    ..LinkFault::default()
                };
                all.iter()
                    .filter(|p| **p != n)
                    .flat_map(|p| both(n, *p, f))
                    .collect()
            }
            Action::Kill { .. } | Action::Pause { .. } | Action::Reconfigure { .. } => Vec::new(),
        }
    }

    /// Sends every node that is up (or only `only`) the faults now in force on the links it
    /// sends on: all of them, so a lifted fault is lifted everywhere.
    fn push_links(&mut self, host: &mut dyn FaultHost, only: Option<u32>) -> anyhow::Result<()> {
        let mut per_node: BTreeMap<u32, BTreeMap<u32, LinkFault>> = BTreeMap::new();
        for links in self.links.values() {
            for &((from, to), f) in links {
                let e = per_node.entry(from).or_default().entry(to).or_default();
                *e = e.and(f);
            }
        }
        let mut first_error = None;
        let targets =
            (0..self.nodes).filter(|n| only.is_none_or(|o| o == *n) && !self.down.contains(n));
        for n in targets {
            let links: Vec<(NodeId, LinkFault)> = per_node
                .get(&n)
                .map(|m| m.iter().map(|(to, f)| (NodeId(*to), *f)).collect())
                .unwrap_or_default();
            if let Err(e) = host.impair_links(NodeId(n), &links) {
                first_error.get_or_insert(e.context(format!("node {n}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster that records what was done to it.
    #[derive(Default)]
    struct Fake {
        leader: Option<(NodeId, Ballot)>,
        log: Vec<String>,
        fail_signals: bool,
        links: BTreeMap<u32, Vec<(NodeId, LinkFault)>>,
        /// The cluster refuses membership changes with this reason.
        refuse: Option<&'static str>,
    }

    impl FaultHost for Fake {
        fn leadership(&mut self) -> Option<(NodeId, Ballot)> {
            self.leader
        }
        fn signal(&mut self, node: NodeId, signal: Signal) -> anyhow::Result<()> {
            if self.fail_signals {
                anyhow::bail!("no such process");
            }
            self.log.push(format!("{} {}", signal.name(), node.0));
            Ok(())
        }
        fn restart(&mut self, node: NodeId) -> anyhow::Result<()> {
            self.log.push(format!("restart {}", node.0));
            Ok(())
        }
        fn impair_links(
            &mut self,
            node: NodeId,
            links: &[(NodeId, LinkFault)],
        ) -> anyhow::Result<()> {
            self.links.insert(node.0, links.to_vec());
            Ok(())
        }
        fn reconfigure(
            &mut self,
            add: Option<NodeId>,
            remove: Option<NodeId>,
        ) -> anyhow::Result<SystemTime> {
            if let Some(why) = self.refuse {
                anyhow::bail!("refused: {why}");
            }
            let id = |n: Option<NodeId>| n.map_or("-".into(), |n| n.0.to_string());
            self.log
                .push(format!("reconfigure +{} -{}", id(add), id(remove)));
            Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(7))
        }
    }

    fn parse(text: &str) -> Result<Fault, (String, String)> {
        let spec: FaultSpec = toml::from_str(text).map_err(|e| ("toml".into(), e.to_string()))?;
        spec.fault()
    }

    fn ballot(round: u64, node: u32) -> Ballot {
        Ballot {
            round,
            node: NodeId(node),
        }
    }

    #[test]
    fn specs_become_typed_faults_and_wrong_keys_are_named() {
        let f = parse("at_s = 2.0\naction = \"kill\"\ntarget = \"leader\"\nrestart_after_s = 2.0")
            .unwrap();
        assert_eq!(f.at, Duration::from_secs(2));
        assert_eq!(
            f.action,
            Action::Kill {
                target: Target::Leader,
                restart_after: Some(Duration::from_secs(2))
            }
        );
        let f =
            parse("at_s = 1\naction = \"partition\"\ngroups = [[0], [1, 2]]\nfor_s = 1").unwrap();
        assert!(matches!(
            f.action,
            Action::Partition {
                cut: Cut::Groups(_),
                ..
            }
        ));
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            err("at_s = 1\naction = \"kill\"\ntarget = 0\nfor_s = 1").0,
            "for_s"
        );
        assert_eq!(err("at_s = 1\naction = \"pause\"\ntarget = 0").0, "for_s");
        assert_eq!(
            err("at_s = 1\naction = \"loss\"\ntarget = 0\nloss = 1.5\nfor_s = 1").0,
            "loss"
        );
        assert_eq!(
            err("at_s = 1\naction = \"partition\"\ngroups = [[0, 1], [1]]\nfor_s = 1").1,
            "node 1 is in two groups"
        );
        assert_eq!(err("at_s = -1\naction = \"kill\"\ntarget = 0").0, "at_s");
        assert!(err("at_s = 1\naction = \"kill\"\ntarget = \"boss\"")
            .1
            .contains("\"leader\", \"follower\", \"any\", \"learner\" or a node id"));
        assert!(err("at_s = 1\naction = \"explode\"\ntarget = 0")
            .1
            .contains("explode"));
        let f = parse("at_s = 9\naction = \"kill\"\ntarget = 5").unwrap();
        assert_eq!(f.check(3, Duration::from_secs(10)).unwrap_err().0, "target");
        let f = parse("at_s = 9\naction = \"kill\"\ntarget = 1").unwrap();
        assert_eq!(f.check(3, Duration::from_secs(5)).unwrap_err().0, "at_s");
    }

    #[test]
    fn a_kill_of_the_leader_resolves_it_then_restarts_it() {
        let f =
            parse("at_s = 2\naction = \"kill\"\ntarget = \"leader\"\nrestart_after_s = 2").unwrap();
        let mut s = Schedule::new(&[f], 3, 0, true, 1);
        let mut host = Fake {
            leader: Some((NodeId(1), ballot(3, 1))),
            ..Fake::default()
        };
        let t = SystemTime::UNIX_EPOCH;
        s.step(&mut host, Duration::from_millis(1_900), t);
        assert!(host.log.is_empty(), "nothing is due before 2 s");
        assert_eq!(s.next_due(), Some(Duration::from_secs(2)));
        s.step(&mut host, Duration::from_millis(2_000), t);
        assert_eq!(host.log, ["KILL 1"]);
        host.leader = Some((NodeId(2), ballot(4, 2)));
        s.step(&mut host, Duration::from_millis(4_100), t);
        assert_eq!(host.log, ["KILL 1", "restart 1"]);
        let o = &s.outcomes()[0];
        assert_eq!((o.node, o.error.as_deref()), (Some(1), None));
        assert!(o.started.is_some() && o.ended.is_some());
    }

    #[test]
    fn a_fault_that_cannot_be_applied_is_an_error_not_a_silence() {
        let kill = parse("at_s = 0\naction = \"kill\"\ntarget = \"leader\"").unwrap();
        let pause = parse("at_s = 0\naction = \"pause\"\ntarget = 0\nfor_s = 1").unwrap();
        let late = parse("at_s = 5\naction = \"pause\"\ntarget = 0\nfor_s = 1").unwrap();
        let mut s = Schedule::new(&[kill, pause, late], 3, 0, true, 1);
        let mut host = Fake {
            fail_signals: true,
            ..Fake::default()
        };
        s.step(&mut host, Duration::ZERO, SystemTime::UNIX_EPOCH);
        s.finish(&mut host, SystemTime::UNIX_EPOCH);
        let errors: Vec<_> = s.outcomes().iter().map(|o| o.error.clone()).collect();
        assert_eq!(
            errors[0].as_deref(),
            Some("no node leads at this moment"),
            "no leader to kill"
        );
        assert_eq!(errors[1].as_deref(), Some("no such process"));
        assert_eq!(
            errors[2].as_deref(),
            Some("the measured window ended before it")
        );
        assert!(s.outcomes().iter().all(|o| o.started.is_none()));
    }

    #[test]
    fn a_leaderless_protocol_loses_node_zero_and_follower_is_the_first_other_node() {
        let kill = parse("at_s = 0\naction = \"kill\"\ntarget = \"leader\"").unwrap();
        let pause =
            parse("at_s = 0\naction = \"pause\"\ntarget = \"follower\"\nfor_s = 1").unwrap();
        let mut s = Schedule::new(&[kill, pause], 3, 0, false, 1);
        let mut host = Fake::default();
        s.step(&mut host, Duration::ZERO, SystemTime::UNIX_EPOCH);
        assert_eq!(host.log, ["KILL 0", "STOP 1"]);
        s.finish(&mut host, SystemTime::UNIX_EPOCH);
        assert_eq!(
            host.log,
            ["KILL 0", "STOP 1", "CONT 1"],
            "a pause is lifted at the end"
        );
    }

    #[test]
    fn partitions_and_slow_links_reach_every_node_and_heal() {
        let isolate = parse("at_s = 0\naction = \"partition\"\ntarget = 2\nfor_s = 2").unwrap();
        let delay =
            parse("at_s = 1\naction = \"delay\"\ntarget = 0\npeer = 1\ndelay_ms = 30\nfor_s = 5")
                .unwrap();
        let mut s = Schedule::new(&[isolate, delay], 3, 0, true, 1);
        let mut host = Fake::default();
        let t = SystemTime::UNIX_EPOCH;
        s.step(&mut host, Duration::ZERO, t);
        let blocked = |host: &Fake, from: u32| -> Vec<u32> {
            host.links[&from]
                .iter()
                .filter(|(_, f)| f.blocked)
                .map(|(n, _)| n.0)
                .collect()
        };
        assert_eq!(blocked(&host, 2), [0, 1]);
        assert_eq!(blocked(&host, 0), [2]);
        assert_eq!(blocked(&host, 1), [2]);
        s.step(&mut host, Duration::from_secs(1), t);
        let delay_of = |host: &Fake, from: u32, to: u32| {
            host.links[&from]
                .iter()
                .find(|(n, _)| n.0 == to)
                .map(|(_, f)| f.delay)
        };
        assert_eq!(delay_of(&host, 0, 1), Some(Duration::from_millis(30)));
        assert_eq!(delay_of(&host, 1, 0), Some(Duration::from_millis(30)));
        assert_eq!(
            delay_of(&host, 0, 2),
            Some(Duration::ZERO),
            "still cut, not slowed"
        );
        s.step(&mut host, Duration::from_secs(2), t);
        assert!(blocked(&host, 2).is_empty(), "the partition healed");
        assert_eq!(delay_of(&host, 0, 1), Some(Duration::from_millis(30)));
        s.finish(&mut host, t);
        assert!(
            host.links.values().all(|l| l.is_empty()),
            "{:?}",
            host.links
        );
    }

    #[test]
    fn leader_changes_are_kept_once_each() {
        let mut seen = Vec::new();
        let t = SystemTime::UNIX_EPOCH;
        note_leader(&mut seen, t, Some((NodeId(0), ballot(1, 0))));
        note_leader(&mut seen, t, Some((NodeId(0), ballot(1, 0))));
        note_leader(&mut seen, t, None);
        note_leader(&mut seen, t, Some((NodeId(2), ballot(2, 2))));
        note_leader(&mut seen, t, Some((NodeId(2), ballot(3, 2))));
        let seen: Vec<_> = seen.iter().map(|l| (l.leader.0, l.ballot.round)).collect();
        assert_eq!(seen, [(0, 1), (2, 2), (2, 3)]);
    }

    #[test]
    fn a_node_killed_during_a_partition_gets_it_again_when_it_restarts() {
        let kill = parse("at_s = 0\naction = \"kill\"\ntarget = 0\nrestart_after_s = 2").unwrap();
        let cut = parse("at_s = 1\naction = \"partition\"\ntarget = 0\nfor_s = 5").unwrap();
        let mut s = Schedule::new(&[kill, cut], 3, 0, true, 1);
        let mut host = Fake::default();
        let t = SystemTime::UNIX_EPOCH;
        s.step(&mut host, Duration::from_secs(1), t);
        assert!(!host.links.contains_key(&0), "a dead node is not asked");
        assert_eq!(host.links[&1].len(), 1);
        s.step(&mut host, Duration::from_secs(2), t);
        assert_eq!(
            host.links[&0].len(),
            2,
            "the restarted node is cut off again"
        );
    }

    #[test]
    fn a_reconfigure_names_its_nodes_with_add_and_remove() {
        let f =
            parse("at_s = 2\naction = \"reconfigure\"\nremove = \"follower\"\nadd = 3").unwrap();
        assert_eq!(
            f.action,
            Action::Reconfigure {
                add: Some(Target::Node(3)),
                remove: Some(Target::Follower)
            }
        );
        assert_eq!(f.action.target_name(), "remove follower add 3");
        assert_eq!(f.action.span(), None, "it ends when chosen");
        let err =
            |text: &str| parse(&format!("at_s = 1\naction = \"reconfigure\"\n{text}")).unwrap_err();
        assert_eq!(err("").1, "`reconfigure` needs `add`, `remove` or both");
        assert!(err("add = \"leader\"").1.contains("is a voter already"));
        assert!(err("remove = \"learner\"")
            .1
            .contains("votes in no configuration"));
        assert_eq!(err("target = 1\nadd = 3").0, "target");
        assert_eq!(err("add = 3\nfor_s = 1").0, "for_s");
        assert_eq!(
            err("add = 2\nremove = 2").1,
            "node 2 is both added and removed"
        );
        assert_eq!(
            parse("at_s = 1\naction = \"kill\"\ntarget = 0\nadd = 3")
                .unwrap_err()
                .0,
            "add"
        );
        // Node ids are checked against every node, learners included.
        let f = parse("at_s = 1\naction = \"reconfigure\"\nadd = 4\nremove = 0").unwrap();
        assert!(f.check(5, Duration::from_secs(5)).is_ok());
        assert_eq!(
            f.check(4, Duration::from_secs(5)).unwrap_err(),
            ("add".into(), "node 4 is not in a cluster of 4".into())
        );
    }

    #[test]
    fn replacements_resolve_among_the_voters_the_schedule_left() {
        let replace = |at: u32| {
            parse(&format!(
                "at_s = {at}\naction = \"reconfigure\"\nremove = \"follower\"\nadd = \"learner\""
            ))
            .unwrap()
        };
        let leader =
            parse("at_s = 3\naction = \"reconfigure\"\nremove = \"leader\"\nadd = \"learner\"")
                .unwrap();
        let kill = parse("at_s = 4\naction = \"kill\"\ntarget = \"follower\"").unwrap();
        // Voters 0-2, learners 3 and 4; node 0 leads.
        let mut s = Schedule::new(&[replace(1), replace(2), leader, kill], 3, 2, true, 1);
        let mut host = Fake {
            leader: Some((NodeId(0), ballot(1, 0))),
            ..Fake::default()
        };
        let t = SystemTime::UNIX_EPOCH;
        s.step(&mut host, Duration::from_secs(2), t);
        // The first follower (1) gives way to a learner that never voted (3), then the next
        // follower (2) to the other (4).
        assert_eq!(host.log, ["reconfigure +3 -1", "reconfigure +4 -2"]);
        // No learner is left that never voted: the removed voter with the lowest id comes back.
        s.step(&mut host, Duration::from_secs(3), t);
        assert_eq!(host.log[2], "reconfigure +1 -0");
        // Voters {1, 3, 4} with node 3 leading: the follower now is node 1.
        host.leader = Some((NodeId(3), ballot(2, 3)));
        s.step(&mut host, Duration::from_secs(4), t);
        assert_eq!(host.log[3], "KILL 1");
        let o = &s.outcomes()[0];
        assert_eq!(
            (o.node, o.added, o.error.as_deref()),
            (Some(1), Some(3), None)
        );
        assert_eq!(
            o.ended,
            Some(t + Duration::from_millis(7)),
            "ends when chosen"
        );
    }

    #[test]
    fn a_refused_change_is_recorded_and_changes_nothing() {
        let change = |at: u32| {
            let text = format!(
                "at_s = {at}\naction = \"reconfigure\"\nremove = \"follower\"\nadd = \"learner\""
            );
            parse(&text).unwrap()
        };
        let mut s = Schedule::new(&[change(1), change(2)], 3, 1, true, 1);
        let mut host = Fake {
            leader: Some((NodeId(0), ballot(1, 0))),
            refuse: Some("node 3 is not one of the cluster's nodes"),
            ..Fake::default()
        };
        let t = SystemTime::UNIX_EPOCH;
        s.step(&mut host, Duration::from_secs(1), t);
        host.refuse = None;
        s.step(&mut host, Duration::from_secs(2), t);
        let o = s.outcomes();
        assert_eq!(
            o[0].error.as_deref(),
            Some("refused: node 3 is not one of the cluster's nodes")
        );
        assert!(o[0].started.is_none(), "not applied");
        // The refused change left the voters as they were: the same replacement again.
        assert_eq!(host.log, ["reconfigure +3 -1"]);
        assert!(o[1].started.is_some() && o[1].error.is_none());
        // Every node votes: no learner to add, and nothing is sent.
        let add = parse("at_s = 0\naction = \"reconfigure\"\nadd = \"learner\"").unwrap();
        let mut s = Schedule::new(&[add], 3, 0, true, 1);
        let mut host = Fake::default();
        s.step(&mut host, Duration::ZERO, t);
        assert_eq!(
            s.outcomes()[0].error.as_deref(),
            Some("add learner: every node of the cluster votes: there is no learner")
        );
        assert!(host.log.is_empty());
    }
}
