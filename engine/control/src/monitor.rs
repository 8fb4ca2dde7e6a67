//! The control plane's own sampler: one task (owned by the server, stopped with it) that every
//! `monitor_interval_ms` reads the published engine status and /proc, and writes only its own
//! state: per-venue last-data and down-since times, the fixed memory-trend ring, the alerts
//! (active, and a bounded history of transitions, each logged once) and the shedding flag that
//! heavy routes read. Its one message to the engine is the shedding request
//! (`tickflow_core::shed::ShedControl`), set once when a memory alert turns critical and cleared
//! once when it ends; the shards and the universe refresh apply it themselves.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tickflow_core::venue::{VENUE_COUNT, Venue};

use crate::config::HttpConfig;
use crate::memory::{process_memory, system_memory};
use crate::state::{EngineStatus, EngineView};

/// What a critical memory alert sheds (said in the alert and in `/api/monitoring/memory`).
pub const SHED_HEAVY_REQUESTS: &str = "new heavy requests refused with 429";
/// Said when a critical memory alert pauses the universe refresh's additions.
pub const SHED_UNIVERSE_GROWTH: &str = "universe growth paused (new listings held back)";

/// What a critical memory alert sheds in an engine configured with `config`: heavy requests,
/// universe growth, and windows down to `shed_windows_percent` unless that is 100.
pub fn shed_actions(config: &HttpConfig, live: bool) -> Vec<String> {
    let mut actions = vec![SHED_HEAVY_REQUESTS.to_string()];
    if live {
        let percent = config.alerts.shed_windows_percent;
        if percent < 100 {
            actions.push(format!(
                "windows evicted to {percent}% of capacity, least recently updated first"
            ));
        }
        actions.push(SHED_UNIVERSE_GROWTH.to_string());
    }
    actions
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// One memory-trend sample.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TrendSample {
    pub ts_ms: i64,
    pub rss_bytes: u64,
    pub budget_bytes: u64,
    pub system_used_percent: f64,
    pub windows_live: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// An alert that is firing.
#[derive(Clone, Debug, Serialize)]
pub struct ActiveAlert {
    pub id: String,
    pub level: Level,
    pub value: f64,
    pub threshold: f64,
    pub since_ms: i64,
    pub message: String,
    pub shed: Vec<String>,
}

/// One change of an alert's level.
#[derive(Clone, Debug, Serialize)]
pub struct AlertTransition {
    pub ts_ms: i64,
    pub id: String,
    pub from: Level,
    pub to: Level,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

/// What the sampler knows of one venue.
#[derive(Clone, Copy, Debug, Default)]
pub struct VenueTrack {
    pub records: u64,
    pub last_data_at: Option<Instant>,
    /// Since when no connection of the venue has been up (None while one is).
    pub down_since: Option<Instant>,
    /// Since when at least one of its connections has been down.
    pub partly_down_since: Option<Instant>,
}

#[derive(Debug)]
struct MonitorState {
    venues: [VenueTrack; VENUE_COUNT],
    trend: VecDeque<TrendSample>,
    last_trend_at: Option<Instant>,
    active: BTreeMap<String, ActiveAlert>,
    history: VecDeque<AlertTransition>,
    last_ring_drops: Option<(Instant, u64)>,
    last_sink_drops: BTreeMap<String, (Instant, u64)>,
}

/// The sampler's state, shared with the handlers (they only read it).
#[derive(Debug)]
pub struct Monitor {
    state: Mutex<MonitorState>,
    shedding: AtomicBool,
    trend_capacity: usize,
    history_capacity: usize,
}

/// One alert evaluation: its id, measured value, thresholds and a message maker.
struct Evaluation {
    id: String,
    value: f64,
    warning: f64,
    critical: f64,
    describe: String,
    /// Set when the level is decided by the caller (venues), with the threshold to report.
    decided: Option<(Level, f64)>,
}

impl Monitor {
    pub fn new(config: &HttpConfig) -> Monitor {
        Monitor {
            state: Mutex::new(MonitorState {
                venues: [VenueTrack::default(); VENUE_COUNT],
                trend: VecDeque::with_capacity(config.trend_samples),
                last_trend_at: None,
                active: BTreeMap::new(),
                history: VecDeque::with_capacity(config.alert_history),
                last_ring_drops: None,
                last_sink_drops: BTreeMap::new(),
            }),
            shedding: AtomicBool::new(false),
            trend_capacity: config.trend_samples,
            history_capacity: config.alert_history,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MonitorState> {
        // A poisoned lock only means a reader panicked; the state is plain data and stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True while a critical memory alert is active: heavy routes answer 429.
    pub fn shedding(&self) -> bool {
        self.shedding.load(Ordering::Relaxed)
    }

    pub fn venue_tracks(&self) -> [VenueTrack; VENUE_COUNT] {
        self.lock().venues
    }

    /// Samples of the last `minutes`, oldest first.
    pub fn trend(&self, minutes: u64) -> Vec<TrendSample> {
        let since_ms = now_ms() - (minutes as i64) * 60_000;
        self.lock()
            .trend
            .iter()
            .filter(|sample| sample.ts_ms >= since_ms)
            .copied()
            .collect()
    }

    pub fn trend_capacity(&self) -> usize {
        self.trend_capacity
    }

    pub fn history_capacity(&self) -> usize {
        self.history_capacity
    }

    pub fn alerts(&self) -> (Vec<ActiveAlert>, Vec<AlertTransition>) {
        let state = self.lock();
        (
            state.active.values().cloned().collect(),
            state.history.iter().cloned().collect(),
        )
    }

    /// One sampling pass at `now`.
    pub fn tick(&self, now: Instant, view: &EngineView, config: &HttpConfig) {
        let status = view.live.as_ref().and_then(|live| live.board.status());
        let process = process_memory();
        let system = system_memory();
        let windows_live = status
            .as_ref()
            .map_or(0, |status| status.counters.windows_live);
        let mut state = self.lock();
        if let Some(status) = &status {
            track_venues(&mut state.venues, status, now);
        }
        let mut evaluations = Vec::new();
        let alerts = &config.alerts;
        let budget_bytes = view.budget.total_bytes as u64;
        if budget_bytes > 0 && process.rss_bytes > 0 {
            let percent = 100.0 * process.rss_bytes as f64 / budget_bytes as f64;
            evaluations.push(Evaluation {
                id: "rss_budget".into(),
                value: percent,
                warning: alerts.rss_budget_percent_warning,
                critical: alerts.rss_budget_percent_critical,
                describe: format!("RSS {percent:.1}% of the memory budget"),
                decided: None,
            });
        }
        if system.total_bytes > 0 {
            let percent = system.used_percent();
            evaluations.push(Evaluation {
                id: "system_memory".into(),
                value: percent,
                warning: alerts.system_memory_percent_warning,
                critical: alerts.system_memory_percent_critical,
                describe: format!("system memory {percent:.1}% used"),
                decided: None,
            });
        }
        if let Some(status) = &status {
            let drops = status.counters.dropped_ring_full;
            if let Some((at, previous)) = state.last_ring_drops {
                let rate = per_second(drops.saturating_sub(previous), now.duration_since(at));
                evaluations.push(Evaluation {
                    id: "ring_drops".into(),
                    value: rate,
                    warning: alerts.ring_drops_per_s_warning,
                    critical: alerts.ring_drops_per_s_critical,
                    describe: format!("feed rings dropping {rate:.1} records/s"),
                    decided: None,
                });
            }
            state.last_ring_drops = Some((now, drops));
            for sink in &status.sinks {
                let lost = sink.lost();
                if let Some(&(at, previous)) = state.last_sink_drops.get(&sink.name) {
                    let rate = per_second(lost.saturating_sub(previous), now.duration_since(at));
                    evaluations.push(Evaluation {
                        id: format!("sink_drops:{}", sink.name),
                        value: rate,
                        warning: alerts.sink_drops_per_s_warning,
                        critical: alerts.sink_drops_per_s_critical,
                        describe: format!("sink {} dropping {rate:.1} records/s", sink.name),
                        decided: None,
                    });
                }
                // Bounded: one entry per configured sink.
                state.last_sink_drops.insert(sink.name.clone(), (now, lost));
            }
            let down_after = Duration::from_millis(config.venue_down_after_ms);
            for venue in Venue::ALL {
                let track = state.venues[venue.index()];
                let all_down = track
                    .down_since
                    .map_or(Duration::ZERO, |since| now.duration_since(since));
                let partly_down = track
                    .partly_down_since
                    .map_or(Duration::ZERO, |since| now.duration_since(since));
                // Level by hand: warning when some connections are down that long, critical
                // when all are; the thresholds are the configured time either way.
                let (value, level) = if all_down >= down_after {
                    (all_down, Level::Critical)
                } else if partly_down >= down_after {
                    (partly_down, Level::Warning)
                } else {
                    (partly_down, Level::Ok)
                };
                let seconds = value.as_secs_f64();
                let threshold = down_after.as_secs_f64();
                let describe = match level {
                    Level::Critical => format!("{venue}: every connection down for {seconds:.0} s"),
                    _ => format!("{venue}: some connections down for {seconds:.0} s"),
                };
                evaluations.push(Evaluation {
                    id: format!("venue_down:{}", venue.name()),
                    value: seconds,
                    warning: threshold,
                    critical: threshold,
                    describe: format!("{describe} (limit {threshold:.0} s)"),
                    decided: Some((level, threshold)),
                });
            }
        }
        let now_wall_ms = now_ms();
        let shed_actions = shed_actions(config, view.live.is_some());
        for evaluation in evaluations {
            apply(
                &mut state,
                evaluation,
                now_wall_ms,
                self.history_capacity,
                &shed_actions,
            );
        }
        let shedding = ["rss_budget", "system_memory"].iter().any(|id| {
            state
                .active
                .get(*id)
                .is_some_and(|alert| alert.level == Level::Critical)
        });
        let was_shedding = self.shedding.swap(shedding, Ordering::Relaxed);
        // The engine is asked once per change (its shards and universe refresh apply it).
        if let Some(live) = view.live.as_ref()
            && shedding != was_shedding
        {
            if shedding {
                live.shed.engage(config.alerts.shed_windows_percent);
            } else {
                live.shed.release();
            }
        }
        let trend_due = state.last_trend_at.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_millis(config.trend_interval_ms)
        });
        if trend_due {
            state.last_trend_at = Some(now);
            if state.trend.len() == self.trend_capacity {
                state.trend.pop_front();
            }
            state.trend.push_back(TrendSample {
                ts_ms: now_wall_ms,
                rss_bytes: process.rss_bytes,
                budget_bytes,
                system_used_percent: system.used_percent(),
                windows_live,
            });
        }
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(0.001)
}

fn level_of(value: f64, warning: f64, critical: f64) -> (Level, f64) {
    if value >= critical {
        (Level::Critical, critical)
    } else if value >= warning {
        (Level::Warning, warning)
    } else {
        (Level::Ok, warning)
    }
}

/// Updates one alert; a change of level is recorded in the history and logged once.
fn apply(
    state: &mut MonitorState,
    evaluation: Evaluation,
    ts_ms: i64,
    history_capacity: usize,
    shed_actions: &[String],
) {
    let (level, threshold) = evaluation
        .decided
        .unwrap_or_else(|| level_of(evaluation.value, evaluation.warning, evaluation.critical));
    let previous = state
        .active
        .get(&evaluation.id)
        .map_or(Level::Ok, |alert| alert.level);
    let memory_alert = evaluation.id == "rss_budget" || evaluation.id == "system_memory";
    let shed = if memory_alert && level == Level::Critical {
        shed_actions.to_vec()
    } else {
        Vec::new()
    };
    let message = match level {
        Level::Ok => format!("{} (back to normal)", evaluation.describe),
        _ if evaluation.decided.is_none() => {
            format!("{} ({} at {threshold})", evaluation.describe, level.name())
        }
        _ => evaluation.describe.clone(),
    };
    if level != previous {
        match level {
            Level::Critical => tracing::error!(alert = %evaluation.id, shed = ?shed, "{message}"),
            Level::Warning => tracing::warn!(alert = %evaluation.id, "{message}"),
            Level::Ok => tracing::info!(alert = %evaluation.id, "alert cleared: {message}"),
        }
        if state.history.len() == history_capacity {
            state.history.pop_front();
        }
        state.history.push_back(AlertTransition {
            ts_ms,
            id: evaluation.id.clone(),
            from: previous,
            to: level,
            value: evaluation.value,
            threshold,
            message: message.clone(),
        });
    }
    if level == Level::Ok {
        state.active.remove(&evaluation.id);
        return;
    }
    let since_ms = match state.active.get(&evaluation.id) {
        Some(alert) if alert.level == level => alert.since_ms,
        _ => ts_ms,
    };
    // Bounded: ids come from a fixed set (two memory alerts, rings, one per sink, one per venue).
    state.active.insert(
        evaluation.id.clone(),
        ActiveAlert {
            id: evaluation.id,
            level,
            value: evaluation.value,
            threshold,
            since_ms,
            message,
            shed,
        },
    );
}

/// Per venue: records moved → last data now; no connection up → down since.
fn track_venues(venues: &mut [VenueTrack; VENUE_COUNT], status: &EngineStatus, now: Instant) {
    let mut planned = [0usize; VENUE_COUNT];
    let mut up = [0usize; VENUE_COUNT];
    let mut records = [0u64; VENUE_COUNT];
    for slot in &status.slots {
        let index = slot.plan.venue.index();
        planned[index] += 1;
        if slot.counters.connected.load(Ordering::Relaxed) {
            up[index] += 1;
        }
        records[index] += slot.counters.records.load(Ordering::Relaxed);
    }
    for (index, track) in venues.iter_mut().enumerate() {
        track.update(
            VenueSample {
                planned: planned[index],
                up: up[index],
                records: records[index],
            },
            now,
        );
    }
}

/// One venue's slots summed at one sample.
#[derive(Clone, Copy, Debug)]
struct VenueSample {
    planned: usize,
    up: usize,
    records: u64,
}

impl VenueTrack {
    fn update(&mut self, sample: VenueSample, now: Instant) {
        let data_moved = sample.records > self.records;
        if data_moved {
            self.last_data_at = Some(now);
        }
        // Data arrived since the last sample although no connection is up at this instant (a
        // venue that cuts every connection right after its first data, reconnected within the
        // second): the venue is down from now, not from the first sample that found it down.
        // Connects alone do not count: a venue that accepts and closes before any data (a ban,
        // a refused subscribe) is down all along.
        let up_meanwhile = data_moved;
        self.records = sample.records;
        if sample.planned > 0 && sample.up == 0 {
            if up_meanwhile {
                self.down_since = Some(now);
            } else {
                self.down_since.get_or_insert(now);
            }
        } else {
            self.down_since = None;
        }
        if sample.up < sample.planned {
            self.partly_down_since.get_or_insert(now);
        } else {
            self.partly_down_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venue_that_reconnects_between_samples_is_not_down_all_along() {
        let start = Instant::now();
        let second = |n: u64| start + Duration::from_secs(n);
        let sample = |up: usize, records: u64| VenueSample {
            planned: 1,
            up,
            records,
        };
        let mut track = VenueTrack::default();
        track.update(sample(1, 100), second(0));
        assert_eq!(track.down_since, None);
        // Cut: found down at 1 s.
        track.update(sample(0, 100), second(1));
        assert_eq!(track.down_since, Some(second(1)));
        // Reconnected, delivered and cut again between the samples: down from 2 s, not 1 s.
        track.update(sample(0, 150), second(2));
        assert_eq!(track.down_since, Some(second(2)));
        // No new data (reconnects that were accepted and closed before any included): still
        // down since 2 s.
        track.update(sample(0, 150), second(3));
        assert_eq!(track.down_since, Some(second(2)));
        track.update(sample(0, 150), second(10));
        assert_eq!(track.down_since, Some(second(2)));
        assert_eq!(track.last_data_at, Some(second(2)));
        track.update(sample(1, 160), second(11));
        assert_eq!(track.down_since, None);
        assert_eq!(track.partly_down_since, None);
    }
}
