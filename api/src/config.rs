//! Operator configuration: defaults, then `PULSAR_*` environment variables, then
//! validation. Nothing else in Pulsar reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use pulsar_dispatcher::DispatcherConfig;

/// Every setting, typed. `pulsar --help` prints [`Config::HELP`].
#[derive(Debug, Clone)]
pub struct Config {
    /// `PULSAR_LISTEN`: address to serve on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// `DATABASE_URL`: PostgreSQL to use; `None` starts the embedded cluster.
    pub database_url: Option<String>,
    /// `PULSAR_DATA_DIR`: where the embedded cluster lives.
    pub data_dir: PathBuf,
    /// `PULSAR_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `PULSAR_WEBHOOK_*`: the dispatcher's section (SSRF allowances, retry schedule,
    /// disable window, timeouts, concurrency).
    pub webhooks: DispatcherConfig,
    /// `PULSAR_SECRET_KEY`: encrypts webhook secrets at rest; generated into the data
    /// dir when unset.
    pub secret_key: Option<String>,
    /// `PULSAR_AUDIT_SIGNING_KEY`: the Ed25519 seed that signs audit checkpoints;
    /// generated into the data dir when unset.
    pub audit_signing_key: Option<String>,
    /// `PULSAR_AUDIT_ORIGIN`: the checkpoints' origin line; default the listen address
    /// + `/audit`.
    pub audit_origin: Option<String>,
    /// `PULSAR_ALLOW_SIGNUP`: whether `POST /auth/signup` is open.
    pub allow_signup: bool,
    /// `PULSAR_MAX_BODY_BYTES`: largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// `PULSAR_CONSISTENCY_TIMEOUT_MS`: how long a write waits for its read models.
    pub consistency_timeout: Duration,
    /// `PULSAR_DB_POOL_SIZE`: PostgreSQL connections per process.
    pub db_pool_size: u32,
    /// `PULSAR_READY_MAX_LAG`: events a subscriber may be behind and still be ready.
    pub ready_max_lag: i64,
    /// `PULSAR_MAINTENANCE_INTERVAL_MS`: how often background upkeep runs (expiring rotated
    /// keys, flushing usage counters).
    pub maintenance_interval: Duration,
    /// `PULSAR_RATE_LIMIT_SCALE`: multiplies every tier's requests per minute.
    pub rate_limit_scale: f64,
    /// `PULSAR_METER_USAGE`: count API calls per key and minute for `/usage` (`false`
    /// turns metering off: `/usage`, monthly API calls and keys' `last_used_at` stop).
    pub meter_usage: bool,
    /// `PULSAR_UPGRADE_URL`: where `feature_limit_reached` answers send people to upgrade.
    pub upgrade_url: String,
    /// `PULSAR_MCP_ALLOWED_ORIGINS`: browser origins (`https://app.example`) allowed to call
    /// `/api/mcp` besides the server's own; requests without `Origin` are always allowed.
    pub mcp_allowed_origins: Vec<String>,
    /// `PULSAR_LOG`: tracing filter, e.g. `info,pulsar_api=debug`.
    pub log: String,
    /// `PULSAR_LOG_FORMAT`: `text` or `json`.
    pub log_json: bool,
}

/// A setting could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            data_dir: PathBuf::from("./data"),
            trusted_proxies: Vec::new(),
            webhooks: DispatcherConfig::default(),
            secret_key: None,
            audit_signing_key: None,
            audit_origin: None,
            allow_signup: true,
            max_body_bytes: 1024 * 1024,
            consistency_timeout: Duration::from_millis(2000),
            db_pool_size: 32,
            ready_max_lag: 10_000,
            rate_limit_scale: 1.0,
            maintenance_interval: Duration::from_secs(2),
            upgrade_url: "https://pulsar.dev/pricing".into(),
            mcp_allowed_origins: Vec::new(),
            log: "info".into(),
            log_json: false,
            meter_usage: true,
        }
    }
}

fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(number)),
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

fn parse_cidrs(value: &str) -> Result<Vec<IpNet>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))
        })
        .collect()
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (true/false)")),
    }
}

