//! Prometheus metrics, rendered by hand: request counts and latency per route, command
//! outcomes, read-your-writes waits, and each subscriber's position, state and lag.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pulsar_projections::subscription::{SubscriberState, SubscriptionStatus, LAG_BUCKETS_MS};
use pulsar_projections::Subscriptions;

/// A per-subscriber gauge: name, help, and how to read it off a status.
type Gauge = (&'static str, &'static str, fn(&SubscriptionStatus) -> f64);

#[derive(Debug, Default)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<HashMap<(String, String, u16), RouteStats>>,
    pub commands_total: AtomicU64,
    pub command_conflicts_total: AtomicU64,
    pub consistency_timeouts_total: AtomicU64,
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let stats = requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        stats.count += 1;
        stats.seconds += elapsed.as_secs_f64();
    }

    /// The Prometheus text exposition.
    pub fn render(&self, subscriptions: &Subscriptions) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pulsar_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE pulsar_http_requests_total counter");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = requests.keys().collect();
        keys.sort();
        for key @ (method, route, status) in &keys {
            let stats = &requests[*key];
            let _ = writeln!(
                out,
                "pulsar_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                stats.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP pulsar_http_request_duration_seconds_sum Time spent answering, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE pulsar_http_request_duration_seconds_sum counter"
        );
        for key @ (method, route, status) in &keys {
            let stats = &requests[*key];
            let _ = writeln!(
                out,
                "pulsar_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                stats.seconds
            );
        }
        drop(requests);
        for (name, help, value) in [
            (
                "pulsar_commands_total",
                "Commands committed.",
                &self.commands_total,
            ),
            (
                "pulsar_command_conflicts_total",
                "Aggregate conflicts retried.",
                &self.command_conflicts_total,
            ),
            (
                "pulsar_consistency_timeouts_total",
                "Writes answered before their read models caught up.",
                &self.consistency_timeouts_total,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let statuses = subscriptions.statuses();
        let gauges: [Gauge; 5] = [
            (
                "pulsar_subscription_position",
                "Global position of the last applied event.",
                |s| s.global_position as f64,
            ),
            (
                "pulsar_subscription_events_applied_total",
                "Events applied by this process.",
                |s| s.events_applied as f64,
            ),
            (
                "pulsar_subscription_failures_total",
                "Failed batches (rolled back and retried).",
                |s| s.failures_total as f64,
            ),
            (
                "pulsar_subscription_stuck",
                "1 when the subscriber keeps failing on the same batch.",
                |s| f64::from(u8::from(s.stuck)),
            ),
            (
                "pulsar_subscription_active",
                "1 when this process holds the subscriber's lock.",
                |s| f64::from(u8::from(s.state == SubscriberState::Active)),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for status in &statuses {
                let _ = writeln!(
                    out,
                    "{name}{{subscriber=\"{}\"}} {}",
                    status.name,
                    value(status)
                );
            }
        }
        let name = "pulsar_projection_lag_milliseconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from append to applied, per subscriber.\n# TYPE {name} histogram"
        );
        for status in &statuses {
            subscriptions.with_lag(status.name, |lag| {
                let (cumulative, sum_seconds) = lag.snapshot();
                for (bound, count) in LAG_BUCKETS_MS.iter().zip(&cumulative) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{subscriber=\"{}\",le=\"{bound}\"}} {count}",
                        status.name
                    );
                }
                let total = cumulative.last().copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{subscriber=\"{}\",le=\"+Inf\"}} {total}",
                    status.name
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{{subscriber=\"{}\"}} {}",
                    status.name,
                    sum_seconds * 1000.0
                );
                let _ = writeln!(
                    out,
                    "{name}_count{{subscriber=\"{}\"}} {total}",
                    status.name
                );
            });
        }
        out
    }
}
