//! A deterministic simulator that hunts for bugs in the protocol core (`crates/paxos`).
//!
//! One seed drives everything. The simulator owns a virtual clock that jumps straight to the next
//! thing that can happen (a message delivery, a write completing, a node's deadline, a client
//! timer, a scheduled fault); there is no wall clock, no thread and no hash-map iteration order
//! anywhere in a run, and every random choice comes from the simulator's own generator
//! ([`rng::SimRng`], one stream per purpose). The same [`SimConfig`] therefore replays the same
//! run, event for event: `paxbench sim --seeds 17..18` reproduces seed 17. (A seed names a run
//! for one version of the simulator's draws and the core's defaults; `tests/regressions.rs`
//! says how to re-validate pinned seeds when either changes.)
//!
//! # Driving the core
//!
//! The simulator drives each [`paxos::Node`] exactly as the core's contract says: after every
//! input (a message, a client request, a timeout, a completed write) it drains the node's actions
//! and carries them out in order. `Send`/`Broadcast` go through the network model (a node's
//! messages to itself never leave the core). `Reply` goes back to the client over the network.
//! `Persist` becomes a write that completes after 20 µs-1 ms (slower on some crash seeds), in
//! token order; only then are its records applied to the node's [`paxos::Durable`] and
//! `handle_persisted` called. A node is woken with `handle_timeout` once the clock reaches its
//! `next_deadline()`.
//!
//! # Fault model
//!
//! Faults are drawn per seed from a [`FaultProfile`] (`none`, `lossy`, `partitions`, `crashes`,
//! `all`) and happen only before the *heal* time ([`SimConfig::heal_after`], 2 s by default):
//!
//! - **Network** ([`network`]): every message is delayed (200 µs + up to 0.2-4 ms of jitter, so
//!   messages overtake each other); `lossy` adds loss (1-21 %), duplication (up to 10 %) and
//!   reordering spikes (up to 60 ms, or on half the seeds up to 1.5 s, longer than an election
//!   timeout, so a deposed leader's messages arrive after its successor took over). Client
//!   traffic goes through the same model.
//! - **Partitions**: timed cuts of 100 ms-1.2 s: isolating a node or the current leader, splitting
//!   the cluster in two, one-way cuts (a node, or the leader, that is heard but cannot hear,
//!   or hears but is not heard), and the one link between the leader and a follower.
//! - **Clocks** ([`clock`]): every node reads its own clock, drifting within the drift bound the
//!   seed draws (`clock_drift_ppm` 0, 1000 or 200,000), often at its extremes and on half the
//!   seeds one slow clock among fast ones; the times a node is given are its clock's readings,
//!   and its deadlines are turned back into true time. Checkers and traces use true time.
//! - **Crashes**: a node (or the current leader) crashes and restarts 20-800 ms later through
//!   `Node::recover` with the durable state of its *completed* writes; everything in memory is
//!   lost. The writes in flight at the crash are an append-only log's unsynced tail: half the
//!   crashes keep a random prefix of their records, the other half lose them all. On some seeds
//!   the disk is slow (2-20 ms per write), so more writes are in flight at a crash. The "leader
//!   killed mid-batch" fault crashes the leader (or a Basic Paxos proposer) right after it sends
//!   an Accept carrying client commands, while that batch is in flight. The unreplicated
//!   baseline keeps nothing durable by design, so it is never crashed.
//!
//! At the heal, partitions end, crashed nodes restart, and from then on nothing is lost or
//! duplicated (messages are still delayed with jitter). Clients issue no new commands after it.
//!
//! # Clients
//!
//! Simulated clients issue puts, gets and deletes on a small key space (so commands conflict),
//! keeping one to three requests outstanding each, and record a history of invocations and
//! responses. A client sends to the node it believes leads (at first a random one; for Basic
//! Paxos clients are spread over all nodes), follows `NotLeader` hints, and after a client
//! timeout (300 ms) re-sends the *same* request id to another node: exactly-once execution is
//! the core's job, and the checkers verify it. A client never lets its request ids run
//! `reply_cache_per_client` or more ahead of the oldest one it still awaits: the core treats
//! requests that far behind as abandoned (answered `Expired`, never executed).
//!
//! # Checkers
//!
//! After every step ([`checker`] has the details), independent of what any node believes:
//!
//! 1. `one-value-per-slot`: from every acceptor's durable Accept records over the whole run, a
//!    (slot, ballot, value) accepted by a majority is chosen; two chosen values in one slot fail.
//! 2. `only-proposed-chosen`: every command in a chosen batch was issued by a client.
//! 3. `executed-logs-agree`: every slot a node executes holds the value chosen there, was chosen
//!    first, and comes in order (gaps only across an installed snapshot).
//! 4. `exactly-once-replies`: the chosen log replayed through an independent reference key-value
//!    model, deduplicating by (client, request), must agree with every reply clients got and with
//!    a node's state whenever it has executed the same prefix.
//! 5. `promise-monotonic`: a node's promise never goes down, and after a restart it is at least
//!    the highest promise that was durable before the crash.
//! 6. `accept-below-promise`: no acceptor makes an accept durable below a durable promise.
//! 7. `persist-before-send`: a Promise or Accepted leaves a node only after the promise or
//!    accept it reports is durable (the core's persist barrier).
//! 8. `real-time-reads` (with `reads = "lease"`): a `Get` answered from a leader's state saw every
//!    write that completed before it was invoked, and every write an earlier read saw.
//! 9. `lease-overlap` (with `reads = "lease"`): a leader of ballot `b` answers such a `Get` only
//!    while fewer than a quorum of nodes have a durable promise above `b`.
//! 10. `learners-never-vote`: a learner ([`SimConfig::learners`]) never sends a Promise or an
//!     Accepted, and only voters' accepts count towards a chosen value.
//!
//! **Liveness**: once faults stop, every outstanding command must complete within
//! [`default_liveness_bound`]: 30 s of virtual time after the heal for Multi-Paxos, 60 s for
//! Basic Paxos (exponential backoff under contention), 5 s for the unreplicated node. A run
//! where time stops advancing or that exceeds its step budget fails as `stuck`; a panic in the
//! core is caught and reported as `panic`.
//!
//! A failure is a value ([`Failure`]), not a panic: it carries the seed, the checker, what it saw,
//! the knobs the seed drew, and the last events of the run (20 by default).
//!
//! # Knobs
//!
//! Unless [`SimConfig::vary_knobs`] is off, each seed also draws protocol knobs (window, batch
//! size, snapshot interval as low as 3 slots, catch-up batch, reply cache size, explicit commits,
//! phase-1 skipping, reads by log or lease, the drift bound, a short election timeout, one or two
//! learners beside the voters, membership changes on a third of the Multi-Paxos seeds) so that
//! truncation, snapshots, catch-up, leases, learners and reconfiguration are exercised too. The
//! checkers model membership themselves: a slot's value counts as chosen only once a majority of
//! that slot's voters (by the reference's own replay of the changes) accepted it.
//!
//! # Use
//!
//! ```no_run
//! use paxos::Protocol;
//! use sim::{run, FaultProfile, SimConfig};
//!
//! let report = run(&SimConfig::new(Protocol::MultiPaxos, 3, 17, FaultProfile::All));
//! if let Some(failure) = report.failure {
//!     eprintln!("{failure}");
//! }
//! ```
//!
//! [`run_seeds`] sweeps a range of seeds on several threads; [`selftest`] checks that every
//! deliberately broken variant of the core is caught; [`contention()`] measures what backoff buys
//! Basic Paxos. Every report carries a [`fingerprint`] of all the nodes' outputs, so a change to
//! the core that must not alter its behaviour can be checked seed by seed
//! (`cargo run -p sim --example fingerprint`, before and after).
#![warn(missing_docs)]

pub mod checker;
pub mod clock;
pub mod contention;
pub mod faults;
pub mod fingerprint;
pub mod network;
pub mod rng;
pub mod selftest;
mod simulation;
pub mod sweep;
pub mod trace;

pub use checker::{Check, Violation};
pub use contention::{contention, fixed_backoff, rtt_backoff, ContentionReport};
pub use faults::FaultProfile;
pub use simulation::{
    default_liveness_bound, run, Failure, HistoryEntry, RunReport, RunStats, SimConfig, Workload,
};
pub use sweep::{default_jobs, run_seeds, SweepSummary};
