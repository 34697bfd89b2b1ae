//! What the load generator asks for: keys (uniform or zipf, optionally with a share of hot
//! keys), reads versus writes, value size.
//!
//! Every `Put` value is unique to its write: its first [`VALUE_ID_LEN`] bytes are the writing
//! client's session id and the request id (big-endian `u64`s; [`value_id`] reads them back),
//! then padding up to `value_size`. Session ids are unique per cluster and request ids per
//! session, so a value names exactly one write, and a read can be attributed to the write it
//! saw. A value therefore has at least 16 bytes: the effective size is
//! `max(value_size, 16)`.

use bytes::{Bytes, BytesMut};
use paxos::Op;

use crate::schedule::SplitMix64;

/// How keys are picked.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank `k` (1-based) has weight `1 / k^theta`; key 0 is the most popular.
    Zipf {
        /// The skew, > 0 (YCSB uses 0.99).
        theta: f64,
    },
}

/// The operations of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// How many distinct keys (default 100 000).
    pub keys: u64,
    /// How keys are picked (default uniform).
    pub distribution: KeyDistribution,
    /// The share of `Get`s; the rest are `Put`s (default 0.0: writes only).
    pub read_fraction: f64,
    /// Bytes per `Put` value (default 64). Values are unique per write and carry a 16-byte
    /// id, so the effective size is `max(value_size, 16)`.
    pub value_size: usize,
    /// Seeds key and operation choice and the Poisson schedule (default 1).
    pub seed: u64,
    /// The conflict knob: how many hot keys, the first `hot_keys` keys (`key-0000000000`
    /// on), that [`Workload::hot_fraction`] of the operations go to (default 0: off). At
    /// most `keys`.
    #[serde(default)]
    pub hot_keys: u64,
    /// The share of operations, reads and writes alike, that pick their key uniformly among
    /// the hot keys instead of from `distribution`, so that reads and writes of one key
    /// overlap (default 0.0: off). In [0, 1]; above 0 it needs `hot_keys` ≥ 1.
    #[serde(default)]
    pub hot_fraction: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            keys: 100_000,
            distribution: KeyDistribution::Uniform,
            read_fraction: 0.0,
            value_size: 64,
            seed: 1,
            hot_keys: 0,
            hot_fraction: 0.0,
        }
    }
}

impl Workload {
    /// Range checks; the error says which field and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys == 0 {
            return Err("keys must be >= 1".into());
        }
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err(format!(
                "read_fraction {} is not in [0, 1]",
                self.read_fraction
            ));
        }
        if let KeyDistribution::Zipf { theta } = self.distribution {
            if !(theta > 0.0 && theta.is_finite()) {
                return Err(format!("zipf theta {theta} must be > 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.hot_fraction) {
            return Err(format!(
                "hot_fraction {} is not in [0, 1]",
                self.hot_fraction
            ));
        }
        if self.hot_keys > self.keys {
            return Err(format!(
                "hot_keys {} is more than the {} keys",
                self.hot_keys, self.keys
            ));
        }
        if self.hot_fraction > 0.0 && self.hot_keys == 0 {
            return Err(format!(
                "hot_fraction {} needs hot_keys >= 1",
                self.hot_fraction
            ));
        }
        Ok(())
    }
}

/// How many leading bytes of a `Put` value identify its write.
pub const VALUE_ID_LEN: usize = 16;

/// The write a value names: the (client session id, request id) encoded in its first
/// [`VALUE_ID_LEN`] bytes by the generator that wrote it; `None` for a shorter value.
pub fn value_id(value: &[u8]) -> Option<(u64, u64)> {
    let client = value.get(..8)?.try_into().ok()?;
    let request = value.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(client), u64::from_be_bytes(request)))
}

/// How many values at least one value arena holds before a new one is allocated.
const VALUES_PER_ARENA: usize = 256;

