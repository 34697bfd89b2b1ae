//! paxbench load generators: open-loop and closed-loop clients of a paxbench cluster that record
//! latencies in hdrhistogram.
//!
//! - **Open loop** ([`Mode::Open`]): requests follow a fixed schedule ([`schedule::Schedule`],
//!   constant or Poisson, seeded) at a target rate that never adapts to the backlog. Every latency
//!   is measured with a monotonic clock from the request's *intended* send time, so a stall is
//!   charged to every request it delays (no coordinated omission). The driver sleeps on a
//!   precise timer (a Linux timerfd in the runtime's epoll; tokio's ~1 ms sleep elsewhere) until
//!   the next request is due and sends it then, within tens of µs; at high rates it coalesces,
//!   waking at most every [`LoadConfig::pacing`] and sending everything due, one write per
//!   connection. The send lag in the summary shows how late sends left.
//! - **Closed loop** ([`Mode::Closed`]): C clients, each keeping D requests outstanding; a
//!   request is timed from the moment its slot freed.
//! - **Workload** ([`workload::Workload`]): key count, uniform or zipf keys, a share of
//!   operations on a few hot keys (the conflict knob: reads and writes of one key overlap),
//!   read fraction, value size, seed. Every written value is unique to its write (it starts
//!   with the session and request id), so a read names the write it saw. [`Target`] picks the
//!   nodes: the leader, all nodes (Basic Paxos contention), or a list. `NotLeader` redirects
//!   are followed, re-sending the same request id (execution is exactly-once per client and
//!   request). [`LoadConfig::read_nodes`] sends the `Get`s elsewhere: to learners that answer
//!   them from their own state (`reads = "learner"`, **not linearizable**), spread round-robin
//!   per request, while writes still go to the target. A read node whose `Get` timed out, or
//!   that cannot be reached, is passed over for a second, then probed with one `Get` until it
//!   answers; with none to read at, `Get`s go to the target.
//! - **Connections**: one per node, all opened at once before the load starts (and before its
//!   start instant is fixed, so a node that does not answer delays the start, not the
//!   schedule). A connection lost during the load is reopened on a task of its own while the
//!   sends to the other nodes go on; what is due for that node waits for it, and if it cannot
//!   be reached, its requests time out and it is tried again a second later.
//! - **Recording** ([`record::Recorder`]): µs, 3 significant digits, one histogram per second of
//!   the measured window plus the merged one, after a discarded warm-up. Requests are assigned
//!   to the window and intervals by their intended send time. Errors and timeouts are counted;
//!   timeouts are exact: an answer at or after intended time + timeout is a timeout, and stays
//!   one (its late latency is not recorded).
//! - **Self-measurement**: the lag of each send behind its schedule goes into its own histogram;
//!   [`LoadSummary::generator_bound`] says when the generator, not the system, set the pace.
//!   The generator also reads its own CPU time over the measured window
//!   ([`LoadSummary::generator_cpu`], [`cpu`] says whose time it is): user and system time,
//!   wake-ups, and CPU µs per request sent ([`LoadSummary::generator_cpu_us_per_request`]).
//! - **Timeline** ([`timeline::Timeline`]): the measured window in 100 ms buckets
//!   ([`TIMELINE_BUCKET`]), each with the completions, errors and timeouts that *happened* in
//!   it and a small latency histogram, so a fault during the run shows as the buckets where
//!   nothing completed.
//! - **History** ([`history::History`], on with [`LoadConfig::history`]): every operation the
//!   clients sent from the start of the load, with its invocation (the actual send) and return
//!   instants and what it was told (`Unknown` for anything but a definite success), for a
//!   linearizability check by `lincheck`. Bounded by a cap; a capped history stays sound (see
//!   [`history`]).
//!
//! Files ([`LoadResult::write_files`]): `hist.hlog` (interval log), `summary.json`
//! ([`LoadSummary`]), `timeline.json` ([`timeline`] has the format) and, with a history,
//! `history.jsonl` ([`history`] has the format).
//!
//! [`run`] is the library entry point (the experiment runner calls it in-process); `paxbench
//! load` is its command line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use paxos::NodeId;

pub mod cpu;
mod driver;
pub mod history;
mod pacer;
pub mod record;
pub mod schedule;
pub mod timeline;
pub mod workload;

pub use cpu::{CpuScope, GeneratorCpu};
pub use history::History;
/// The history types ([`History::ops`] are `lincheck::Operation`s).
pub use lincheck;
pub use schedule::Arrivals;
pub use timeline::{Timeline, TimelineBucket, TIMELINE_BUCKET};
pub use workload::{value_id, KeyDistribution, Workload};

/// The interval log's file name in a generator's output directory.
pub const INTERVAL_LOG_FILE: &str = "hist.hlog";
/// The summary's file name.
pub const SUMMARY_FILE: &str = "summary.json";
/// The timeline's file name.
pub const TIMELINE_FILE: &str = "timeline.json";
/// The history's file name (written only when a history was recorded).
pub const HISTORY_FILE: &str = "history.jsonl";

