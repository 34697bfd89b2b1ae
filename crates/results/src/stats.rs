//! Statistics over repetitions: a bootstrap confidence interval for a median, and the
//! Mann–Whitney U test for whether two sets of figures differ.
//!
//! Both are distribution-free, which is what latency and throughput figures need: they are
//! skewed, bounded below, and a handful of repetitions says nothing about their shape.
//!
//! - [`bootstrap_median_ci`] resamples the values with replacement, takes each resample's
//!   median, and returns the percentile interval of those medians (the simple percentile
//!   bootstrap). With few values it cannot be wider than their range, and with three it is
//!   close to [min, max]: it describes the spread seen, and is honest only about that. The
//!   resampling draws from a fixed seed, so a summary renders the same every time.
//! - [`mann_whitney`] ranks the pooled values (ties get their mean rank) and compares the rank
//!   sum of the first set with its distribution when both sets come from one distribution.
//!   For up to [`EXACT_MAX`] values in all, that distribution is counted exactly, ties
//!   included; beyond, the normal approximation with the tie correction and a continuity
//!   correction is used. The p-value is two-sided. The test assumes the values within each
//!   set are independent draws: true of separate repetitions, only roughly of consecutive
//!   one-second intervals of one run. With few values no outcome can be significant: three
//!   against three cannot give a two-sided p below 2/20 = 0.1 ([`MannWhitney::min_p`] says
//!   how low this many values can go), and one value on either side gives no test at all.
//! - [`median_ci`] is the same percentile bootstrap computed exactly rather than by resampling:
//!   the distribution of a resample's median has a closed form (each resample draws every
//!   value with probability 1/n, so how many draws fall at or below the k-th value is
//!   binomial), and its percentiles are the limit of [`bootstrap_median_ci`] as the resamples
//!   grow. No resampling noise, no seed, and cheap for the few values repetitions give (O(n²)).
//!   With 2 to 5 values the 95% interval is their whole range: a resample's median lands on
//!   the smallest value more than 2.5% of the time (7/27 for three). That range holds the true
//!   median with probability 1 − 2^(1−n) only (75% for three values, 94% for five), whatever
//!   the distribution: the "95%" is the bootstrap's, and with so few values it is optimistic.
//! - [`percentile`] is the nearest-rank percentile: always one of the values, so p5–p95 of
//!   fewer than 20 values is their min–max.

/// Above this many values in all, [`mann_whitney`] uses the normal approximation.
pub const EXACT_MAX: usize = 60;

/// The median of `values` (the mean of the middle two for an even count); `None` when there
/// are no finite values.
pub fn median(values: &[f64]) -> Option<f64> {
    let v = sorted_finite(values);
    (!v.is_empty()).then(|| median_sorted(&v))
}

fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median_sorted(v: &[f64]) -> f64 {
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// A deterministic generator for the resampling (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift: unbiased enough for n far below 2^32.
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// The percentile-bootstrap `confidence` interval (for example 0.95) of the median of
/// `values`, from `resamples` resamples drawn from `seed`. `None` with fewer than two finite
/// values (one value has no interval), a confidence outside (0, 1), or no resamples.
pub fn bootstrap_median_ci(
    values: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    let v = sorted_finite(values);
    if v.len() < 2 || !(confidence > 0.0 && confidence < 1.0) || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut sample = vec![0.0; v.len()];
    let mut medians = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in &mut sample {
            *x = v[rng.below(v.len())];
        }
        sample.sort_by(f64::total_cmp);
        medians.push(median_sorted(&sample));
    }
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        let i = (q * (resamples - 1) as f64).round() as usize;
        medians[i.min(resamples - 1)]
    };
    Some((at(tail), at(1.0 - tail)))
}

