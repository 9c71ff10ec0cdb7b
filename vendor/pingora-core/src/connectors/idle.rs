//! pingress patch 25: the pool of idle upstream streams, kept without a task per idle stream.
//!
//! The released pool (`pingora_pool::ConnectionPool` behind an `Arc<Mutex<..>>` per stream)
//! spawned a task for every released stream that read it until it was reused, closed or timed
//! out: a task, two channels, a `Notify`, a lock and a timer per proxied request. Here a released
//! stream goes into a per-key stack. A closed or timed-out stream is found when it is taken
//! (`test_reusable_stream` reads the socket's readiness, which the runtime's reactor keeps up to
//! date whether or not a task waits on it: no system call unless an event arrived) and by a
//! sweep once a second while the pool holds anything, which closes what the server closed or
//! what outlived its idle timeout (the released watch closed those at once; here within a
//! second).

use super::{test_reusable_stream, PoolCallback};
use crate::protocols::Stream;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How often the streams in the pool are looked at while it holds any.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    since: Instant,
    expires: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// The pool keys are already hashes (`Peer::reuse_hash`).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<u64, VecDeque<Idle>, BuildHasherDefault<KeyHasher>>,
    total: usize,
    sweeping: bool,
}

impl Inner {
    /// The longest idle stream: of `key` if it has one, else of the whole pool.
    fn pop_oldest(&mut self, key: u64) -> Option<Idle> {
        let key = match self.by_key.get(&key) {
            Some(q) if !q.is_empty() => key,
            _ => {
                *self
                    .by_key
                    .iter()
                    .filter_map(|(k, q)| q.front().map(|i| (k, i.since)))
                    .min_by_key(|(_, since)| *since)?
                    .0
            }
        };
        let idle = self.by_key.get_mut(&key)?.pop_front()?;
        self.total -= 1;
        Some(idle)
    }
}

/// Idle streams by pool key, at most `capacity` in all.
pub(crate) struct IdlePool {
    capacity: usize,
    inner: Mutex<Inner>,
    unexpected_data: Arc<AtomicU64>,
    evicted: Option<PoolCallback>,
}