/// How far beyond one pacing interval the send-lag p99 may go before a run counts as
/// generator-bound, in µs. A healthy generator sends within [`LoadConfig::pacing`] (coalescing
/// at high rates) plus its wake-up latency (~60 µs median on a shared 2-core VM) of the intended
/// instant; with the default 200 µs pacing, measured send-lag p99s there were 0.2-0.6 ms at
/// 1,000 ops/s and under ~0.9 ms up to 10,000 ops/s. A p99 above pacing + 0.8 ms (1 ms at the
/// default) means sends sat well behind the schedule: the generator (or the machine it shares)
/// fell behind, and latencies carry that delay.
pub const GENERATOR_LAG_SLACK_US: u64 = 800;

/// The finest pacing [`auto_pacing`] picks, 200 µs: up to [`PACING_GROWS_ABOVE_OPS`]. On a
/// 2-core machine shared with three nodes, 50 µs cost the generator ~10% more CPU at 200,000
/// ops/s than 200 µs (each wake-up is a timer interrupt, a hand-off to the connection task and
/// a QUIC write) for no better latency there, while at 10,000 ops/s 500 µs cost ~200 µs of
/// latency.
pub const MIN_AUTO_PACING: Duration = Duration::from_micros(200);
/// The coarsest pacing [`auto_pacing`] picks, 1 ms.
pub const MAX_AUTO_PACING: Duration = Duration::from_millis(1);
/// The rate (ops/s) above which [`auto_pacing`] grows the pacing in proportion to the rate.
pub const PACING_GROWS_ABOVE_OPS: f64 = 80_000.0;

/// The default [`LoadConfig::pacing`] for an open loop offering `rate` requests per second:
/// [`MIN_AUTO_PACING`] up to [`PACING_GROWS_ABOVE_OPS`], then in proportion to the rate (500 µs
/// at 200,000 ops/s), at most [`MAX_AUTO_PACING`].
///
/// Every wake-up that sends costs the generator a timer interrupt and a write, and hands the
/// nodes a round (the leader proposes what one packet brought): a fixed pacing makes 5,000
/// rounds a second whatever the rate, and on a machine the nodes share with the generator
/// those rounds take CPU that a high rate's commands need. Growing the pacing with the rate
/// keeps the rounds' share falling as the commands' share rises. The cost is honest and
/// visible: a request waits up to one pacing interval for its send, and that wait is in its
/// latency (each is timed from its intended instant). Measured on a shared 2-core VM against 3
/// Multi-Paxos nodes, 3 repetitions each, one run after the other: at 150k / 200k / 250k
/// ops/s the generator's CPU per request was 1.9-2.2 / 1.3-1.4 / 1.0-1.2 µs with this pacing
/// against 2.3-2.5 / 1.9-2.0 / 1.5 µs with 200 µs, and no point was generator-bound against 3
/// of 9; p50 was 0.1-0.5 ms higher (0.85-1.18 ms against 0.66-0.73 ms at 200k); p99 met a
/// 10 ms SLO at every point either way.
pub fn auto_pacing(rate: f64) -> Duration {
    let grown = MIN_AUTO_PACING.as_secs_f64() * rate / PACING_GROWS_ABOVE_OPS;
    if grown.is_finite() {
        Duration::from_secs_f64(grown.max(0.0)).clamp(MIN_AUTO_PACING, MAX_AUTO_PACING)
    } else {
        MIN_AUTO_PACING
    }
}

/// What went wrong running a load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration is inconsistent.
    #[error("invalid load configuration: {0}")]
    Invalid(String),
    /// The precise timer (a Linux timerfd) could not be set up.
    #[error("cannot create the load generator's timer: {0}")]
    Timer(std::io::Error),
    /// Writing a result file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading a result file failed, or it is not what a generator writes.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// Open or closed loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A fixed schedule at `rate` requests per second.
    Open {
        /// Requests per second (offered load).
        rate: f64,
        /// Constant or Poisson gaps.
        arrivals: Arrivals,
    },
    /// `clients` sessions with `depth` requests outstanding each.
    Closed {
        /// Concurrent clients (each its own session).
        clients: usize,
        /// Requests each keeps outstanding (at most 4000: the reply-cache window).
        depth: usize,
    },
}

/// Which nodes receive requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The node that leads (asked for at the start; redirects move the load if it changes).
    Leader,
    /// Every node, spread round-robin (Basic Paxos contention).
    All,
    /// These nodes, spread round-robin.
    Nodes(Vec<NodeId>),
}

