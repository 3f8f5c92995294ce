//! The dispatcher's settings. The API's configuration reads them from the environment
//! (`PULSAR_WEBHOOK_*`, `PULSAR_SECRET_KEY`); this crate never reads it.

use std::time::Duration;

use ipnet::IpNet;

/// How deliveries are sent, retried and paced.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// `PULSAR_WEBHOOK_ALLOW_CIDRS`: otherwise refused ranges endpoints may reach.
    pub allow_cidrs: Vec<IpNet>,
    /// `PULSAR_WEBHOOK_ALLOW_HTTP`: allow plain-http endpoint URLs.
    pub allow_http: bool,
    /// `PULSAR_WEBHOOK_RETRY_SCHEDULE`: delays between attempts (n delays, n + 1 attempts).
    pub retry_schedule: Vec<Duration>,
    /// `PULSAR_WEBHOOK_DISABLE_AFTER`: an endpoint with no success for this long is
    /// disabled.
    pub disable_after: Duration,
    /// `PULSAR_WEBHOOK_TIMEOUT_MS`: bound of one request, connect to last byte.
    pub request_timeout: Duration,
    /// `PULSAR_WEBHOOK_CONCURRENCY`: requests in flight per dispatcher process.
    pub concurrency: usize,
    /// How long a claimed delivery stays with its worker before another may take it.
    pub lease: Duration,
    /// Longest `Retry-After` honoured; longer ones are cut to it.
    pub max_retry_after: Duration,
    /// Bytes of a response body kept with an attempt.
    pub response_body_limit: usize,
    /// Poll for due deliveries at least this often (wake-ups come sooner on new work).
    pub poll_interval: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            allow_http: false,
            retry_schedule: [5, 300, 1800, 7200, 18000, 36000, 36000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            disable_after: Duration::from_secs(5 * 86400),
            request_timeout: Duration::from_secs(15),
            concurrency: 64,
            lease: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(10 * 3600),
            response_body_limit: 4096,
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl DispatcherConfig {
    /// Attempts a delivery gets in one round (the schedule's delays plus the first).
    pub fn attempts_per_round(&self) -> i32 {
        i32::try_from(self.retry_schedule.len()).unwrap_or(i32::MAX - 1) + 1
    }
}
