//! A Prometheus-style histogram as plain data: the DAP client and the read model count into it,
//! `/metrics` writes it out. A type-only leaf.

/// Observations counted per bucket (not cumulative; the exposition accumulates them).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// The buckets' upper bounds, ascending.
    pub bounds: &'static [f64],
    /// Observations per bucket: `buckets[i]` counts those above `bounds[i - 1]` and at most
    /// `bounds[i]`; those above the last bound are only in `count`.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&bound| value <= bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}