/// One load-generator run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// A client endpoint of the cluster (`node::config::ClusterConfig::client_endpoint`, or a
    /// quinn endpoint from `node::client_endpoint_on`).
    pub endpoint: node::ClientEndpoint,
    /// Every node of the cluster: id and address.
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// Open or closed loop.
    pub mode: Mode,
    /// What to ask for.
    pub workload: Workload,
    /// Where to send it.
    pub target: Target,
    /// Where the `Get`s go instead of the target, spread round-robin per request (default
    /// empty: to the target like every other request). For `reads = "learner"`: the learners,
    /// which answer a `Get` from their own state at once — **not linearizable**, as stale as
    /// the learner is behind. Every other operation still goes to [`LoadConfig::target`]. A
    /// `Get` a node answers `NotLeader` follows the redirect like any request.
    pub read_nodes: Vec<NodeId>,
    /// Discarded at the start (default 1 s).
    pub warmup: Duration,
    /// Measured after the warm-up (default 5 s).
    pub duration: Duration,
    /// A request unanswered this long after its intended send time is a timeout (default 2 s).
    pub timeout: Duration,
    /// Give up on a request (an error) after this many `NotLeader` answers (default 10).
    pub max_redirects: u32,
    /// Open loop: the shortest gap between two wake-ups that send (default
    /// [`auto_pacing`] of the rate). Each request is still timed from its own intended instant, but at
    /// rates above `1 / pacing` the driver does not wake per request: it wakes at most every
    /// `pacing` and sends everything due, one write per connection. Finer pacing lowers the send
    /// lag (by up to `pacing`) but costs the generator a wake-up, a cross-task hand-off and a
    /// QUIC write per send, and gives the nodes more, smaller packets; coarser pacing batches
    /// more per packet. Below `1 / pacing` requests/s every request is sent at its own instant.
    /// Zero wakes for every request.
    pub pacing: Duration,
    /// The nonce of the first client session; later sessions count up from it. Must not
    /// collide with another client's sessions begun in the same millisecond (default: 32 bits
    /// derived from the clock and the process id, the low 16 left for the session count).
    pub session_base: u64,
    /// When this generator's sessions began (ns since the UNIX epoch; default: when the
    /// configuration was made). Session ids carry it, so that the nodes can expire sessions
    /// safely (see `paxos::KvState`).
    pub sessions_created: paxos::Time,
    /// Record the clients' history ([`history::History`]) of at most this many operations,
    /// from the start of the load, warm-up included (default `None`: off). Past the cap no
    /// new operation is recorded and the history is truncated soundly (see [`history`]).
    /// Each recorded operation holds about 130 bytes plus its key and value (shared with the
    /// request) until the run ends, and room for `min(cap, expected requests)` is reserved at
    /// the start.
    pub history: Option<usize>,
    /// Set to the instant the load (its warm-up) starts, once the connections are open, for a
    /// caller that must act at given times into the run (faults). Default `None`.
    pub started: Option<std::sync::Arc<std::sync::OnceLock<Instant>>>,
    /// **Self-test only: a deliberately broken client** (default `false`; never set it in a
    /// benchmark). When a write times out, the generator sends the same operation again under a
    /// *fresh* request id, to the next node (where the lane's next requests go too), up to
    /// [`SELF_TEST_FRESH_ID_RETRIES`] times, and if a retry succeeds it believes (and records in
    /// its history) that the original operation succeeded, once. A write whose first attempt
    /// executed but whose reply was lost (its leader was killed, say) then executes twice,
    /// which the nodes' exactly-once execution cannot prevent because the ids differ: a later
    /// read can see the value come back after it was overwritten. Exists to show that the
    /// linearizability check catches it. (Timed-out reads are not sent again: that would be
    /// harmless, and only lengthen the history's intervals.)
    pub self_test_retry_fresh_id: bool,
    /// Whose CPU time [`LoadSummary::generator_cpu`] reads (default [`CpuScope::Thread`], the
    /// thread running the generator on a current-thread runtime; [`CpuScope::Process`] for a
    /// process that is only a generator). See [`cpu`].
    pub cpu_scope: CpuScope,
}

/// How many times the self-test's broken client ([`LoadConfig::self_test_retry_fresh_id`])
/// re-sends one timed-out operation under fresh ids before it gives up on it.
pub const SELF_TEST_FRESH_ID_RETRIES: u32 = 3;