impl IdlePool {
    pub(crate) fn new(
        capacity: usize,
        unexpected_data: Arc<AtomicU64>,
        evicted: Option<PoolCallback>,
    ) -> Arc<Self> {
        Arc::new(IdlePool {
            capacity,
            inner: Mutex::new(Inner::default()),
            unexpected_data,
            evicted,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // nothing panics while the lock is held; a poisoned pool is still consistent
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently released usable stream of `key` (last in, first out, as nginx's
    /// keepalive cache). Streams found closed or past their idle timeout are closed.
    pub(crate) fn take(&self, key: u64) -> Option<Stream> {
        let mut now = None;
        loop {
            let mut idle = {
                let mut inner = self.lock();
                let idle = inner.by_key.get_mut(&key)?.pop_back()?;
                inner.total -= 1;
                idle
            };
            // the socket checks run outside the lock
            if idle.expires.is_some() && idle.expired(*now.get_or_insert_with(Instant::now)) {
                continue;
            }
            if test_reusable_stream(&mut idle.stream, &self.unexpected_data) {
                return Some(idle.stream);
            }
        }
    }

    /// Keep `stream` for reuse under `key`, for at most `idle_timeout`. When the pool is full
    /// the longest idle stream of the key (else of the pool) is closed to make room.
    pub(crate) fn put(self: &Arc<Self>, key: u64, stream: Stream, idle_timeout: Option<Duration>) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let idle = Idle {
            stream,
            since: now,
            expires: idle_timeout.map(|t| now + t),
        };
        let (evicted, start_sweep) = {
            let mut inner = self.lock();
            let evicted = if inner.total >= self.capacity {
                inner.pop_oldest(key)
            } else {
                None
            };
            inner.by_key.entry(key).or_default().push_back(idle);
            inner.total += 1;
            let start_sweep = !inner.sweeping;
            inner.sweeping = true;
            (evicted, start_sweep)
        };
        if let Some(evicted) = evicted {
            if let Some(callback) = &self.evicted {
                callback(evicted.since.elapsed());
            }
        }
        if start_sweep {
            tokio::spawn(Self::sweep(Arc::downgrade(self)));
        }
    }

    /// Once a second while the pool holds streams: close those the server closed (or sent
    /// data on) and those past their idle timeout. Ends when the pool is empty (the next `put`
    /// starts it again) or dropped (which closes what it held).
    async fn sweep(pool: Weak<Self>) {
        loop {
            pingora_timeout::sleep(SWEEP_EVERY).await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            match pool.sweep_once(Instant::now()) {
                Some(closed) => drop(closed),
                None => return,
            }
        }
    }

    /// One sweep: the streams it took out (closed when dropped), or None when the pool is
    /// empty and the sweep has ended.
    fn sweep_once(&self, now: Instant) -> Option<Vec<Idle>> {
        let mut closed = Vec::new();
        let mut inner = self.lock();
        for q in inner.by_key.values_mut() {
            let mut i = 0;
            while i < q.len() {
                let keep = !q[i].expired(now)
                    && test_reusable_stream(&mut q[i].stream, &self.unexpected_data);
                match keep {
                    true => i += 1,
                    false => closed.extend(q.remove(i)),
                }
            }
        }
        inner.by_key.retain(|_, q| !q.is_empty());
        inner.total -= closed.len();
        if inner.total == 0 {
            inner.sweeping = false;
            return None;
        }
        Some(closed)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: our pooled side and the server's side.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client: L4Stream = client.unwrap().into();
        (Box::new(client), server.unwrap().0)
    }

    fn pool(capacity: usize) -> Arc<IdlePool> {
        IdlePool::new(capacity, Arc::new(AtomicU64::new(0)), None)
    }

    #[tokio::test]
    async fn the_last_released_stream_is_taken_first() {
        let p = pool(8);
        let (a, _sa) = pair().await;
        let (b, _sb) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        p.put(1, a, None);
        p.put(1, b, None);
        assert!(p.take(2).is_none(), "another key has nothing");
        assert_eq!(p.take(1).map(|s| s.id()), Some(b_id));
        assert_eq!(p.take(1).map(|s| s.id()), Some(a_id));
        assert!(p.take(1).is_none());
        assert_eq!(p.len(), 0);
    }

    #[tokio::test]
    async fn a_stream_the_server_closed_is_not_taken() {
        let p = pool(8);
        let (a, sa) = pair().await;
        let (b, mut sb) = pair().await;
        let a_id = a.id();
        p.put(1, a, None);
        p.put(1, b, None);
        drop(sa);
        sb.shutdown().await.unwrap();
        // the reactor learns of both closes; then neither is handed out
        let mut tries = 0;
        loop {
            tokio::task::yield_now().await;
            let got = p.take(1);
            match got {
                None => break,
                // a close the reactor has not seen yet is a race the caller's retry covers;
                // it must go away within a few turns of the runtime
                Some(s) if tries < 1000 => {
                    p.put(1, s, None);
                    tries += 1;
                }
                Some(s) => panic!("closed stream {} (a is {a_id}) still handed out", s.id()),
            }
        }
        assert_eq!(p.len(), 0);
    }

    #[tokio::test]
    async fn a_stream_past_its_idle_timeout_is_not_taken() {
        let p = pool(8);
        let (a, _sa) = pair().await;
        p.put(1, a, Some(Duration::ZERO));
        assert!(p.take(1).is_none());
        assert_eq!(p.len(), 0);
    }

    #[tokio::test]
    async fn a_full_pool_closes_the_longest_idle_stream() {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let callback: PoolCallback = Arc::new(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let p = IdlePool::new(2, Arc::new(AtomicU64::new(0)), Some(callback));
        let (a, _sa) = pair().await;
        let (b, _sb) = pair().await;
        let (c, _sc) = pair().await;
        let (b_id, c_id) = (b.id(), c.id());
        p.put(1, a, None);
        p.put(2, b, None);
        p.put(3, c, None); // key 3 has none: the pool's oldest (a, key 1) goes
        assert_eq!(p.len(), 2);
        assert_eq!(evictions.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(p.take(1).is_none());
        assert_eq!(p.take(2).map(|s| s.id()), Some(b_id));
        assert_eq!(p.take(3).map(|s| s.id()), Some(c_id));
    }

    #[tokio::test]
    async fn the_sweep_closes_what_the_server_closed_and_what_timed_out_and_then_ends() {
        let p = pool(8);
        let (a, sa) = pair().await;
        let (b, _sb) = pair().await;
        let (c, _sc) = pair().await;
        let c_id = c.id();
        p.put(1, a, None);
        p.put(2, b, Some(Duration::from_millis(1)));
        p.put(3, c, None);
        drop(sa);
        // wait for the reactor to see a's close (readiness), without a sleep as sync: the
        // sweep below also counts on it, so poll until the take-side check would see it
        let later = Instant::now() + Duration::from_secs(5);
        loop {
            let closed = p.sweep_once(Instant::now() + Duration::from_millis(2));
            assert!(closed.is_some(), "c is still pooled: the sweep goes on");
            if p.len() == 1 || Instant::now() > later {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(p.len(), 1, "a (closed) and b (timed out) swept, c kept");
        assert_eq!(p.take(3).map(|s| s.id()), Some(c_id));
        assert!(
            p.sweep_once(Instant::now()).is_none(),
            "an empty pool ends the sweep"
        );
        assert!(!p.lock().sweeping);
    }

    #[tokio::test]
    async fn the_sweep_task_runs_after_a_put_and_empties_the_pool() {
        let p = pool(8);
        let (a, _sa) = pair().await;
        p.put(1, a, Some(Duration::from_millis(1)));
        assert!(p.lock().sweeping, "a put starts the sweep");
        // the sweep runs once a second: wait for it, bounded
        let swept = tokio::time::timeout(Duration::from_secs(10), async {
            while p.len() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(swept.is_ok(), "the sweep closed the timed-out stream");
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while p.lock().sweeping {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "an empty pool ends the sweep");
    }
}
