//! Per-principal rate limits: GCRA (the generic cell rate algorithm), one cell per key,
//! quotas by plan tier.
//!
//! A tier allows `limit` requests per minute, replenished continuously, with a bucket of
//! `limit × (1 + burst%)`: a free key may send 60 at once and then one per second. GCRA
//! keeps one timestamp per key (the theoretical arrival time), so a check is a hash
//! lookup and some arithmetic under a sharded lock.
//!
//! Limits are per process: with N API nodes behind a balancer a key gets up to N times
//! its quota. (Shared limits need a shared store; see docs/architecture.md.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pulsar_domain::workspace::Tier;

const SHARDS: usize = 16;
/// Above this many cells a shard drops the ones that are full again.
const PRUNE_ABOVE: usize = 4096;

/// The outcome of one check, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The most requests the caller may send at once: the tier's per-minute rate plus
    /// its burst (API.md: pro is 5,000 + 30% = 6,500). `X-RateLimit-Limit`.
    pub limit: u32,
    /// The tier's rate, per minute, at which the allowance refills.
    pub per_minute: u32,
    /// Requests that could be sent right now without a 429; never above `limit`.
    pub remaining: u32,
    /// Unix seconds when the bucket is full again.
    pub reset_at: i64,
    /// How long to wait before the next request can pass (zero when allowed).
    pub retry_after: Duration,
}

/// Keyed GCRA limiter.
#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    /// Multiplies every tier's limit (operators' `PULSAR_RATE_LIMIT_SCALE`).
    scale: f64,
    shards: [Mutex<HashMap<String, u64>>; SHARDS],
}

impl RateLimiter {
    pub fn new(scale: f64) -> Self {
        Self {
            origin: Instant::now(),
            scale,
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, u64>> {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    /// Counts one request by `key` under `tier`'s quota.
    pub fn check(&self, key: &str, tier: Tier) -> Decision {
        self.check_at(key, tier, Instant::now(), chrono::Utc::now().timestamp())
    }

    fn check_at(&self, key: &str, tier: Tier, now: Instant, now_unix: i64) -> Decision {
        // Integer nanoseconds throughout, so that rounding never costs or grants a request.
        let (per_minute, burst_pct) = tier.rate_limit();
        let limit = ((f64::from(per_minute) * self.scale).round() as u64).max(1);
        let capacity = (limit * u64::from(100 + burst_pct) / 100).max(1);
        let interval = (60_000_000_000 / limit).max(1);
        let tolerance = interval * (capacity - 1);
        let now = now.duration_since(self.origin).as_nanos() as u64;
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let tat = shard.get(key).copied().unwrap_or(now).max(now);
        let reset_in = |tat: u64| (tat - now).div_ceil(1_000_000_000) as i64;
        let per_minute = u32::try_from(limit).unwrap_or(u32::MAX);
        let limit = u32::try_from(capacity).unwrap_or(u32::MAX);
        if tat - now > tolerance {
            return Decision {
                allowed: false,
                limit,
                per_minute,
                remaining: 0,
                reset_at: now_unix + reset_in(tat),
                retry_after: Duration::from_nanos(tat - now - tolerance),
            };
        }
        let next = tat + interval;
        if shard.len() > PRUNE_ABOVE {
            shard.retain(|_, t| *t > now);
        }
        shard.insert(key.to_string(), next);
        let remaining = (now + tolerance + interval - next) / interval;
        Decision {
            allowed: true,
            limit,
            per_minute,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX).min(limit),
            reset_at: now_unix + reset_in(next),
            retry_after: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_tier_bursts_its_minute_then_drips() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        for i in 0..60 {
            let d = limiter.check_at("k", Tier::Free, start, 0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
            assert_eq!(d.limit, 60, "free has no burst");
        }
        let refused = limiter.check_at("k", Tier::Free, start, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.reset_at, 60);
        // One second later exactly one more passes.
        let later = start + Duration::from_secs(1);
        assert!(limiter.check_at("k", Tier::Free, later, 1).allowed);
        assert!(!limiter.check_at("k", Tier::Free, later, 1).allowed);
        // Other keys are unaffected.
        assert!(limiter.check_at("other", Tier::Free, start, 0).allowed);
    }

    #[test]
    fn burst_is_a_percentage_on_top() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        let passed = (0..2000)
            .filter(|_| limiter.check_at("k", Tier::Starter, start, 0).allowed)
            .count();
        assert_eq!(passed, 1200);
        let limiter = RateLimiter::new(0.01);
        let passed = (0..100)
            .filter(|_| limiter.check_at("k", Tier::Starter, start, 0).allowed)
            .count();
        assert_eq!(passed, 12);
    }

    #[test]
    fn remaining_never_exceeds_limit_which_counts_the_burst() {
        for tier in Tier::ALL {
            let limiter = RateLimiter::new(1.0);
            let start = Instant::now();
            let (per_minute, burst) = tier.rate_limit();
            let capacity = per_minute + per_minute * burst / 100;
            let first = limiter.check_at("k", tier, start, 0);
            assert_eq!(first.limit, capacity, "{tier:?}");
            assert_eq!(first.per_minute, per_minute);
            assert_eq!(first.remaining, capacity - 1, "{tier:?}");
            // After idling, the allowance is full again and still within the limit.
            let later = limiter.check_at("k", tier, start + Duration::from_secs(3600), 3600);
            assert!(later.remaining < later.limit, "{tier:?}: {later:?}");
        }
        // API.md's example: pro is 5,000 + 30%.
        let pro = RateLimiter::new(1.0).check_at("k", Tier::Pro, Instant::now(), 0);
        assert_eq!((pro.limit, pro.remaining), (6_500, 6_499));
    }
}
