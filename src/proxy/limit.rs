//! Rate and connection limits, keyed by (zone, client IP); state outlives table swaps.
//!
//! Rate limits are GCRA, which is nginx `limit_req burst=N nodelay` exactly: the first request
//! is free, up to `burst` more pass at once, then one per emission interval (1/rate). Memory is
//! bounded: shards sweep keys whose bucket is full again (idle), and a shard that is still over
//! its cap after a sweep is cleared (limits for those clients restart; logged).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
/// Keys per shard before a sweep (doubles while live keys stay above it, up to the cap).
const SWEEP_AT: usize = 4096;
const SHARD_CAP: usize = 16_384;

fn key_hash(zone: &str, kind: u8, ip: IpAddr) -> u64 {
    // SipHash with fixed keys: stable for the process, no allocation.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    zone.hash(&mut h);
    kind.hash(&mut h);
    ip.hash(&mut h);
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Shard {
    /// key -> theoretical arrival time (ns since `Limiter::epoch`)
    tat: HashMap<u64, u64>,
    sweep_at: usize,
}

/// A rate: `rate` requests per `per`, with `burst` more allowed at once.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub rate: u32,
    pub per: Duration,
    pub burst: u32,
}

/// GCRA rate limiter for every zone.
pub struct RateLimiter {
    epoch: Instant,
    shards: Vec<Mutex<Shard>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter {
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tat: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
        }
    }

    /// Whether one more request passes `rate` per `per` with `burst` extra, at `now`.
    pub fn check_at(&self, zone: &str, kind: u8, ip: IpAddr, r: Rate, now: Instant) -> bool {
        let Rate { rate, per, burst } = r;
        if rate == 0 {
            return true;
        }
        let interval = (per.as_nanos() / rate as u128).max(1) as u64;
        let tolerance = interval.saturating_mul(burst as u64);
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let key = key_hash(zone, kind, ip);
        let mut shard = lock(&self.shards[(key as usize) % SHARDS]);
        let tat = shard.tat.get(&key).copied().unwrap_or(now).max(now);
        if tat - now > tolerance {
            return false;
        }
        shard.tat.insert(key, tat + interval);
        if shard.tat.len() >= shard.sweep_at {
            sweep(&mut shard, now);
        }
        true
    }

    pub fn check(&self, zone: &str, kind: u8, ip: IpAddr, r: Rate) -> bool {
        self.check_at(zone, kind, ip, r, Instant::now())
    }

    /// Keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tat.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sweep(shard: &mut Shard, now: u64) {
    // a key whose TAT is in the past has a full bucket again: same as absent
    shard.tat.retain(|_, tat| *tat > now);
    if shard.tat.len() > SHARD_CAP {
        tracing::warn!(
            keys = shard.tat.len(),
            "rate-limit shard over capacity after sweeping idle clients; resetting it"
        );
        shard.tat.clear();
    }
    shard.sweep_at = (shard.tat.len() * 2).clamp(SWEEP_AT, SHARD_CAP);
}

/// Concurrent requests per (zone, client IP).
#[derive(Default)]
pub struct ConnLimiter {
    shards: [Mutex<HashMap<u64, u32>>; 16],
}

/// Held while a request counts against `limit-connections`; released on drop.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    key: u64,
}

