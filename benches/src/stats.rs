//! The numbers `agora bench` reports: percentiles of latency samples, quantiles of a
//! scraped Prometheus histogram, and the seeded distribution task durations come from.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Latency samples with a bound on memory: past `capacity` samples, reservoir sampling
/// keeps a uniform subset, so percentiles stay unbiased however long the run.
#[derive(Debug)]
pub struct Samples {
    values_ms: Vec<f64>,
    seen: u64,
    capacity: usize,
}

impl Samples {
    pub fn new(capacity: usize) -> Self {
        Self { values_ms: Vec::new(), seen: 0, capacity: capacity.max(1) }
    }

    pub fn record(&mut self, value_ms: f64, rng: &mut ChaCha8Rng) {
        self.seen = self.seen.saturating_add(1);
        if self.values_ms.len() < self.capacity {
            self.values_ms.push(value_ms);
            return;
        }
        let slot = rng.random_range(0..self.seen);
        if let Some(value) = usize::try_from(slot).ok().and_then(|slot| self.values_ms.get_mut(slot)) {
            *value = value_ms;
        }
    }

    pub fn merge(&mut self, other: Samples, rng: &mut ChaCha8Rng) {
        for value in other.values_ms {
            self.record(value, rng);
        }
    }

    pub fn into_sorted(mut self) -> Vec<f64> {
        self.values_ms.sort_by(f64::total_cmp);
        self.values_ms
    }
}

/// A latency histogram many tasks record into without a lock: four buckets per doubling
/// from 0.1 ms to about 27 minutes, so a percentile read off it is within 19 % of the
/// true value. For latencies measured by thousands of emulated agents at once.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Vec<std::sync::atomic::AtomicU64>,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self { counts: (0..Self::BUCKETS).map(|_| std::sync::atomic::AtomicU64::new(0)).collect() }
    }
}

impl AtomicHistogram {
    const BUCKETS: usize = 96;
    const FIRST_MS: f64 = 0.1;

    fn upper_ms(bucket: usize) -> f64 {
        Self::FIRST_MS * 2f64.powf((bucket + 1) as f64 / 4.0)
    }

    pub fn record(&self, value_ms: f64) {
        let bucket =
            if value_ms <= Self::FIRST_MS { 0 } else { ((value_ms / Self::FIRST_MS).log2() * 4.0).floor() as usize };
        let bucket = bucket.min(Self::BUCKETS - 1);
        self.counts[bucket].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The `q` quantile (0..=1), interpolated inside its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut total = 0;
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(bucket, count)| {
                total += count.load(std::sync::atomic::Ordering::Relaxed);
                (Self::upper_ms(bucket), total)
            })
            .collect();
        histogram_quantile(&buckets, q)
    }
}