impl LoadConfig {
    /// A configuration with the defaults above.
    pub fn new(
        endpoint: impl Into<node::ClientEndpoint>,
        nodes: Vec<(NodeId, SocketAddr)>,
        mode: Mode,
    ) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        LoadConfig {
            endpoint: endpoint.into(),
            nodes,
            mode,
            workload: Workload::default(),
            target: Target::Leader,
            read_nodes: Vec::new(),
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_redirects: 10,
            pacing: match mode {
                Mode::Open { rate, .. } => auto_pacing(rate),
                Mode::Closed { .. } => MIN_AUTO_PACING,
            },
            // Room for 2^16 sessions per run; the clock and pid keep runs begun in the same
            // millisecond apart. 32 bits keep the id short on the wire.
            session_base: u64::from((nanos ^ (u64::from(std::process::id()) << 20)) as u32)
                & !0xffff,
            sessions_created: paxos::Time(nanos),
            history: None,
            started: None,
            self_test_retry_fresh_id: false,
            cpu_scope: CpuScope::Thread,
        }
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |s: &str| Err(LoadError::Invalid(s.into()));
        if self.nodes.is_empty() {
            return bad("the cluster has no nodes");
        }
        match self.mode {
            Mode::Open { rate, .. } if !(rate > 0.0 && rate.is_finite()) => {
                return bad("the rate must be a positive number of requests per second")
            }
            Mode::Closed { clients, depth }
                if clients == 0 || depth == 0 || depth as u64 >= 4_000 =>
            {
                return bad("closed loop needs clients >= 1 and 1 <= depth < 4000")
            }
            _ => {}
        }
        if let Target::Nodes(ids) = &self.target {
            if ids.is_empty() {
                return bad("the target list is empty");
            }
            if let Some(id) = ids
                .iter()
                .find(|id| !self.nodes.iter().any(|n| n.0 == **id))
            {
                return Err(LoadError::Invalid(format!(
                    "target node {id} is not in the cluster"
                )));
            }
        }
        if let Some(id) = self
            .read_nodes
            .iter()
            .find(|id| !self.nodes.iter().any(|n| n.0 == **id))
        {
            return Err(LoadError::Invalid(format!(
                "read node {id} is not in the cluster"
            )));
        }
        self.workload.validate().map_err(LoadError::Invalid)?;
        // A request frame is the value plus well under 1 KiB (key, ids, framing).
        if self.workload.value_size > wire::DEFAULT_MAX_FRAME_LEN - 1024 {
            return Err(LoadError::Invalid(format!(
                "value_size {} does not fit a request frame (at most {} bytes)",
                self.workload.value_size,
                wire::DEFAULT_MAX_FRAME_LEN - 1024
            )));
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            return bad("duration and timeout must be positive");
        }
        if self.history == Some(0) {
            return bad("a history needs a cap of at least one operation");
        }
        Ok(())
    }
}

/// The numbers of one run (`summary.json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSummary {
    /// The open-loop target rate (requests/s); `null` for closed loop.
    pub offered_ops: Option<f64>,
    /// Requests completed per second of the measured window.
    pub throughput_ops: f64,
    /// Latency percentiles (µs), from intended send time to reply.
    pub p50_us: u64,
    /// 90th percentile (µs).
    pub p90_us: u64,
    /// 99th percentile (µs).
    pub p99_us: u64,
    /// 99.9th percentile (µs).
    pub p999_us: u64,
    /// Largest latency (µs).
    pub max_us: u64,
    /// Mean latency (µs).
    pub mean_us: f64,
    /// Requests of the window answered successfully in time.
    pub completed: u64,
    /// Requests of the window that failed (`Expired`, too many redirects).
    pub errors: u64,
    /// Requests of the window unanswered within the timeout.
    pub timeouts: u64,
    /// 99th percentile of how late sends left behind their schedule (µs).
    pub send_lag_p99_us: u64,
    /// The generator, not the system, was the bottleneck (send-lag p99 above the pacing plus
    /// [`GENERATOR_LAG_SLACK_US`]); latencies then overstate the system's.
    pub generator_bound: bool,
    /// Open loop: the pacing the generator ran with (µs; [`LoadConfig::pacing`]); 0 for a
    /// closed loop. The largest of merged generators'.
    #[serde(default)]
    pub pacing_us: u64,
    /// Discarded warm-up (s).
    pub warmup_s: f64,
    /// Measured window (s).
    pub duration_s: f64,
    /// The generator's own CPU time (user plus system) per request it sent in the measured
    /// window, µs; `None` where it could not be read (see [`cpu`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu_us_per_request: Option<f64>,
    /// What that figure is made of: user and system time, wake-ups, requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu: Option<GeneratorCpu>,
}

/// Everything a run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Latencies of the whole measured window (µs).
    pub merged: Histogram<u64>,
    /// Latencies per 1-second interval of the window, in order (µs).
    pub intervals: Vec<Histogram<u64>>,
    /// How late sends left behind schedule (µs).
    pub send_lag: Histogram<u64>,
    /// The headline numbers.
    pub summary: LoadSummary,
    /// Wall-clock time at which the measured window began (the interval log's base time).
    pub window_start: SystemTime,
    /// The measured window in [`TIMELINE_BUCKET`]s, by the instant events happened.
    pub timeline: Timeline,
    /// What the clients saw, when [`LoadConfig::history`] asked for it. Its instants are ns
    /// from its `origin_unix_ns`, the load's start ([`history`] has the details).
    pub history: Option<History>,
}