impl ConnLimiter {
    pub fn acquire(self: &Arc<Self>, zone: &str, ip: IpAddr, limit: u32) -> Option<ConnGuard> {
        let key = key_hash(zone, 2, ip);
        let mut m = lock(&self.shards[(key as usize) % 16]);
        let n = m.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limiter: self.clone(),
            key,
        })
    }

    pub fn in_use(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut m = lock(&self.limiter.shards[(self.key as usize) % 16]);
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// `limit-rate`: how long to wait before sending a response chunk of `len` bytes, when
/// `sent` bytes went before it and the body started `elapsed` ago. As nginx's write filter:
/// after the first `after` bytes the rest goes at `rate` bytes per second, with one second of
/// credit.
pub fn send_delay(
    rate: u64,
    after: u64,
    sent: u64,
    len: u64,
    elapsed: Duration,
) -> Option<Duration> {
    if rate == 0 {
        return None;
    }
    let limited = (sent + len).saturating_sub(after);
    let due = Duration::from_secs_f64(limited as f64 / rate as f64)
        .saturating_sub(Duration::from_secs(1));
    due.checked_sub(elapsed).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {

    #[test]
    fn response_rate_delays_after_the_free_bytes_and_one_second_of_credit() {
        let kib = 1024;
        // 100 KiB at 20 KiB/s: due at 4 s (5 s less the second of credit)
        assert_eq!(
            send_delay(20 * kib, 0, 90 * kib, 10 * kib, Duration::from_secs(1)),
            Some(Duration::from_secs(3))
        );
        // nothing owed yet, or already late
        assert_eq!(send_delay(20 * kib, 0, 0, 10 * kib, Duration::ZERO), None);
        assert_eq!(
            send_delay(20 * kib, 0, 90 * kib, 10 * kib, Duration::from_secs(5)),
            None
        );
        // the first `after` bytes are free
        assert_eq!(
            send_delay(20 * kib, 100 * kib, 90 * kib, 10 * kib, Duration::ZERO),
            None
        );
        assert_eq!(send_delay(0, 0, 90 * kib, 10 * kib, Duration::ZERO), None);
    }

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn burst_plus_one_then_refill_at_rate() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // limit-rps 10, multiplier 5: 51 immediate requests pass, the 52nd does not
        let passed = (0..60)
            .filter(|_| {
                l.check_at(
                    "ns/i",
                    0,
                    ip(1),
                    Rate {
                        rate: 10,
                        per: s,
                        burst: 50,
                    },
                    t0,
                )
            })
            .count();
        assert_eq!(passed, 51);
        // 100 ms later exactly one more
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check_at(
            "ns/i",
            0,
            ip(1),
            Rate {
                rate: 10,
                per: s,
                burst: 50
            },
            t1
        ));
        assert!(!l.check_at(
            "ns/i",
            0,
            ip(1),
            Rate {
                rate: 10,
                per: s,
                burst: 50
            },
            t1
        ));
        // other clients and zones are independent
        assert!(l.check_at(
            "ns/i",
            0,
            ip(2),
            Rate {
                rate: 10,
                per: s,
                burst: 50
            },
            t1
        ));
        assert!(l.check_at(
            "ns/j",
            0,
            ip(1),
            Rate {
                rate: 10,
                per: s,
                burst: 50
            },
            t1
        ));
    }

    #[test]
    fn rpm_uses_minutes() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let m = Duration::from_secs(60);
        let passed = (0..10)
            .filter(|_| {
                l.check_at(
                    "z",
                    1,
                    ip(1),
                    Rate {
                        rate: 2,
                        per: m,
                        burst: 2,
                    },
                    t0,
                )
            })
            .count();
        assert_eq!(passed, 3);
        assert!(l.check_at(
            "z",
            1,
            ip(1),
            Rate {
                rate: 2,
                per: m,
                burst: 2
            },
            t0 + Duration::from_secs(30)
        ));
    }

    #[test]
    fn memory_is_bounded_for_a_million_clients() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        for i in 0..1_000_000u32 {
            // each client sends once; time advances 1 us per request
            let now = t0 + Duration::from_micros(i as u64);
            assert!(l.check_at(
                "z",
                0,
                ip(i),
                Rate {
                    rate: 100,
                    per: s,
                    burst: 500
                },
                now
            ));
        }
        assert!(l.len() <= SHARDS * SHARD_CAP, "{}", l.len());
    }

    #[test]
    fn connections_are_counted_and_released() {
        let c = Arc::new(ConnLimiter::default());
        let a = c.acquire("z", ip(1), 2).unwrap();
        let _b = c.acquire("z", ip(1), 2).unwrap();
        assert!(c.acquire("z", ip(1), 2).is_none());
        assert!(c.acquire("z", ip(2), 2).is_some());
        drop(a);
        assert!(c.acquire("z", ip(1), 2).is_some());
    }
}