/// The nearest-rank percentile (`p` in 0..=100) of sorted values; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` in Prometheus text,
/// in the order they appear (ascending, `+Inf` last as `f64::INFINITY`).
pub fn parse_histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The value of gauge `name` with exactly the labels `labels` in Prometheus text.
pub fn gauge(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = if selector.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", selector.join(",")) };
    text.lines().find_map(|line| line.strip_prefix(&series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The `q` quantile (0..=1) of cumulative buckets, interpolated linearly inside the bucket
/// as Prometheus' `histogram_quantile` does; a quantile in the `+Inf` bucket is reported
/// as the highest finite bound. `None` without observations.
pub fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let target = q.clamp(0.0, 1.0) * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for &(bound, count) in buckets {
        if count as f64 >= target {
            if bound.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count.saturating_sub(lower_count) as f64;
            if in_bucket == 0.0 {
                return Some(bound);
            }
            let fraction = (target - lower_count as f64) / in_bucket;
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

/// Task durations: exponential with the given mean (short tasks dominate, a few run
/// long, as in real batch load), at least 1 ms and capped at ten times the mean so that a
/// bounded run is not held up by one outlier.
#[derive(Clone, Copy, Debug)]
pub struct Durations {
    mean_ms: f64,
}

impl Durations {
    pub fn new(mean_ms: u64) -> Self {
        Self { mean_ms: mean_ms as f64 }
    }

    pub fn max_ms(&self) -> u64 {
        (self.mean_ms * 10.0).max(1.0) as u64
    }

    pub fn sample_ms(&self, rng: &mut ChaCha8Rng) -> u64 {
        // Inverse transform: 1 - u lies in (0, 1], so the logarithm is finite.
        let u: f64 = rng.random();
        let ms = -self.mean_ms * (1.0 - u).ln();
        (ms as u64).clamp(1, self.max_ms().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_atomic_histogram_reads_percentiles_within_a_bucket() {
        let histogram = AtomicHistogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in 1..=1000 {
            histogram.record(f64::from(ms));
        }
        let p50 = histogram.quantile(0.5).expect("recorded");
        let p99 = histogram.quantile(0.99).expect("recorded");
        assert!((500.0 * 0.81..=500.0 * 1.19).contains(&p50), "p50 {p50}");
        assert!((990.0 * 0.81..=990.0 * 1.19).contains(&p99), "p99 {p99}");
        histogram.record(0.0);
        histogram.record(1e12);
        assert!(histogram.quantile(1.0).expect("recorded") > 1e6);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn samples_stay_bounded_and_keep_the_distribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut samples = Samples::new(1_000);
        for i in 0..100_000 {
            samples.record(f64::from(i % 100), &mut rng);
        }
        let sorted = samples.into_sorted();
        assert_eq!(sorted.len(), 1_000);
        let median = percentile(&sorted, 50.0).expect("samples");
        assert!((40.0..=60.0).contains(&median), "median {median}");
    }

    #[test]
    fn histograms_are_parsed_from_prometheus_text() {
        let text = "# TYPE x histogram\nx_bucket{le=\"0.001\"} 3\nx_bucket{le=\"0.01\"} 7\nx_bucket{le=\"+Inf\"} 8\nx_sum 1\nx_count 8\nother_bucket{le=\"1\"} 9\n";
        assert_eq!(parse_histogram(text, "x"), vec![(0.001, 3), (0.01, 7), (f64::INFINITY, 8)]);
    }

    #[test]
    fn gauges_are_read_by_name_and_labels() {
        let text = "# TYPE t gauge\nt{state=\"TASK_RUNNING\"} 12\nt{state=\"TASK_RUNNING_X\"} 5\nt_total 3\nt 4\n";
        assert_eq!(gauge(text, "t", &[("state", "TASK_RUNNING")]), Some(12.0));
        assert_eq!(gauge(text, "t", &[]), Some(4.0));
        assert_eq!(gauge(text, "t", &[("state", "TASK_FAILED")]), None);
    }

    #[test]
    fn histogram_quantiles_interpolate_inside_the_bucket() {
        let buckets = [(1.0, 50), (2.0, 100), (f64::INFINITY, 100)];
        assert_eq!(histogram_quantile(&buckets, 0.5), Some(1.0));
        assert_eq!(histogram_quantile(&buckets, 0.75), Some(1.5));
        assert_eq!(histogram_quantile(&buckets, 0.25), Some(0.5));
        let tail = [(1.0, 1), (f64::INFINITY, 10)];
        assert_eq!(histogram_quantile(&tail, 0.99), Some(1.0));
        assert_eq!(histogram_quantile(&[(1.0, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(histogram_quantile(&[], 0.5), None);
    }

    #[test]
    fn durations_are_seeded_exponential_and_capped() {
        let durations = Durations::new(100);
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20_000).map(|_| durations.sample_ms(&mut rng)).collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7), "the same seed gives the same durations");
        assert_ne!(first, draw(8));
        assert!(first.iter().all(|ms| (1..=1_000).contains(ms)));
        let mean = first.iter().sum::<u64>() as f64 / first.len() as f64;
        assert!((90.0..=110.0).contains(&mean), "mean {mean}");
        let mut sorted: Vec<f64> = first.iter().map(|&ms| ms as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 50.0).expect("draws");
        // The exponential's median is ln 2 times the mean.
        assert!((60.0..=80.0).contains(&median), "median {median}");
    }
}
