//! Connection accounting of one listener: a cap on all open connections,
//! one per client address, one on unfinished handshakes per TCP peer, and
//! the idle timer that closes a connection with no request in flight.
//! Each admission is a guard that gives its slot back when dropped, so a
//! connection is counted exactly as long as its socket is open.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::ListenerLimits;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The listener holds `max_connections`.
    #[error("the listener holds max_connections")]
    Total,
    /// The TCP peer holds `max_handshakes_per_address` unfinished handshakes.
    #[error("the peer holds max_handshakes_per_address unfinished handshakes")]
    Handshakes,
    /// The client address holds `max_connections_per_address`.
    #[error("the client address holds max_connections_per_address")]
    Address,
}

impl Refused {
    /// The config field of the limit that was reached (a metrics label).
    pub fn limit(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::Handshakes => "max_handshakes_per_address",
            Refused::Address => "max_connections_per_address",
        }
    }
}

/// The connection counters of one listener.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_connections: u32,
    total: Arc<Semaphore>,
    handshakes: Arc<AddressCounts>,
    clients: Arc<AddressCounts>,
}

impl ConnectionLimiter {
    /// Counters for `limits`.
    pub fn new(limits: &ListenerLimits) -> Self {
        Self {
            max_connections: limits.max_connections,
            total: Arc::new(Semaphore::new(limits.max_connections as usize)),
            handshakes: Arc::new(AddressCounts::new(limits.max_handshakes_per_address)),
            clients: Arc::new(AddressCounts::new(limits.max_connections_per_address)),
        }
    }

    /// Admits a just-accepted connection from `tcp_peer`, counting it as
    /// an unfinished handshake of that peer unless `trusted_proxy`.
    pub fn admit(&self, tcp_peer: IpAddr, trusted_proxy: bool) -> Result<Admission, Refused> {
        let total = self.total.clone().try_acquire_owned().map_err(|_| Refused::Total)?;
        let handshake = if trusted_proxy { None } else { Some(self.handshakes.try_acquire(tcp_peer)?) };
        Ok(Admission { total, _handshake: handshake })
    }

    /// Counts the connection against its client's address, once known
    /// (after the PROXY header of a trusted load balancer).
    pub fn admit_client(&self, client: IpAddr) -> Result<AddressGuard, Refused> {
        self.clients.try_acquire(client).map_err(|_| Refused::Address)
    }

    /// Open connections (for tests and logs).
    pub fn open(&self) -> usize {
        (self.max_connections as usize).saturating_sub(self.total.available_permits())
    }
}

/// A connection admitted at accept: its place among all connections, and
/// among its peer's unfinished handshakes until [`Admission::handshake_done`].
#[derive(Debug)]
pub struct Admission {
    total: OwnedSemaphorePermit,
    /// Held (not read) until the handshake is over.
    _handshake: Option<AddressGuard>,
}

impl Admission {
    /// The handshake is over: the connection keeps only its place among all.
    pub fn handshake_done(self) -> OwnedSemaphorePermit {
        self.total
    }
}

/// Connections per address, keyed by IPv4 address or IPv6 /64 (one host
/// usually holds a whole /64).
#[derive(Debug)]
struct AddressCounts {
    max: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl AddressCounts {
    fn new(max: u32) -> Self {
        Self { max, counts: Mutex::new(HashMap::new()) }
    }

    fn try_acquire(self: &Arc<Self>, addr: IpAddr) -> Result<AddressGuard, Refused> {
        let key = address_key(addr);
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return Err(Refused::Handshakes);
        }
        *count += 1;
        Ok(AddressGuard { counts: self.clone(), key })
    }

    fn release(&self, key: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

fn address_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// One connection's place in a per-address count.
#[derive(Debug)]
pub struct AddressGuard {
    counts: Arc<AddressCounts>,
    key: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        self.counts.release(self.key);
    }
}

/// Requests in flight on one connection and when the last one ended: what
/// the idle timer reads. Updated by the request layer with atomics only.
#[derive(Debug)]
pub struct ConnectionActivity {
    opened: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `opened` at which the last request ended.
    last_done_ms: AtomicU64,
}

impl ConnectionActivity {
    /// A connection opened now, with nothing in flight.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { opened: Instant::now(), in_flight: AtomicU32::new(0), last_done_ms: AtomicU64::new(0) })
    }

    /// A request started; it counts until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// Since when nothing has been in flight; `None` while something is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire)))
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnectionActivity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Fires once a connection has had nothing in flight for its idle timeout.
#[derive(Debug)]
pub struct IdleTimer {
    activity: Arc<ConnectionActivity>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    /// A timer over `activity`.
    pub fn new(activity: Arc<ConnectionActivity>, timeout: Duration) -> Self {
        let sleep = Box::pin(tokio::time::sleep(timeout));
        Self { activity, timeout, sleep }
    }

    /// Ready once the connection is idle past its timeout; otherwise
    /// pending, with the waker registered for the next check.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            let next = match self.activity.idle_since() {
                Some(since) if now >= since + self.timeout => return Poll::Ready(()),
                Some(since) => since + self.timeout,
                None => now + self.timeout,
            };
            self.sleep.as_mut().reset(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn limits(total: u32, per_address: u32, handshakes: u32) -> ListenerLimits {
        ListenerLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            max_handshakes_per_address: handshakes,
            ..ListenerLimits::default()
        }
    }

    #[test]
    fn caps_total_handshakes_and_clients_and_gives_slots_back() {
        let limiter = ConnectionLimiter::new(&limits(3, 1, 2));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = limiter.admit(a, false).unwrap();
        let second = limiter.admit(a, false).unwrap();
        assert_eq!(limiter.admit(a, false).unwrap_err(), Refused::Handshakes);
        // A trusted proxy's connections are not handshakes of its own.
        let proxied = limiter.admit(a, true).unwrap();
        assert_eq!(limiter.admit(b, false).unwrap_err(), Refused::Total);
        drop(proxied);
        let other = limiter.admit(b, false).unwrap();
        assert_eq!(limiter.open(), 3);

        let _permit = first.handshake_done();
        let client = limiter.admit_client(a).unwrap();
        assert_eq!(limiter.admit_client(a).unwrap_err(), Refused::Address);
        assert!(limiter.admit_client(b).is_ok());
        drop(client);
        assert!(limiter.admit_client(a).is_ok());
        drop((second, other));
        assert_eq!(limiter.open(), 1);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let limiter = ConnectionLimiter::new(&limits(10, 1, 10));
        let _one = limiter.admit_client("2001:db8::1".parse().unwrap()).unwrap();
        assert!(limiter.admit_client("2001:db8::2".parse().unwrap()).is_err());
        assert!(limiter.admit_client("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = limiter.admit_client("192.0.2.1".parse().unwrap()).unwrap();
        let mapped = IpAddr::V6(Ipv6Addr::from(u128::from(0xffff_c000_0201_u64)));
        assert!(limiter.admit_client(mapped).is_err());
    }

    #[tokio::test]
    async fn idle_timer_waits_for_requests_to_end() {
        let poll = |timer: &mut IdleTimer| {
            let waker = std::task::Waker::noop();
            timer.poll_expired(&mut Context::from_waker(waker)).is_ready()
        };
        let activity = ConnectionActivity::new();
        let mut timer = IdleTimer::new(activity.clone(), Duration::from_millis(500));
        let request = activity.start();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!poll(&mut timer), "expired with a request in flight");
        drop(request);
        assert!(!poll(&mut timer), "expired as the request ended");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !poll(&mut timer) {
            assert!(Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(activity.opened.elapsed() >= Duration::from_millis(1200));
    }
}