impl LoadResult {
    /// Writes the interval histograms as an HdrHistogram interval log (readable by
    /// `HistogramLogProcessor` and hdrhistogram's `IntervalLogIterator`); timestamps are
    /// seconds since the measured window began.
    pub fn write_interval_log(&self, path: &Path) -> Result<(), LoadError> {
        let err = |source| LoadError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut log = IntervalLogWriterBuilder::new()
                .add_comment("paxbench loadgen: request latency in microseconds")
                .with_start_time(self.window_start)
                .with_base_time(self.window_start)
                .begin_log_with(&mut out, &mut serializer)
                .map_err(err)?;
            let window = Duration::from_secs_f64(self.summary.duration_s);
            for (i, h) in self.intervals.iter().enumerate() {
                let start = Duration::from_secs(i as u64);
                let len = (window - start).min(Duration::from_secs(1));
                log.write_histogram(h, start, len, None).map_err(|e| {
                    err(std::io::Error::other(format!(
                        "serializing a histogram: {e:?}"
                    )))
                })?;
            }
        }
        std::fs::write(path, out).map_err(err)
    }

    /// One result from the results of several generators that ran the same window side by
    /// side (each on its own host, each timing its own requests, so no latency spans two
    /// clocks): histograms added interval by interval and timeline bucket by bucket (by
    /// index from each generator's own window start), rates and counts summed, the send lag
    /// the worst of them, generator-bound if any was. Histories are concatenated onto the
    /// earliest origin among them (session ids differ between generators); if any was
    /// truncated the merged one is, at the earliest cutoff, with every part's later reads
    /// dropped (see [`history`]); if any part has no history the merged result has none (a
    /// history missing a generator's writes cannot be checked). `None` for no parts.
    pub fn merge(parts: Vec<LoadResult>) -> Option<LoadResult> {
        let histories: Option<Vec<History>> = parts.iter().map(|p| p.history.clone()).collect();
        let mut parts = parts.into_iter();
        let mut acc = parts.next()?;
        let mut offered = acc.summary.offered_ops;
        let (mut completed, mut errors, mut timeouts) = (
            acc.summary.completed,
            acc.summary.errors,
            acc.summary.timeouts,
        );
        let mut throughput = acc.summary.throughput_ops;
        let mut lag = acc.summary.send_lag_p99_us;
        let mut bound = acc.summary.generator_bound;
        // Every part's CPU, or none: a sum missing a generator would understate the cost.
        let mut cpu = acc.summary.generator_cpu.map(|c| vec![c]);
        for p in parts {
            let add = |a: &mut Histogram<u64>, b: &Histogram<u64>| {
                a.add(b).expect("histograms of one precision and range add");
            };
            add(&mut acc.merged, &p.merged);
            add(&mut acc.send_lag, &p.send_lag);
            for (i, h) in p.intervals.iter().enumerate() {
                match acc.intervals.get_mut(i) {
                    Some(mine) => add(mine, h),
                    None => acc.intervals.push(h.clone()),
                }
            }
            acc.timeline.add(&p.timeline);
            offered = match (offered, p.summary.offered_ops) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            completed += p.summary.completed;
            errors += p.summary.errors;
            timeouts += p.summary.timeouts;
            throughput += p.summary.throughput_ops;
            lag = lag.max(p.summary.send_lag_p99_us);
            bound |= p.summary.generator_bound;
            cpu = cpu.zip(p.summary.generator_cpu).map(|(mut all, c)| {
                all.push(c);
                all
            });
            acc.window_start = acc.window_start.min(p.window_start);
            acc.summary.pacing_us = acc.summary.pacing_us.max(p.summary.pacing_us);
            acc.summary.warmup_s = acc.summary.warmup_s.max(p.summary.warmup_s);
            acc.summary.duration_s = acc.summary.duration_s.max(p.summary.duration_s);
        }
        acc.summary = LoadSummary {
            offered_ops: offered,
            throughput_ops: throughput,
            completed,
            errors,
            timeouts,
            send_lag_p99_us: lag,
            generator_bound: bound,
            ..acc.summary.with_latencies(&acc.merged)
        }
        .with_cpu(cpu.and_then(GeneratorCpu::sum));
        acc.history = histories.and_then(History::merge);
        Some(acc)
    }

    /// Writes `timeline.json` ([`timeline`] has the format).
    pub fn write_timeline(&self, path: &Path) -> Result<(), LoadError> {
        self.timeline.write_json(path)
    }

    /// Writes `history.jsonl` ([`history`] has the format) if there is a history; returns
    /// whether it wrote one.
    pub fn write_history(&self, path: &Path) -> Result<bool, LoadError> {
        match &self.history {
            Some(h) => h.write_jsonl(path).map(|()| true),
            None => Ok(false),
        }
    }

    /// Writes every result file into `dir` (which must exist): [`INTERVAL_LOG_FILE`],
    /// [`SUMMARY_FILE`], [`TIMELINE_FILE`], and [`HISTORY_FILE`] if there is a history.
    pub fn write_files(&self, dir: &Path) -> Result<(), LoadError> {
        self.write_interval_log(&dir.join(INTERVAL_LOG_FILE))?;
        self.write_summary_json(&dir.join(SUMMARY_FILE))?;
        self.write_timeline(&dir.join(TIMELINE_FILE))?;
        self.write_history(&dir.join(HISTORY_FILE))?;
        Ok(())
    }

    /// Reads the timeline and (if the file is there) the history that
    /// [`LoadResult::write_files`] wrote into `dir`. The interval log and summary are read
    /// by their own readers (`results::read_interval_log`, serde).
    pub fn read_timeline_and_history(dir: &Path) -> Result<(Timeline, Option<History>), LoadError> {
        let timeline = Timeline::read_json(&dir.join(TIMELINE_FILE))?;
        let path = dir.join(HISTORY_FILE);
        let history = path
            .exists()
            .then(|| History::read_jsonl(&path))
            .transpose()?;
        Ok((timeline, history))
    }

    /// Writes [`LoadSummary`] as pretty JSON.
    pub fn write_summary_json(&self, path: &Path) -> Result<(), LoadError> {
        let text = serde_json::to_string_pretty(&self.summary).expect("plain data serializes");
        std::fs::write(path, text + "\n").map_err(|source| LoadError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

impl LoadSummary {
    /// This summary with its generator CPU figures set from `cpu`.
    fn with_cpu(self, cpu: Option<GeneratorCpu>) -> LoadSummary {
        LoadSummary {
            generator_cpu_us_per_request: cpu.as_ref().and_then(GeneratorCpu::us_per_request),
            generator_cpu: cpu,
            ..self
        }
    }

    /// This summary with its latency figures (percentiles, max, mean) read from `m`; zeros
    /// for an empty histogram.
    fn with_latencies(&self, m: &Histogram<u64>) -> LoadSummary {
        let q = |x: f64| {
            if m.is_empty() {
                0
            } else {
                m.value_at_quantile(x)
            }
        };
        LoadSummary {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if m.is_empty() { 0 } else { m.max() },
            mean_us: if m.is_empty() { 0.0 } else { m.mean() },
            ..self.clone()
        }
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offered_ops {
            Some(r) => write!(f, "offered {r:.0}/s ")?,
            None => write!(f, "closed loop ")?,
        }
        write!(
            f,
            "throughput {:.0}/s p50 {} µs p90 {} µs p99 {} µs p99.9 {} µs max {} µs \
             completed {} errors {} timeouts {} send-lag p99 {} µs{}",
            self.throughput_ops,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.completed,
            self.errors,
            self.timeouts,
            self.send_lag_p99_us,
            if self.generator_bound {
                " GENERATOR-BOUND"
            } else {
                ""
            }
        )?;
        if let (Some(per), Some(c)) = (self.generator_cpu_us_per_request, &self.generator_cpu) {
            write!(
                f,
                " generator CPU {per:.2} µs/request (user {:.3} s, system {:.3} s, \
                 {} wake-ups, {} preemptions)",
                c.user_s, c.system_s, c.voluntary_switches, c.involuntary_switches
            )?;
        }
        Ok(())
    }
}

/// Runs one load generator against a cluster: connects, applies the load for warm-up plus
/// duration, waits (at most the timeout) for requests still in flight, and returns what it
/// measured. Connection failures during the run show up as timeouts, not as an `Err`.
pub async fn run(config: LoadConfig) -> Result<LoadResult, LoadError> {
    config.validate()?;
    let offered_ops = match config.mode {
        Mode::Open { rate, .. } => Some(rate),
        Mode::Closed { .. } => None,
    };
    let pacing_us = offered_ops.map_or(0, |_| config.pacing.as_micros() as u64);
    let lag_limit_us = config.pacing.as_micros() as u64 + GENERATOR_LAG_SLACK_US;
    let mut d = driver::Driver::connect(config).await?;
    d.run().await;
    let cpu = d.cpu();
    let rec = d.rec;
    if !rec.send_lag.is_empty() {
        let lag = &rec.send_lag;
        tracing::info!(
            p50_us = lag.value_at_quantile(0.5),
            p99_us = lag.value_at_quantile(0.99),
            max_us = lag.max(),
            "load generator send lag"
        );
    }
    let window_start =
        SystemTime::now() - Instant::now().saturating_duration_since(rec.window_start_instant());
    let mut result = summarize(rec, offered_ops, window_start, lag_limit_us);
    result.summary = result.summary.with_cpu(cpu);
    result.summary.pacing_us = pacing_us;
    Ok(result)
}

fn summarize(
    mut rec: record::Recorder,
    offered_ops: Option<f64>,
    window_start: SystemTime,
    lag_limit_us: u64,
) -> LoadResult {
    let send_lag_p99_us = if rec.send_lag.is_empty() {
        0
    } else {
        rec.send_lag.value_at_quantile(0.99)
    };
    let duration_s = rec.duration().as_secs_f64();
    let summary = LoadSummary {
        offered_ops,
        throughput_ops: rec.completed as f64 / duration_s,
        p50_us: 0,
        p90_us: 0,
        p99_us: 0,
        p999_us: 0,
        max_us: 0,
        mean_us: 0.0,
        completed: rec.completed,
        errors: rec.errors,
        timeouts: rec.timeouts,
        send_lag_p99_us,
        generator_bound: send_lag_p99_us > lag_limit_us,
        pacing_us: 0,
        warmup_s: rec.warmup().as_secs_f64(),
        duration_s,
        generator_cpu_us_per_request: None,
        generator_cpu: None,
    }
    .with_latencies(&rec.merged);
    let origin = window_start - rec.warmup();
    let origin_unix_ns = origin
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
    let history = rec
        .history
        .take()
        .map(|h| h.finish(rec.warmup(), origin_unix_ns));
    LoadResult {
        merged: rec.merged,
        intervals: rec.intervals,
        send_lag: rec.send_lag,
        summary,
        window_start,
        timeline: rec.timeline,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pacing_is_fine_at_low_rates_and_grows_with_high_ones() {
        let us = |rate: f64| auto_pacing(rate).as_micros();
        for rate in [0.0, 1.0, 1_000.0, 10_000.0, 80_000.0] {
            assert_eq!(us(rate), 200, "{rate} ops/s");
        }
        assert_eq!(us(100_000.0), 250);
        assert_eq!(us(200_000.0), 500);
        assert_eq!(us(400_000.0), 1_000);
        assert_eq!(us(1e9), 1_000);
        for odd in [f64::NAN, f64::INFINITY, -5.0] {
            assert_eq!(us(odd), 200, "{odd}");
        }
    }

    #[test]
    fn an_empty_run_summarizes_to_zeros_and_a_lagging_one_is_generator_bound() {
        let start = Instant::now();
        let rec = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(2));
        let r = summarize(rec, None, SystemTime::now(), 1_000);
        assert_eq!((r.summary.p99_us, r.summary.completed), (0, 0));
        assert!(!r.summary.generator_bound);
        assert_eq!(r.intervals.len(), 2);

        let lagging = || {
            let mut rec = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
            for i in 0..100u64 {
                let intended = start + Duration::from_millis(i);
                // Every send leaves 5 ms late; the system answers 1 ms after that.
                rec.record_send(intended, intended + Duration::from_millis(5));
                rec.record_success(intended, intended + Duration::from_millis(6));
            }
            rec
        };
        let r = summarize(lagging(), Some(100.0), SystemTime::now(), 1_000);
        assert!(r.summary.generator_bound, "{}", r.summary);
        // With 10 ms pacing, 5 ms late is within what pacing itself allows.
        let r10 = summarize(lagging(), Some(100.0), SystemTime::now(), 10_800);
        assert!(!r10.summary.generator_bound, "{}", r10.summary);
        assert_eq!(r.summary.completed, 100);
        assert!((r.summary.throughput_ops - 100.0).abs() < 1e-9);
        assert!((5_990..=6_010).contains(&r.summary.p50_us), "{}", r.summary);
    }

    #[test]
    fn merged_generators_add_histograms_and_sum_rates() {
        let start = Instant::now();
        let part = |latency_ms: u64, n: u64, lag_ms: u64| {
            let mut rec = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
            for i in 0..n {
                let intended = start + Duration::from_micros(i * 10);
                rec.record_send(intended, intended + Duration::from_millis(lag_ms));
                rec.record_success(intended, intended + Duration::from_millis(latency_ms));
            }
            summarize(rec, Some(n as f64), SystemTime::now(), 1_000)
        };
        let merged = LoadResult::merge(vec![part(1, 300, 0), part(9, 100, 2)]).unwrap();
        let s = &merged.summary;
        assert_eq!(s.completed, 400);
        assert_eq!(s.offered_ops, Some(400.0));
        assert!((s.throughput_ops - 400.0).abs() < 1e-9, "{s}");
        // Three quarters answered in 1 ms, a quarter in 9 ms: the merged p50 is 1 ms and the
        // p90 9 ms, which neither part alone shows.
        assert!((990..=1_010).contains(&s.p50_us), "{s}");
        assert!((8_990..=9_010).contains(&s.p90_us), "{s}");
        assert!(
            s.generator_bound,
            "the second part's sends lagged 2 ms: {s}"
        );
        assert!((1_990..=2_010).contains(&s.send_lag_p99_us), "{s}");
        assert_eq!(merged.intervals[0].len(), 400);
        assert!(LoadResult::merge(Vec::new()).is_none());

        // CPU: summed over the generators, and per request recomputed from the sums (1.2 ms
        // for 300 requests and 0.8 ms for 100: 5 µs each, not the mean of 4 and 8); absent if
        // any generator could not read its own.
        let cpu = |busy_s: f64, requests| GeneratorCpu {
            scope: CpuScope::Process,
            user_s: busy_s / 2.0,
            system_s: busy_s / 2.0,
            voluntary_switches: 7,
            involuntary_switches: 0,
            requests,
        };
        let with = |busy_s, n| {
            let mut r = part(1, n, 0);
            r.summary = r.summary.with_cpu(Some(cpu(busy_s, n)));
            r
        };
        let m = LoadResult::merge(vec![with(0.0012, 300), with(0.0008, 100)]).unwrap();
        let per = m.summary.generator_cpu_us_per_request.unwrap();
        assert!((per - 5.0).abs() < 1e-9, "{}", m.summary);
        assert_eq!(m.summary.generator_cpu.unwrap().voluntary_switches, 14);
        assert!(m
            .summary
            .to_string()
            .contains("generator CPU 5.00 µs/request"));
        let m = LoadResult::merge(vec![with(0.0012, 300), part(1, 100, 0)]).unwrap();
        assert_eq!(m.summary.generator_cpu_us_per_request, None);
        assert_eq!(m.summary.generator_cpu, None);
    }

    #[test]
    fn merged_results_add_timelines_and_concatenate_histories() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let put = |client: u64| paxos::Op::Put {
            key: bytes::Bytes::from_static(b"k"),
            value: bytes::Bytes::from(client.to_be_bytes().to_vec()),
        };
        let get = paxos::Op::Get {
            key: bytes::Bytes::from_static(b"k"),
        };
        // Generator A: no cap reached; a write at 10 ms, a read answered at 300 ms, one
        // completion in timeline bucket 2 and a timeout meant for bucket 1.
        let mut a = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1))
            .with_history(100, 10);
        let h = a.history.as_mut().unwrap();
        let w = h.invoke(1, &put(1), at(10)).unwrap();
        h.answered(w, &paxos::Outcome::Done, at(20));
        let r = h.invoke(1, &get, at(200)).unwrap();
        h.answered(r, &paxos::Outcome::Value(None), at(300));
        a.record_success(at(200), at(250));
        a.record_timeout(at(100), at(450));
        // Generator B, started 100 ms later (its window_start is 100 ms later): its cap of
        // one is reached at its own 50 ms, i.e. 150 ms on A's clock, before A's read returned.
        let mut b = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1))
            .with_history(1, 10);
        let h = b.history.as_mut().unwrap();
        let w = h.invoke(2, &put(2), at(5)).unwrap();
        assert!(h.invoke(2, &put(3), at(50)).is_none());
        h.answered(w, &paxos::Outcome::Done, at(30));
        b.record_success(at(200), at(290));
        let t = SystemTime::now();
        let ra = summarize(a, None, t, 1_000);
        let rb = summarize(b, None, t + Duration::from_millis(100), 1_000);
        assert!(!ra.history.as_ref().unwrap().truncated);
        let m = LoadResult::merge(vec![ra, rb]).unwrap();
        assert_eq!(m.timeline.buckets.len(), 10);
        assert_eq!(m.timeline.buckets[2].completed, 2);
        assert_eq!(m.timeline.buckets[2].latency.len(), 2);
        assert_eq!(m.timeline.buckets[1].timeouts, 1);
        let h = m.history.unwrap();
        assert!(h.truncated, "B was truncated, so the merged history is");
        assert_eq!(h.cutoff_ns, Some(150_000_000));
        assert_eq!(h.window_offset_ns, 0);
        // A's write and B's write (shifted by 100 ms); A's read, answered at 300 ms, after
        // B's cutoff, is dropped: it might have seen B's unrecorded write.
        let got: Vec<(u64, u64)> = h.ops.iter().map(|o| (o.client, o.invoked_ns)).collect();
        assert_eq!(got, vec![(1, 10_000_000), (2, 105_000_000)]);

        // A part without a history leaves the merged result without one.
        let plain = || {
            let rec = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
            summarize(rec, None, t, 1_000)
        };
        let with = {
            let rec = record::Recorder::new(start, Duration::ZERO, Duration::from_secs(1))
                .with_history(10, 10);
            summarize(rec, None, t, 1_000)
        };
        assert!(LoadResult::merge(vec![with, plain()])
            .unwrap()
            .history
            .is_none());
    }

    #[tokio::test]
    async fn configurations_with_bad_knobs_are_refused() {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let nodes = vec![(NodeId(0), "127.0.0.1:1".parse().unwrap())];
        let mode = Mode::Closed {
            clients: 1,
            depth: 1,
        };
        let mut c = LoadConfig::new(ep, nodes, mode);
        assert!(c.validate().is_ok());
        c.history = Some(0);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("history needs a cap"), "{e}");
        c.history = Some(1);
        c.workload.hot_fraction = 0.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("hot_fraction 0.5 needs hot_keys >= 1"), "{e}");
        c.workload.hot_keys = 3;
        assert!(c.validate().is_ok());
        c.workload.value_size = wire::DEFAULT_MAX_FRAME_LEN;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("does not fit a request frame"), "{e}");
        c.workload.value_size = 1 << 20;
        assert!(c.validate().is_ok());
    }
}