/// Draws operations of a [`Workload`].
#[derive(Clone, Debug)]
pub struct OpGenerator {
    keys: KeySampler,
    read_fraction: f64,
    hot_keys: u64,
    hot_fraction: f64,
    /// A value's bytes after its id (`max(value_size, 16) - 16` of them).
    padding: Bytes,
    rng: SplitMix64,
    /// Keys are written here and split off, so a key costs no allocation of its own and its
    /// clones (one per send) are reference-count increments.
    arena: BytesMut,
    /// Values likewise: a value is one copy of its id and the padding into this arena.
    values: BytesMut,
}

impl OpGenerator {
    /// A generator for `workload`; `stream` separates the streams of several generators that
    /// share one seed (e.g. one per closed-loop client).
    pub fn new(workload: &Workload, stream: u64) -> Self {
        OpGenerator {
            keys: KeySampler::new(workload.keys, workload.distribution),
            read_fraction: workload.read_fraction,
            hot_keys: workload.hot_keys,
            hot_fraction: workload.hot_fraction,
            padding: Bytes::from(vec![0x5a; workload.value_size.saturating_sub(VALUE_ID_LEN)]),
            rng: SplitMix64::new(
                workload
                    .seed
                    .wrapping_mul(0x9e37_79b9)
                    .wrapping_add(stream.wrapping_mul(0x1000_0000_01b3)),
            ),
            arena: BytesMut::new(),
            values: BytesMut::new(),
        }
    }

    /// The next operation, for request `request` of session `client`: a `Put` writes a value
    /// unique to that pair (module docs).
    pub fn next_op(&mut self, client: u64, request: u64) -> Op {
        if self.arena.capacity() < 32 {
            self.arena = BytesMut::with_capacity(16 * 1024);
        }
        // The hot-key draw only when the knob is on, so that without it a seed gives the
        // keys it always gave.
        let k = if self.hot_fraction > 0.0 && self.rng.next_f64() < self.hot_fraction {
            self.rng.next_u64() % self.hot_keys
        } else {
            self.keys.sample(&mut self.rng)
        };
        put_key(&mut self.arena, k);
        let key = self.arena.split().freeze();
        if self.rng.next_f64() < self.read_fraction {
            Op::Get { key }
        } else {
            Op::Put {
                key,
                value: self.value(client, request),
            }
        }
    }

    /// The value of request `request` of session `client`.
    fn value(&mut self, client: u64, request: u64) -> Bytes {
        let size = VALUE_ID_LEN + self.padding.len();
        if self.values.capacity() < size {
            // Room for many values, but no arena of more than 1 MiB unless one value needs it.
            let arena = (size * VALUES_PER_ARENA)
                .clamp(16 * 1024, 1 << 20)
                .max(size);
            self.values = BytesMut::with_capacity(arena);
        }
        self.values.extend_from_slice(&client.to_be_bytes());
        self.values.extend_from_slice(&request.to_be_bytes());
        self.values.extend_from_slice(&self.padding);
        self.values.split().freeze()
    }
}

/// Appends key `k`'s name, `key-` and `k` in at least ten decimal digits (what
/// `format!("key-{k:010}")` writes), without going through `fmt`: at 100k requests/s the
/// formatting machinery was about 4% of the generator's CPU.
fn put_key(out: &mut BytesMut, mut k: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while k > 0 {
        start -= 1;
        digits[start] = b'0' + (k % 10) as u8;
        k /= 10;
    }
    out.extend_from_slice(b"key-");
    out.extend_from_slice(&digits[start.min(digits.len() - 10)..]);
}

/// Samples key indices in `0..keys`.
#[derive(Clone, Debug)]
pub struct KeySampler {
    keys: u64,
    /// For zipf: the cumulative distribution over ranks (exact for any theta; n f64s of memory,
    /// 8 MB for a million keys).
    cdf: Option<Vec<f64>>,
}