/// The percentile-bootstrap `confidence` interval (for example 0.95) of the median of
/// `values`, computed exactly (module docs): the lower end is the smallest value a resample's
/// median takes with probability at least (1 − confidence)/2 of being at or below it, the upper
/// end the smallest with at least (1 + confidence)/2. `None` with fewer than two finite values
/// or a confidence outside (0, 1).
pub fn median_ci(values: &[f64], confidence: f64) -> Option<(f64, f64)> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let mut dist = resample_median_distribution(values)?;
    dist.sort_by(|a, b| a.0.total_cmp(&b.0));
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        let mut cumulative = 0.0;
        for &(value, p) in &dist {
            cumulative += p;
            // Slack for rounding: the probabilities sum to 1 within a few ulps.
            if cumulative >= q - 1e-12 {
                return value;
            }
        }
        dist[dist.len() - 1].0
    };
    Some((at(tail), at(1.0 - tail)))
}

/// The distribution of the median of a bootstrap resample of `values` (n draws with
/// replacement), as (median, probability) pairs, unsorted and possibly with repeated medians.
/// `None` with fewer than two finite values.
///
/// Over the sorted values x_1 ≤ … ≤ x_n, the number N_k of draws among the first k is
/// Binomial(n, k/n). For odd n the median is the ((n+1)/2)-th smallest draw, at or below x_k
/// exactly when N_k ≥ (n+1)/2. For even n = 2h it is the mean of the h-th and (h+1)-th
/// smallest draws, at positions i ≤ j: for i < j exactly h draws fall in the first i (at least
/// one at i) and the other h in the last n − j + 1 (at least one at j); for i = j, N_{i−1} < h
/// and N_i > h.
fn resample_median_distribution(values: &[f64]) -> Option<Vec<(f64, f64)>> {
    let v = sorted_finite(values);
    let n = v.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mut dist = Vec::new();
    if n % 2 == 1 {
        let m = n.div_ceil(2);
        let mut below = 0.0; // P(median at or below x_{k-1})
        for k in 1..=n {
            let at_or_below = 1.0 - binomial_cdf(n, k as f64 / nf, m - 1);
            dist.push((v[k - 1], (at_or_below - below).max(0.0)));
            below = at_or_below;
        }
    } else {
        let h = n / 2;
        let ln_choose = ln_binomial(n, h);
        let hf = h as f64;
        // ln of a^h − b^h for 0 ≤ b < a: h ln a + ln(1 − (b/a)^h).
        let ln_gap = |a: f64, b: f64| hf * a.ln() + (-(b / a).powf(hf)).ln_1p();
        for i in 1..=n {
            let same = binomial_cdf(n, (i - 1) as f64 / nf, h - 1)
                - binomial_cdf(n, i as f64 / nf, h)
                + (ln_choose + hf * ((i - 1) as f64 / nf).ln() + hf * ((n - i) as f64 / nf).ln())
                    .exp();
            dist.push((v[i - 1], same.max(0.0)));
            let low = ln_gap(i as f64 / nf, (i - 1) as f64 / nf);
            for j in i + 1..=n {
                let high = ln_gap((n - j + 1) as f64 / nf, (n - j) as f64 / nf);
                let p = (ln_choose + low + high).exp();
                dist.push(((v[i - 1] + v[j - 1]) / 2.0, p));
            }
        }
    }
    Some(dist)
}

/// P(Binomial(n, p) ≤ c), summed in logs so that large n neither overflows nor underflows.
fn binomial_cdf(n: usize, p: f64, c: usize) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if c >= n { 1.0 } else { 0.0 };
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0; // ln C(n, t)
    let mut sum = 0.0;
    for t in 0..=c.min(n) {
        if t > 0 {
            ln_choose += ((n - t + 1) as f64).ln() - (t as f64).ln();
        }
        sum += (ln_choose + t as f64 * ln_p + (n - t) as f64 * ln_q).exp();
    }
    sum.min(1.0)
}

