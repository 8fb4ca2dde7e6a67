//! Time series with a fixed number of points whatever the run's length: when full, adjacent
//! points are merged in pairs (mean, or max for peaks) and later samples are averaged over the
//! doubled stride before they are stored. Memory: `points_max` × 16 bytes per series.

use serde::Serialize;

/// How two points merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    Mean,
    Max,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub merge: Merge,
    /// Samples per stored point.
    pub stride: u64,
    /// (seconds since the run started, value).
    pub points: Vec<(f64, f64)>,
    #[serde(skip)]
    points_max: usize,
    #[serde(skip)]
    pending: Option<(f64, f64, u64)>,
}

impl Series {
    pub fn new(name: &str, unit: &str, merge: Merge, points_max: usize) -> Series {
        let points_max = points_max.max(4);
        Series {
            name: name.to_owned(),
            unit: unit.to_owned(),
            merge,
            stride: 1,
            points: Vec::with_capacity(points_max),
            points_max,
            pending: None,
        }
    }

    fn combine(&self, a: f64, b: f64, a_weight: u64, b_weight: u64) -> f64 {
        match self.merge {
            Merge::Max => a.max(b),
            Merge::Mean => {
                (a * a_weight as f64 + b * b_weight as f64) / (a_weight + b_weight).max(1) as f64
            }
        }
    }

    /// Adds one sample (non-finite values are skipped).
    pub fn push(&mut self, t_s: f64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let (t0, value, count) = match self.pending.take() {
            Some((t0, held, count)) => (t0, self.combine(held, value, count, 1), count + 1),
            None => (t_s, value, 1),
        };
        if count < self.stride {
            self.pending = Some((t0, value, count));
            return;
        }
        if self.points.len() == self.points_max {
            let merged: Vec<(f64, f64)> = self
                .points
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => (a.0, self.combine(a.1, b.1, 1, 1)),
                    [a] => *a,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            self.points = merged;
            self.stride *= 2;
        }
        self.points.push((t0, value));
    }

    /// Points, with a held partial point at the end.
    pub fn all_points(&self) -> Vec<(f64, f64)> {
        let mut points = self.points.clone();
        if let Some((t0, value, _)) = self.pending {
            points.push((t0, value));
        }
        points
    }

    pub fn last(&self) -> Option<f64> {
        self.pending
            .map(|(_, value, _)| value)
            .or_else(|| self.points.last().map(|point| point.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_the_shape() {
        let mut series = Series::new("rss", "MiB", Merge::Mean, 16);
        for second in 0..10_000 {
            series.push(second as f64, second as f64);
        }
        assert!(series.points.len() <= 16, "{}", series.points.len());
        assert!(series.stride >= 512);
        let points = series.all_points();
        assert!(points.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(points.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert!(points[0].0 == 0.0);
    }

    #[test]
    fn max_series_keep_their_peak() {
        let mut series = Series::new("drops", "1/s", Merge::Max, 4);
        for second in 0..64 {
            series.push(second as f64, if second == 33 { 99.0 } else { 0.0 });
        }
        assert!(series.all_points().iter().any(|point| point.1 == 99.0));
        series.push(64.0, f64::NAN);
        assert!(series.points.len() <= 4);
    }
}
