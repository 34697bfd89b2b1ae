//! Reading `hist/<point_id>.hlog`: HdrHistogram interval logs, one interval per second.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

/// Every interval of the log at `path` merged into one histogram (µs), or `None` when the
/// file does not exist.
pub fn read_merged(path: &Path) -> Result<Option<Histogram<u64>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut merged = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    let mut deserializer = Deserializer::new();
    for (i, entry) in IntervalLogIterator::new(&bytes).enumerate() {
        let entry = entry.map_err(|e| anyhow!("{}: entry {i}: {e:?}", path.display()))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .with_context(|| format!("{}: interval {i}: bad base64", path.display()))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| anyhow!("{}: interval {i}: {e:?}", path.display()))?;
        merged
            .add(&h)
            .map_err(|e| anyhow!("{}: interval {i}: {e:?}", path.display()))?;
    }
    Ok(Some(merged))
}