/// ln C(n, k).
fn ln_binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// The nearest-rank `q`-th percentile (q in [0, 1]) of the finite `values`: the smallest
/// value with at least a share `q` of the values at or below it (the smallest for q = 0).
/// Always one of the values. `None` when there are none or `q` is outside [0, 1].
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let v = sorted_finite(values);
    if v.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    // The rank is ceil(q n), computed with a hair of slack so that 0.95 * 20 is 19, not 20.
    let rank = ((q * v.len() as f64) - 1e-9).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// The outcome of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first set: how many (a, b) pairs have a > b, ties counting one half.
    pub u: f64,
    /// The two-sided p-value.
    pub p: f64,
    /// Whether `p` was counted exactly (else the normal approximation).
    pub exact: bool,
    /// The sizes of the two sets.
    pub n_a: usize,
    /// See `n_a`.
    pub n_b: usize,
}

impl MannWhitney {
    /// The lowest two-sided p-value any outcome could give with sets of these sizes (without
    /// ties): `2 / C(n_a + n_b, n_a)`, capped at 1. If it is above the level, the test cannot
    /// call a difference real however large it is.
    pub fn min_p(&self) -> f64 {
        (2.0 / binomial(self.n_a + self.n_b, self.n_a)).min(1.0)
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The Mann–Whitney U test of `a` against `b` (module docs). `None` unless each has at least
/// one finite value and there are at least three in all; non-finite values are left out.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let a: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|x| x.is_finite()).collect();
    let (n_a, n_b) = (a.len(), b.len());
    if n_a == 0 || n_b == 0 || n_a + n_b < 3 {
        return None;
    }
    // Ranks of the pooled values, doubled so that mean ranks of ties stay integers.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let mut ranks2 = vec![0u64; n];
    let mut tie_term = 0.0; // sum over tie groups of t^3 - t
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1; their mean, doubled, is i + j + 2.
        for r in &mut ranks2[i..=j] {
            *r = (i + j + 2) as u64;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let w2: u64 = pooled
        .iter()
        .zip(&ranks2)
        .filter(|((_, in_a), _)| *in_a)
        .map(|(_, r)| r)
        .sum();
    let w = w2 as f64 / 2.0;
    let u = w - (n_a * (n_a + 1)) as f64 / 2.0;
    let mean_u = (n_a * n_b) as f64 / 2.0;
    let (p, exact) = if n <= EXACT_MAX {
        (exact_p(&ranks2, n_a, w2), true)
    } else {
        let (na, nb, nf) = (n_a as f64, n_b as f64, n as f64);
        let var = na * nb / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
        let p = if var <= 0.0 {
            1.0
        } else {
            let z = ((u - mean_u).abs() - 0.5).max(0.0) / var.sqrt();
            (2.0 * normal_upper_tail(z)).min(1.0)
        };
        (p, false)
    };
    Some(MannWhitney {
        u,
        p,
        exact,
        n_a,
        n_b,
    })
}

/// The exact two-sided p-value of a doubled rank sum `w2` of `k` values drawn from `ranks2`:
/// the share of all `k`-subsets whose doubled rank sum is at least as far from the mean.
fn exact_p(ranks2: &[u64], k: usize, w2: u64) -> f64 {
    let total: u64 = ranks2.iter().sum();
    let max = total as usize;
    // counts[j][s]: subsets of j of the ranks seen so far with doubled sum s (f64: the counts
    // reach C(60, 30) ~ 1.2e17, past what f64 holds exactly, but the ratio is what matters).
    let mut counts = vec![vec![0.0f64; max + 1]; k + 1];
    counts[0][0] = 1.0;
    for (seen, &r) in ranks2.iter().enumerate() {
        let r = r as usize;
        for j in (1..=k.min(seen + 1)).rev() {
            let (lower, upper) = counts.split_at_mut(j);
            let (from, to) = (&lower[j - 1], &mut upper[0]);
            for s in (r..=max).rev() {
                to[s] += from[s - r];
            }
        }
    }
    // The mean doubled rank sum is k * (n + 1), with every tie pattern.
    let mean2 = (k * (ranks2.len() + 1)) as f64;
    let dist = (w2 as f64 - mean2).abs();
    let (mut extreme, mut all) = (0.0, 0.0);
    for (s, &c) in counts[k].iter().enumerate() {
        all += c;
        // A hair of slack: sums are integers, distances are integers or halves.
        if (s as f64 - mean2).abs() >= dist - 1e-9 {
            extreme += c;
        }
    }
    (extreme / all).min(1.0)
}

/// P(Z > z) for a standard normal Z (Abramowitz & Stegun 7.1.26 on erfc; error below 1.5e-7).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    erfc / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn a_bootstrap_interval_holds_the_median_and_stays_inside_the_range() {
        let v = [10.0, 12.0, 11.0, 13.0, 30.0, 9.0, 11.5];
        let (lo, hi) = bootstrap_median_ci(&v, 0.95, 2000, 7).unwrap();
        let m = median(&v).unwrap();
        assert!(lo <= m && m <= hi, "{lo} {m} {hi}");
        assert!(lo >= 9.0 && hi <= 30.0, "{lo} {hi}");
        // The outlier at 30 cannot be the median of most resamples: the interval stops short.
        assert!(hi < 30.0, "{hi}");
        // Deterministic for a seed.
        assert_eq!(bootstrap_median_ci(&v, 0.95, 2000, 7), Some((lo, hi)));
    }

