//! Latency samples and their percentiles.

use std::time::Duration;

/// Nanosecond samples.
#[derive(Default, Clone)]
pub struct Latencies {
    samples: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    pub fn push(&mut self, sample: Duration) {
        self.samples
            .push(sample.as_nanos().min(u32::MAX as u128) as u32);
        self.sorted = false;
    }

    pub fn extend(&mut self, samples: Vec<u32>) {
        self.samples.extend(samples);
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Latencies) {
        self.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The q-quantile (0 < q ≤ 1), nearest rank.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let rank = ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
        Duration::from_nanos(self.samples[rank - 1] as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut l = Latencies::default();
        l.extend((1..=1000).collect());
        assert_eq!(l.quantile(0.5), Duration::from_nanos(500));
        assert_eq!(l.quantile(0.99), Duration::from_nanos(990));
        assert_eq!(l.quantile(0.999), Duration::from_nanos(999));
        assert_eq!(l.quantile(1.0), Duration::from_nanos(1000));
    }
}
