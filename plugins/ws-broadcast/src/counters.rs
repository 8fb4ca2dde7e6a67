//! The sink's counters: atomics updated by the broadcast tasks, read by tests and `stats`, and
//! reported to the engine through the host's metrics callbacks once a second (`on_tick`).

use std::sync::atomic::{AtomicU64, Ordering};

use tickflow_sdk::{HostHandle, Metric};

macro_rules! counters {
    ($( $field:ident : $kind:ident, $metric:literal, $help:literal; )*) => {
        /// Every counter of the sink (totals since `create`, gauges as current values).
        #[derive(Debug, Default)]
        pub struct Counters {
            $( pub $field: AtomicU64, )*
        }

        /// A plain copy of [`Counters`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $( pub $field: u64, )*
        }

        impl Counters {
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $( $field: self.$field.load(Ordering::Relaxed), )* }
            }
        }

        /// The host metrics the counters are reported to.
        pub struct Reporter {
            metrics: Vec<(Option<Metric>, bool)>,
            last: CountersSnapshot,
        }

        impl Reporter {
            pub fn register(host: HostHandle) -> Reporter {
                let metrics = vec![
                    $( (counters!(@register host, $kind, $metric, $help), counters!(@is_gauge $kind)), )*
                ];
                Reporter { metrics, last: CountersSnapshot::default() }
            }

            /// Adds what changed since the last report (counters) and sets the gauges.
            pub fn report(&mut self, now: CountersSnapshot) {
                let values = [ $( (now.$field, self.last.$field), )* ];
                for ((metric, gauge), (value, last)) in self.metrics.iter().zip(values) {
                    let Some(metric) = metric else { continue };
                    if *gauge {
                        metric.set(value as f64);
                    } else if value > last {
                        metric.add(value - last);
                    }
                }
                self.last = now;
            }
        }
    };
    (@register $host:ident, counter, $metric:literal, $help:literal) => { $host.counter($metric, $help) };
    (@register $host:ident, gauge, $metric:literal, $help:literal) => { $host.gauge($metric, $help) };
    (@is_gauge counter) => { false };
    (@is_gauge gauge) => { true };
}

counters! {
    clients: gauge, "ws_clients", "WebSocket clients connected now";
    subscriptions: gauge, "ws_subscriptions", "Channel subscriptions over all clients now (wildcards count once)";
    connections_total: counter, "ws_connections_total", "WebSocket clients accepted";
    records_in: counter, "ws_records_in_total", "Records received from the engine";
    ingest_dropped: counter, "ws_ingest_dropped_total", "Records dropped because the queue to the broadcast task was full";
    pending_dropped: counter, "ws_pending_dropped_total", "Trades, opportunities and gaps dropped because pending_events_max was reached, or keys past keys_per_channel_max";
    channels_refused: counter, "ws_channels_refused_total", "Records or subscriptions refused because channels_max was reached";
    conflated_updates: counter, "ws_conflated_updates_total", "Updates replaced by a newer one of the same key within one flush";
    records_framed: counter, "ws_records_framed_total", "Records serialized into channel frames (once each, whatever the number of clients)";
    frames_built: counter, "ws_frames_built_total", "Channel frames serialized (once each, whatever the number of clients)";
    frames_out: counter, "ws_frames_out_total", "Frames written to clients";
    bytes_out: counter, "ws_bytes_out_total", "Bytes written to clients";
    skipped_frames: counter, "ws_skipped_frames_total", "Conflated frames a lagging client skipped (it got newer ones)";
    lagged_records: counter, "ws_lagged_records_total", "Trade, opportunity and gap records lagging clients lost (each told with {\"lagged\":n})";
    errors_sent: counter, "ws_errors_sent_total", "Error frames sent to clients";
    closed_lagging: counter, "ws_closed_lagging_total", "Clients closed (1008) for losing more than client_lag_max_frames frames or overflowing their queue";
    closed_write_timeout: counter, "ws_closed_write_timeout_total", "Clients closed because a write missed write_timeout_ms";
    closed_pong_timeout: counter, "ws_closed_pong_timeout_total", "Clients closed (1008) for not answering a ping within pong_timeout_s";
    closed_protocol: counter, "ws_closed_protocol_total", "Clients closed for a protocol error or a message past the hard size limit";
    closed_by_client: counter, "ws_closed_by_client_total", "Clients that closed or dropped their connection";
    closed_shutdown: counter, "ws_closed_shutdown_total", "Clients closed (1001) at shutdown";
    refused_token: counter, "ws_refused_token_total", "Upgrades refused (401) for a missing or wrong token";
    refused_origin: counter, "ws_refused_origin_total", "Upgrades refused (403) for an Origin not allowed";
    refused_clients_max: counter, "ws_refused_clients_max_total", "Connections refused because clients_max was reached";
    refused_bad_request: counter, "ws_refused_bad_request_total", "HTTP requests that were not a valid WebSocket upgrade on the path";
}

impl Counters {
    pub fn add(counter: &AtomicU64, delta: u64) {
        counter.fetch_add(delta, Ordering::Relaxed);
    }
}