    #[test]
    fn more_values_give_a_narrower_interval() {
        let few: Vec<f64> = (0..5).map(|i| 100.0 + (i % 5) as f64 * 10.0).collect();
        let many: Vec<f64> = (0..100).map(|i| 100.0 + (i % 5) as f64 * 10.0).collect();
        let w = |v: &[f64]| {
            let (lo, hi) = bootstrap_median_ci(v, 0.95, 2000, 1).unwrap();
            hi - lo
        };
        assert!(w(&many) < w(&few), "{} vs {}", w(&many), w(&few));
    }

    #[test]
    fn no_interval_from_one_value() {
        assert_eq!(bootstrap_median_ci(&[5.0], 0.95, 100, 1), None);
        assert_eq!(bootstrap_median_ci(&[5.0, 6.0], 1.0, 100, 1), None);
    }

    #[test]
    fn mann_whitney_matches_the_tables_for_small_samples() {
        // Completely separated 3 vs 3: U = 0, exact two-sided p = 2/20.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.u, 0.0);
        assert!(t.exact);
        assert!((t.p - 0.1).abs() < 1e-12, "{}", t.p);
        assert!((t.min_p() - 0.1).abs() < 1e-12);
        // 5 vs 5 separated: 2 / C(10, 5) = 2/252.
        let t = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!((t.p - 2.0 / 252.0).abs() < 1e-12, "{}", t.p);
        // Interleaved: no evidence at all.
        let t = mann_whitney(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]).unwrap();
        assert!(t.p > 0.9, "{}", t.p);
    }

    #[test]
    fn mann_whitney_counts_u_with_ties_as_halves() {
        let t = mann_whitney(&[1.0, 2.0, 2.0], &[2.0, 3.0]).unwrap();
        // Pairs (a > b): none; ties: the two 2s against the 2 give 0.5 each.
        assert_eq!(t.u, 1.0);
        // All values tied: p = 1.
        let t = mann_whitney(&[5.0, 5.0, 5.0], &[5.0, 5.0]).unwrap();
        assert_eq!(t.p, 1.0);
    }

    #[test]
    fn the_normal_approximation_agrees_with_the_exact_count_near_the_boundary() {
        let a: Vec<f64> = (0..30).map(|i| i as f64 * 1.1).collect();
        let b: Vec<f64> = (0..30).map(|i| i as f64 * 1.1 + 6.0).collect();
        let exact = mann_whitney(&a, &b).unwrap();
        assert!(exact.exact);
        let mut a2 = a.clone();
        a2.push(-1.0); // 61 values: approximated
        let approx = mann_whitney(&a2, &b).unwrap();
        assert!(!approx.exact);
        assert!(exact.p < 0.1 && approx.p < 0.1, "{} {}", exact.p, approx.p);
        assert!(
            (exact.p.ln() - approx.p.ln()).abs() < 0.5,
            "{} {}",
            exact.p,
            approx.p
        );
    }

    #[test]
    fn large_shifted_samples_differ_and_equal_ones_do_not() {
        let a: Vec<f64> = (0..200).map(|i| ((i * 37) % 100) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 20.0).collect();
        assert!(mann_whitney(&a, &b).unwrap().p < 1e-6);
        let c: Vec<f64> = (0..200).map(|i| ((i * 53) % 100) as f64).collect();
        assert!(mann_whitney(&a, &c).unwrap().p > 0.5);
    }

    /// The resample-median distribution with equal medians merged, sorted by value.
    fn merged(values: &[f64]) -> Vec<(f64, f64)> {
        let mut d = resample_median_distribution(values).unwrap();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, f64)> = Vec::new();
        for (v, p) in d {
            match out.last_mut() {
                Some(last) if last.0 == v => last.1 += p,
                _ => out.push((v, p)),
            }
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_resample_median_of_three_values_is_the_smallest_with_probability_7_in_27() {
        // At most one draw of the smallest puts the median higher: P(2 or 3 of 3 draws) =
        // 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27; by symmetry the same for the largest.
        let d = merged(&[30.0, 10.0, 20.0]);
        let expect = [(10.0, 7.0 / 27.0), (20.0, 13.0 / 27.0), (30.0, 7.0 / 27.0)];
        assert_eq!(d.len(), 3, "{d:?}");
        for ((v, p), (ev, ep)) in d.iter().zip(expect) {
            assert!(*v == ev && close(*p, ep), "{d:?}");
        }
        // Two values: a, their mean, b with 1/4, 1/2, 1/4.
        let d = merged(&[1.0, 3.0]);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0] == (1.0, 0.25) && d[1].0 == 2.0 && close(d[1].1, 0.5),
            "{d:?}"
        );
        // Four values: the median is the smallest when at least three of the four draws are:
        // 4 (1/4)^3 (3/4) + (1/4)^4 = 13/256.
        let d = merged(&[1.0, 2.0, 4.0, 8.0]);
        assert!(d[0].0 == 1.0 && close(d[0].1, 13.0 / 256.0), "{d:?}");
        for values in [&[1.0, 2.0, 4.0, 8.0][..], &[5.0, 1.0, 9.0, 2.0, 7.0, 3.0]] {
            let total: f64 = merged(values).iter().map(|(_, p)| p).sum();
            assert!(close(total, 1.0), "{total}");
        }
    }

    #[test]
    fn the_exact_distribution_matches_resampling() {
        // The Monte Carlo resampler of bootstrap_median_ci, counted by median.
        for values in [
            vec![3.0, 1.0, 4.0, 1.5, 9.0, 2.6],
            vec![10.0, 11.0, 12.0, 13.0, 40.0],
        ] {
            let v = sorted_finite(&values);
            let mut rng = SplitMix(42);
            let resamples = 200_000;
            let mut counts: Vec<(f64, usize)> = Vec::new();
            let mut sample = vec![0.0; v.len()];
            for _ in 0..resamples {
                for x in &mut sample {
                    *x = v[rng.below(v.len())];
                }
                sample.sort_by(f64::total_cmp);
                let m = median_sorted(&sample);
                match counts.iter_mut().find(|(value, _)| *value == m) {
                    Some(c) => c.1 += 1,
                    None => counts.push((m, 1)),
                }
            }
            for (value, p) in merged(&values) {
                let seen = counts.iter().find(|(v, _)| *v == value).map_or(0, |c| c.1);
                let freq = seen as f64 / resamples as f64;
                // Four standard errors of a frequency from 200 000 draws are below 0.0045.
                assert!((freq - p).abs() < 0.0045, "{value}: {freq} vs {p}");
            }
        }
    }

    #[test]
    fn the_95_percent_interval_is_the_range_up_to_five_values_and_narrower_beyond() {
        assert_eq!(median_ci(&[3.0, 1.0, 2.0], 0.95), Some((1.0, 3.0)));
        assert_eq!(median_ci(&[1.0, 5.0], 0.95), Some((1.0, 5.0)));
        assert_eq!(
            median_ci(&[1.0, 2.0, 3.0, 4.0, 50.0], 0.95),
            Some((1.0, 50.0))
        );
        // Six: P(median = x1) = P(4+ of 6 draws) = 406/46656 < 2.5%, and with the mean of
        // x1 and x2 (C(6,3) (1/6)^3 ((5/6)^3 − (4/6)^3) = 0.0262 more) it passes 2.5%.
        assert_eq!(
            median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0, 7.0], 0.95),
            Some((1.5, 6.0))
        );
        // Seven: P(median = x1) = P(4+ of 7 draws at 1/7) = 0.0102; x2 reaches 0.108.
        assert_eq!(
            median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 0.95),
            Some((2.0, 6.0))
        );
        // Equal values, and what has no interval.
        assert_eq!(median_ci(&[4.0, 4.0, 4.0], 0.95), Some((4.0, 4.0)));
        assert_eq!(median_ci(&[4.0], 0.95), None);
        assert_eq!(median_ci(&[4.0, f64::NAN], 0.95), None);
        assert_eq!(median_ci(&[4.0, 5.0], 1.0), None);
        // It agrees with resampling on the committed example.
        let v = [10.0, 12.0, 11.0, 13.0, 30.0, 9.0, 11.5];
        assert_eq!(
            median_ci(&v, 0.95),
            bootstrap_median_ci(&v, 0.95, 20_000, 7)
        );
    }

    #[test]
    fn many_values_stay_finite_and_near_the_normal_approximation() {
        // The values 0..n in scrambled order. A resample median's rank is close to normal
        // with a standard deviation of √n / 2 ranks: 10 for 400, so the ends sit about 19.6
        // ranks from the middle.
        for n in [400, 401] {
            let v: Vec<f64> = (0..n).map(|i| (i * 7919 % n) as f64).collect();
            let middle = (n - 1) as f64 / 2.0;
            let (lo, hi) = median_ci(&v, 0.95).unwrap();
            assert!((middle - lo - 19.6).abs() < 2.0, "{n}: {lo}");
            assert!((hi - middle - 19.6).abs() < 2.0, "{n}: {hi}");
        }
    }

    #[test]
    fn nearest_rank_percentiles_are_values() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        // ceil(0.05 * 20) = 1, ceil(0.95 * 20) = 19, ceil(0.5 * 20) = 10.
        assert_eq!(percentile(&v, 0.05), Some(1.0));
        assert_eq!(percentile(&v, 0.95), Some(19.0));
        assert_eq!(percentile(&v, 0.5), Some(10.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(20.0));
        // Fewer than 20 values: p5 and p95 are the extremes.
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.05), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.95), Some(3.0));
        // 21 values: ceil(1.05) = 2.
        let v: Vec<f64> = (1..=21).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.05), Some(2.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0], 1.5), None);
    }

    #[test]
    fn no_test_without_values_on_both_sides() {
        assert!(mann_whitney(&[1.0], &[]).is_none());
        assert!(mann_whitney(&[1.0], &[2.0]).is_none());
        assert!(mann_whitney(&[f64::NAN, 1.0], &[2.0]).is_none());
    }
}
