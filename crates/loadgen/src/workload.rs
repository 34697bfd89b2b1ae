//! What the load generator asks for: keys (uniform or zipf), reads versus writes, value size.

use std::fmt::Write as _;

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
    /// Bytes per `Put` value (default 64).
    pub value_size: usize,
    /// Seeds key and operation choice and the Poisson schedule (default 1).
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            keys: 100_000,
            distribution: KeyDistribution::Uniform,
            read_fraction: 0.0,
            value_size: 64,
            seed: 1,
        }
    }
}

/// Draws operations of a [`Workload`].
#[derive(Clone, Debug)]
pub struct OpGenerator {
    keys: KeySampler,
    read_fraction: f64,
    value: Bytes,
    rng: SplitMix64,
    /// Keys are written here and split off, so a key costs no allocation of its own and its
    /// clones (one per send) are reference-count increments.
    arena: BytesMut,
}

impl OpGenerator {
    /// A generator for `workload`; `stream` separates the streams of several generators that
    /// share one seed (e.g. one per closed-loop client).
    pub fn new(workload: &Workload, stream: u64) -> Self {
        OpGenerator {
            keys: KeySampler::new(workload.keys, workload.distribution),
            read_fraction: workload.read_fraction,
            value: Bytes::from(vec![0x5a; workload.value_size]),
            rng: SplitMix64::new(
                workload
                    .seed
                    .wrapping_mul(0x9e37_79b9)
                    .wrapping_add(stream.wrapping_mul(0x1000_0000_01b3)),
            ),
            arena: BytesMut::new(),
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        if self.arena.capacity() < 32 {
            self.arena = BytesMut::with_capacity(16 * 1024);
        }
        let k = self.keys.sample(&mut self.rng);
        write!(self.arena, "key-{k:010}").expect("BytesMut grows");
        let key = self.arena.split().freeze();
        if self.rng.next_f64() < self.read_fraction {
            Op::Get { key }
        } else {
            Op::Put {
                key,
                value: self.value.clone(),
            }
        }
    }
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
        for _ in 0..n {
            match g.next_op() {
                Op::Get { .. } => reads += 1,
                Op::Put { value, .. } => assert_eq!(value.len(), 100),
                Op::Delete { .. } => unreachable!(),
            }
        }
        let share = reads as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }
}