impl Config {
    /// The settings list `pulsar --help` prints.
    pub const HELP: &'static str = "\
Environment (all optional):
  PULSAR_LISTEN                   address to serve on [127.0.0.1:8080] (port 0 picks one)
  DATABASE_URL                    PostgreSQL URL; unset starts an embedded cluster
  PULSAR_DATA_DIR                 where the embedded cluster lives [./data]
  PULSAR_TRUSTED_PROXIES          CIDRs whose X-Forwarded-For is believed [none]
  PULSAR_WEBHOOK_ALLOW_CIDRS      private ranges webhooks may reach [none]
  PULSAR_WEBHOOK_ALLOW_HTTP       allow plain-http webhook URLs [false]
  PULSAR_WEBHOOK_RETRY_SCHEDULE   delays between attempts [5s,5m,30m,2h,5h,10h,10h]
  PULSAR_WEBHOOK_DISABLE_AFTER    disable an endpoint with no success for this long [5d]
  PULSAR_WEBHOOK_TIMEOUT_MS       bound of one delivery request [15000]
  PULSAR_WEBHOOK_CONCURRENCY      deliveries in flight per dispatcher process [64]
  PULSAR_SECRET_KEY               key encrypting webhook secrets [generated into the data dir]
  PULSAR_AUDIT_SIGNING_KEY        Ed25519 seed signing audit checkpoints [generated into the data dir]
  PULSAR_AUDIT_ORIGIN             origin line of audit checkpoints [listen address + /audit]
  PULSAR_ALLOW_SIGNUP             whether POST /auth/signup is open [true]
  PULSAR_MAX_BODY_BYTES           largest request body [1048576]
  PULSAR_CONSISTENCY_TIMEOUT_MS   read-your-writes wait bound [2000]
  PULSAR_DB_POOL_SIZE             PostgreSQL connections [32]
  PULSAR_READY_MAX_LAG            events a projection may lag and stay ready [10000]
  PULSAR_MAINTENANCE_INTERVAL_MS  background upkeep period [2000]
  PULSAR_RATE_LIMIT_SCALE         multiplies every tier's requests per minute [1]
  PULSAR_METER_USAGE              count API calls per key and minute for /usage [true]
  PULSAR_UPGRADE_URL              upgrade link in feature_limit_reached [https://pulsar.dev/pricing]
  PULSAR_MCP_ALLOWED_ORIGINS      comma list of browser origins allowed on /api/mcp [same origin]
  PULSAR_LOG                      log filter [info]
  PULSAR_LOG_FORMAT               text or json [text]";

    /// Defaults overridden by the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Defaults overridden by `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let get = |name: &'static str| lookup(name).map(|v| (name, v));
        let fail = |variable: &'static str, message: String| ConfigError { variable, message };
        if let Some((name, value)) = get("PULSAR_LISTEN") {
            let value = if value.starts_with(':') {
                format!("127.0.0.1{value}")
            } else {
                value
            };
            config.listen = value.parse().map_err(|_| {
                fail(
                    name,
                    format!("`{value}` is not an address like 127.0.0.1:8080"),
                )
            })?;
        }
        config.database_url = lookup("DATABASE_URL").filter(|v| !v.trim().is_empty());
        if let Some((_, value)) = get("PULSAR_DATA_DIR") {
            config.data_dir = PathBuf::from(value);
        }
        if let Some((name, value)) = get("PULSAR_TRUSTED_PROXIES") {
            config.trusted_proxies = parse_cidrs(&value).map_err(|m| fail(name, m))?;
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_ALLOW_CIDRS") {
            config.webhooks.allow_cidrs = parse_cidrs(&value).map_err(|m| fail(name, m))?;
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_ALLOW_HTTP") {
            config.webhooks.allow_http = parse_bool(&value).map_err(|m| fail(name, m))?;
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_RETRY_SCHEDULE") {
            config.webhooks.retry_schedule = value
                .split(',')
                .map(|d| {
                    parse_duration(d).ok_or_else(|| {
                        fail(name, format!("`{d}` is not a duration like 5s, 5m, 2h"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_DISABLE_AFTER") {
            config.webhooks.disable_after = parse_duration(&value)
                .ok_or_else(|| fail(name, format!("`{value}` is not a duration like 5d, 12h")))?;
        }
        if let Some((_, value)) = get("PULSAR_UPGRADE_URL") {
            config.upgrade_url = value;
        }
        if let Some((_, value)) = get("PULSAR_MCP_ALLOWED_ORIGINS") {
            config.mcp_allowed_origins = value
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        config.secret_key = lookup("PULSAR_SECRET_KEY").filter(|v| !v.is_empty());
        config.audit_signing_key = lookup("PULSAR_AUDIT_SIGNING_KEY").filter(|v| !v.is_empty());
        config.audit_origin = lookup("PULSAR_AUDIT_ORIGIN").filter(|v| !v.trim().is_empty());
        if let Some((name, value)) = get("PULSAR_ALLOW_SIGNUP") {
            config.allow_signup = parse_bool(&value).map_err(|m| fail(name, m))?;
        }
        let number = |name: &'static str, value: &str, min: u64, max: u64| {
            value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    fail(
                        name,
                        format!("`{value}` is not a number from {min} to {max}"),
                    )
                })
        };
        if let Some((name, value)) = get("PULSAR_MAX_BODY_BYTES") {
            config.max_body_bytes = number(name, &value, 1024, 64 * 1024 * 1024)? as usize;
        }
        if let Some((name, value)) = get("PULSAR_CONSISTENCY_TIMEOUT_MS") {
            config.consistency_timeout = Duration::from_millis(number(name, &value, 0, 60_000)?);
        }
        if let Some((name, value)) = get("PULSAR_DB_POOL_SIZE") {
            config.db_pool_size = number(name, &value, 2, 1000)? as u32;
        }
        if let Some((name, value)) = get("PULSAR_READY_MAX_LAG") {
            config.ready_max_lag = number(name, &value, 0, i64::MAX as u64)? as i64;
        }
        if let Some((name, value)) = get("PULSAR_MAINTENANCE_INTERVAL_MS") {
            config.maintenance_interval =
                Duration::from_millis(number(name, &value, 10, 3_600_000)?);
        }
        if let Some((name, value)) = get("PULSAR_RATE_LIMIT_SCALE") {
            config.rate_limit_scale = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1000.0)
                .ok_or_else(|| fail(name, format!("`{value}` is not a factor from 0 to 1000")))?;
        }
        if let Some((_, value)) = get("PULSAR_LOG") {
            config.log = value;
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_TIMEOUT_MS") {
            config.webhooks.request_timeout =
                Duration::from_millis(number(name, &value, 100, 300_000)?);
        }
        if let Some((name, value)) = get("PULSAR_WEBHOOK_CONCURRENCY") {
            config.webhooks.concurrency = number(name, &value, 1, 10_000)? as usize;
        }
        // A claimed delivery stays with its worker for a request's bound and a margin.
        config.webhooks.lease = config.webhooks.request_timeout + Duration::from_secs(5);
        if let Some((name, value)) = get("PULSAR_METER_USAGE") {
            config.meter_usage = match value.as_str() {
                "true" => true,
                "false" => false,
                other => return Err(fail(name, format!("`{other}` is not true or false"))),
            };
        }
        if let Some((name, value)) = get("PULSAR_LOG_FORMAT") {
            config.log_json = match value.as_str() {
                "json" => true,
                "text" => false,
                other => return Err(fail(name, format!("`{other}` is not text or json"))),
            };
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_then_environment() {
        let config = from(&[]).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.webhooks.retry_schedule.len(), 7);
        let config = from(&[
            ("PULSAR_LISTEN", ":0"),
            ("PULSAR_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1 ,::1"),
            ("PULSAR_WEBHOOK_RETRY_SCHEDULE", "100ms,2s,1m"),
            ("PULSAR_ALLOW_SIGNUP", "false"),
        ])
        .expect("valid");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.trusted_proxies.len(), 3);
        assert_eq!(
            config.webhooks.retry_schedule,
            vec![
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert!(!config.allow_signup);
    }

    #[test]
    fn names_the_bad_variable() {
        let error = from(&[("PULSAR_TRUSTED_PROXIES", "10.0.0.0/33")]).expect_err("bad cidr");
        assert_eq!(error.variable, "PULSAR_TRUSTED_PROXIES");
        assert!(from(&[("PULSAR_LISTEN", "nope")]).is_err());
        assert!(from(&[("PULSAR_WEBHOOK_RETRY_SCHEDULE", "5x")]).is_err());
        assert!(from(&[("PULSAR_MAX_BODY_BYTES", "12")]).is_err());
    }
}
