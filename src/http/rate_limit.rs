//! Per-client rate limiting: a token bucket per client (the token's subject and role, or the
//! peer address for sandbox requests without a token). Over the limit → 429 TOO_MANY_REQUESTS
//! with `Retry-After`, as PDS's proxy answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second per client, with a burst of the same size.
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before idle (full) ones are dropped.
const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket; `Err(seconds)` to wait when it is empty
    /// (at most a second: a bucket refills at least one request a second).
    pub fn check(&self, client: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            let rate = self.per_second;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < rate);
        }
        let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        bucket.tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_client() {
        let l = RateLimiter::new(5);
        for _ in 0..5 {
            assert!(l.check("a").is_ok());
        }
        assert_eq!(l.check("a"), Err(1));
        assert!(l.check("b").is_ok(), "clients have their own buckets");
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(l.check("a").is_ok(), "tokens come back over time");
    }
}
