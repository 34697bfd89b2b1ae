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
//! - **Workload** ([`workload::Workload`]): key count, uniform or zipf keys, read fraction,
//!   value size, seed. [`Target`] picks the nodes: the leader, all nodes (Basic Paxos
//!   contention), or a list. `NotLeader` redirects are followed, re-sending the same request id
//!   (execution is exactly-once per client and request).
//! - **Recording** ([`record::Recorder`]): µs, 3 significant digits, one histogram per second of
//!   the measured window plus the merged one, after a discarded warm-up. Requests are assigned
//!   to the window and intervals by their intended send time. Errors and timeouts are counted;
//!   timeouts are exact: an answer at or after intended time + timeout is a timeout, and stays
//!   one (its late latency is not recorded).
//! - **Self-measurement**: the lag of each send behind its schedule goes into its own histogram;
//!   [`LoadSummary::generator_bound`] says when the generator, not the system, set the pace.
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

mod driver;
mod pacer;
pub mod record;
pub mod schedule;
pub mod workload;

pub use schedule::Arrivals;
pub use workload::{KeyDistribution, Workload};

/// How far beyond one pacing interval the send-lag p99 may go before a run counts as
/// generator-bound, in µs. A healthy generator sends within [`LoadConfig::pacing`] (coalescing
/// at high rates) plus its wake-up latency (~60 µs median on a shared 2-core VM) of the intended
/// instant; with the default 200 µs pacing, measured send-lag p99s there were 0.2-0.6 ms at
/// 1,000 ops/s and under ~0.9 ms up to 10,000 ops/s. A p99 above pacing + 0.8 ms (1 ms at the
/// default) means sends sat well behind the schedule: the generator (or the machine it shares)
/// fell behind, and latencies carry that delay.
pub const GENERATOR_LAG_SLACK_US: u64 = 800;

/// Default [`LoadConfig::pacing`]: 200 µs. On a 2-core machine shared with three nodes, 50 µs
/// cost the generator ~10% more CPU at 200,000 ops/s than 200 µs (each wake-up is a timer
/// interrupt, a hand-off to the connection task and a QUIC write) for no better latency there,
/// while at 10,000 ops/s the coarser pacing adds ~50 µs of send lag. 500 µs saved more CPU but
/// cost ~200 µs of latency at 10,000 ops/s.
pub const DEFAULT_PACING: Duration = Duration::from_micros(200);

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
    /// A client endpoint of the cluster (`node::client_endpoint_on`).
    pub endpoint: quinn::Endpoint,
    /// Every node of the cluster: id and address.
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// Open or closed loop.
    pub mode: Mode,
    /// What to ask for.
    pub workload: Workload,
    /// Where to send it.
    pub target: Target,
    /// Discarded at the start (default 1 s).
    pub warmup: Duration,
    /// Measured after the warm-up (default 5 s).
    pub duration: Duration,
    /// A request unanswered this long after its intended send time is a timeout (default 2 s).
    pub timeout: Duration,
    /// Give up on a request (an error) after this many `NotLeader` answers (default 10).
    pub max_redirects: u32,
    /// Open loop: the shortest gap between two wake-ups that send (default
    /// [`DEFAULT_PACING`]). Each request is still timed from its own intended instant, but at
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
}

impl LoadConfig {
    /// A configuration with the defaults above.
    pub fn new(endpoint: quinn::Endpoint, nodes: Vec<(NodeId, SocketAddr)>, mode: Mode) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        LoadConfig {
            endpoint,
            nodes,
            mode,
            workload: Workload::default(),
            target: Target::Leader,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_redirects: 10,
            pacing: DEFAULT_PACING,
            // Room for 2^16 sessions per run; the clock and pid keep runs begun in the same
            // millisecond apart. 32 bits keep the id short on the wire.
            session_base: u64::from((nanos ^ (u64::from(std::process::id()) << 20)) as u32)
                & !0xffff,
            sessions_created: paxos::Time(nanos),
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
        let w = &self.workload;
        if w.keys == 0 || !(0.0..=1.0).contains(&w.read_fraction) {
            return bad("keys must be >= 1 and read_fraction in [0, 1]");
        }
        if let KeyDistribution::Zipf { theta } = w.distribution {
            if !(theta > 0.0 && theta.is_finite()) {
                return bad("zipf theta must be > 0");
            }
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            return bad("duration and timeout must be positive");
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
    /// Discarded warm-up (s).
    pub warmup_s: f64,
    /// Measured window (s).
    pub duration_s: f64,
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
    /// clocks): histograms added interval by interval, rates and counts summed, the send lag
    /// the worst of them, generator-bound if any was. `None` for no parts.
    pub fn merge(parts: Vec<LoadResult>) -> Option<LoadResult> {
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
            acc.window_start = acc.window_start.min(p.window_start);
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
        };
        Some(acc)
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
        )
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
    let lag_limit_us = config.pacing.as_micros() as u64 + GENERATOR_LAG_SLACK_US;
    let mut d = driver::Driver::connect(config).await?;
    d.run().await;
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
    Ok(summarize(rec, offered_ops, window_start, lag_limit_us))
}

fn summarize(
    rec: record::Recorder,
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
        warmup_s: rec.warmup().as_secs_f64(),
        duration_s,
    }
    .with_latencies(&rec.merged);
    LoadResult {
        merged: rec.merged,
        intervals: rec.intervals,
        send_lag: rec.send_lag,
        summary,
        window_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