impl KeySampler {
    /// A sampler over `keys` keys (at least 1).
    pub fn new(keys: u64, distribution: KeyDistribution) -> Self {
        let keys = keys.max(1);
        let cdf = match distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipf { theta } => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=keys)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(theta);
                        acc
                    })
                    .collect();
                let total = acc;
                cdf.iter_mut().for_each(|c| *c /= total);
                Some(cdf)
            }
        };
        KeySampler { keys, cdf }
    }

    /// One key index.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        match &self.cdf {
            None => rng.next_u64() % self.keys,
            Some(cdf) => {
                let u = rng.next_f64();
                (cdf.partition_point(|&c| c <= u) as u64).min(self.keys - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_ten_digits_at_least_as_format_writes_them() {
        let mut out = BytesMut::new();
        for k in [0, 7, 10, 99_999, 9_999_999_999, 10_000_000_000, u64::MAX] {
            out.clear();
            put_key(&mut out, k);
            assert_eq!(&out[..], format!("key-{k:010}").as_bytes(), "key {k}");
        }
    }

    fn shares(keys: u64, d: KeyDistribution, n: usize) -> Vec<f64> {
        let s = KeySampler::new(keys, d);
        let mut rng = SplitMix64::new(11);
        let mut counts = vec![0usize; keys as usize];
        for _ in 0..n {
            counts[s.sample(&mut rng) as usize] += 1;
        }
        counts.into_iter().map(|c| c as f64 / n as f64).collect()
    }

    #[test]
    fn zipf_gives_the_most_popular_key_its_expected_share() {
        for theta in [0.5, 0.99, 1.2] {
            let keys = 1_000u64;
            let h: f64 = (1..=keys).map(|k| 1.0 / (k as f64).powf(theta)).sum();
            let s = shares(keys, KeyDistribution::Zipf { theta }, 400_000);
            let expected = 1.0 / h;
            assert!(
                (s[0] - expected).abs() < 0.05 * expected,
                "theta {theta}: top key {} vs {expected}",
                s[0]
            );
            // Rank 2 gets 2^-theta of rank 1's share.
            let ratio = s[1] / s[0];
            assert!((ratio - 0.5f64.powf(theta)).abs() < 0.05, "{ratio}");
        }
    }

    #[test]
    fn uniform_spreads_keys_evenly() {
        let s = shares(10, KeyDistribution::Uniform, 100_000);
        assert!(s.iter().all(|&x| (x - 0.1).abs() < 0.01), "{s:?}");
    }

    #[test]
    fn the_read_fraction_and_value_size_are_respected() {
        let w = Workload {
            read_fraction: 0.25,
            value_size: 100,
            ..Workload::default()
        };
        let mut g = OpGenerator::new(&w, 0);
        let (mut reads, n) = (0, 40_000);
        for i in 0..n {
            match g.next_op(9, i) {
                Op::Get { .. } => reads += 1,
                Op::Put { value, .. } => assert_eq!(value.len(), 100),
                Op::Delete { .. } | Op::Reconfigure { .. } => unreachable!(),
            }
        }
        let share = reads as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }

    #[test]
    fn every_write_has_its_own_value_across_sessions_and_generators() {
        use std::collections::HashSet;
        let w = Workload {
            keys: 10,
            ..Workload::default()
        };
        let mut seen = HashSet::new();
        let mut writes = 0;
        // Two generators with different session bases (as two `LoadConfig`s would have),
        // several sessions each, the same seed and stream: the keys coincide, the values
        // must not.
        for base in [1u64 << 16, 2 << 16] {
            let mut g = OpGenerator::new(&w, 0);
            for session in 0..4 {
                for request in 1..=5_000u64 {
                    let Op::Put { value, .. } = g.next_op(base + session, request) else {
                        panic!("writes only");
                    };
                    assert_eq!(value.len(), 64);
                    assert_eq!(value_id(&value), Some((base + session, request)));
                    assert!(value[16..].iter().all(|&b| b == 0x5a));
                    assert!(seen.insert(value), "a value repeated");
                    writes += 1;
                }
            }
        }
        assert_eq!(writes, 40_000);
        // Below 16 bytes a value still carries its id.
        let mut tiny = OpGenerator::new(
            &Workload {
                value_size: 3,
                ..w.clone()
            },
            0,
        );
        let (Op::Put { value: a, .. }, Op::Put { value: b, .. }) =
            (tiny.next_op(1, 1), tiny.next_op(1, 2))
        else {
            panic!("writes only");
        };
        assert_eq!((a.len(), b.len()), (16, 16));
        assert_ne!(a, b);
        assert_eq!(value_id(b"short"), None);
    }

    #[test]
    fn the_hot_fraction_of_operations_goes_to_the_hot_keys() {
        let w = Workload {
            keys: 100_000,
            hot_keys: 10,
            hot_fraction: 0.3,
            read_fraction: 0.5,
            ..Workload::default()
        };
        let mut g = OpGenerator::new(&w, 3);
        let n = 100_000u64;
        let mut hot = [0u64; 10];
        let (mut hot_reads, mut hot_writes) = (0, 0);
        for i in 0..n {
            let op = g.next_op(1, i);
            let (key, read) = match &op {
                Op::Get { key } => (key, true),
                Op::Put { key, .. } => (key, false),
                Op::Delete { .. } | Op::Reconfigure { .. } => unreachable!(),
            };
            let k: u64 = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            if k < 10 {
                hot[k as usize] += 1;
                if read {
                    hot_reads += 1;
                } else {
                    hot_writes += 1;
                }
            }
        }
        // 30% from the hot draw, plus the uniform draw's 10 / 100 000 of the rest (~7 ops).
        // Binomial sd over 100 000 is ~145: ±1 500 is > 10 sigma.
        let total: u64 = hot.iter().sum();
        assert!((28_500..31_500).contains(&total), "{total} hot");
        // Spread evenly over the hot keys (each ~3 000, sd ~55).
        assert!(hot.iter().all(|&c| (2_600..3_400).contains(&c)), "{hot:?}");
        // Reads and writes both hit them: that is what makes them overlap.
        assert!(
            hot_reads > 13_000 && hot_writes > 13_000,
            "{hot_reads} {hot_writes}"
        );

        // Off, the keys are what they were before the knob existed: the same seed gives the
        // same keys with or without hot_keys set.
        let keys = |w: &Workload| {
            let mut g = OpGenerator::new(w, 1);
            (0..100)
                .map(|i| g.next_op(1, i).key().cloned().expect("a key-value op"))
                .collect::<Vec<_>>()
        };
        let plain = Workload::default();
        let knob_off = Workload {
            hot_keys: 5,
            ..Workload::default()
        };
        assert_eq!(keys(&plain), keys(&knob_off));
    }

    #[test]
    fn bad_workloads_are_refused_with_the_field_named() {
        let ok = Workload {
            keys: 100,
            hot_keys: 100,
            hot_fraction: 1.0,
            ..Workload::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let err = |w: Workload| w.validate().unwrap_err();
        assert!(err(Workload {
            hot_fraction: 1.5,
            ..ok.clone()
        })
        .contains("hot_fraction 1.5 is not in [0, 1]"));
        assert!(err(Workload {
            hot_fraction: -0.1,
            ..ok.clone()
        })
        .contains("hot_fraction"));
        assert!(err(Workload {
            hot_fraction: f64::NAN,
            ..ok.clone()
        })
        .contains("hot_fraction"));
        assert!(err(Workload {
            hot_keys: 101,
            ..ok.clone()
        })
        .contains("hot_keys 101 is more than the 100 keys"));
        assert!(err(Workload {
            hot_keys: 0,
            hot_fraction: 0.2,
            ..ok.clone()
        })
        .contains("needs hot_keys >= 1"));
        assert!(err(Workload {
            keys: 0,
            hot_keys: 0,
            ..ok.clone()
        })
        .contains("keys"));
        assert!(err(Workload {
            read_fraction: 2.0,
            ..ok.clone()
        })
        .contains("read_fraction"));
        // Off is fine whatever hot_keys says (up to keys).
        assert_eq!(
            Workload {
                hot_keys: 7,
                hot_fraction: 0.0,
                ..ok.clone()
            }
            .validate(),
            Ok(())
        );
        // The knob's fields default when a serialized workload lacks them.
        let old = r#"{"keys": 10, "distribution": "uniform", "read_fraction": 0.5,
                      "value_size": 8, "seed": 3}"#;
        let w: Workload = serde_json::from_str(old).unwrap();
        assert_eq!((w.hot_keys, w.hot_fraction), (0, 0.0));
    }
}
