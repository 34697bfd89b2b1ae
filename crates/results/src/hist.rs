//! Reading `hist/<point_id>.hlog`: HdrHistogram interval logs, one interval per second.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

/// Every interval of the log at `path` merged into one histogram (µs), or `None` when the
/// file does not exist.
pub fn read_merged(path: &Path) -> Result<Option<Histogram<u64>>> {
    let intervals = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => read_intervals(path)?,
    };
    let mut merged = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for (i, h) in intervals.iter().enumerate() {
        merged
            .add(h)
            .map_err(|e| anyhow!("{}: interval {i}: {e:?}", path.display()))?;
    }
    Ok(Some(merged))
}

/// The intervals of the log at `path`, in order (µs).
pub fn read_intervals(path: &Path) -> Result<Vec<Histogram<u64>>> {
    read_interval_log(path).map(|(_, intervals)| intervals)
}

/// The start time the log at `path` records (its writer's clock), if it has one, and its
/// intervals in order (µs).
pub fn read_interval_log(path: &Path) -> Result<(Option<SystemTime>, Vec<Histogram<u64>>)> {
    let (start, intervals) = parse(path)?;
    Ok((start, intervals.into_iter().map(|(_, h)| h).collect()))
}

/// The intervals of the log at `path`, in order, each with the length its entry records (a
/// log's last interval may be shorter than a second).
pub fn read_timed_intervals(path: &Path) -> Result<Vec<(Duration, Histogram<u64>)>> {
    parse(path).map(|(_, intervals)| intervals)
}

/// A log's recorded start time and its intervals, each with its length.
type Parsed = (Option<SystemTime>, Vec<(Duration, Histogram<u64>)>);

fn parse(path: &Path) -> Result<Parsed> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut deserializer = Deserializer::new();
    let mut out = Vec::new();
    let mut start = None;
    for (i, entry) in IntervalLogIterator::new(&bytes).enumerate() {
        let entry = entry.map_err(|e| anyhow!("{}: entry {i}: {e:?}", path.display()))?;
        let interval = match entry {
            LogEntry::Interval(interval) => interval,
            LogEntry::StartTime(t) => {
                start = Some(UNIX_EPOCH + t);
                continue;
            }
            LogEntry::BaseTime(_) => continue,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .with_context(|| format!("{}: interval {i}: bad base64", path.display()))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| anyhow!("{}: interval {i}: {e:?}", path.display()))?;
        out.push((interval.duration(), h));
    }
    Ok((start, out))
}
