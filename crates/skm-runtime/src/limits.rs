//! What one client may hold on a listener, so that no client (or single
//! address) can exhaust the file descriptors, memory or workers a daemon
//! needs to serve everybody else (DESIGN §7): connections in all and per
//! client address, handshake and idle timeouts, HTTP/2 keep-alive and
//! streams, request sizes by RPC, a cap on request time (client deadlines
//! honoured), and load shedding beyond a bounded amount of work.
//!
//! Configured per listener as a TOML table ([`LimitsSection`], every field
//! optional), validated at start into [`ListenerLimits`]; enforced by the
//! accept loop ([`connections`]) and a tower layer in front of every
//! handler ([`requests`]).

pub mod connections;
pub mod requests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;

/// gRPC services that are never shed nor counted against `max_in_flight`:
/// a load balancer or operator must see health while the port sheds.
pub const UNSHED_SERVICES: &[&str] = &["/grpc.health.v1.Health/"];

/// A listener's `[…limits]` table as written; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Open connections on the listener, handshaking ones included.
    pub max_connections: u32,
    /// Open connections from one client address (the PROXY header's
    /// source behind a trusted load balancer; IPv6 by /64).
    pub max_connections_per_address: u32,
    /// Connections from one TCP peer that have not finished their TLS
    /// handshake (trusted load balancers are exempt: they are counted by
    /// the client addresses they announce).
    pub max_handshakes_per_address: u32,
    /// PROXY header and TLS handshake must be done within this.
    pub handshake_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_secs: u64,
    /// HTTP/2 PING sent after this much silence from the client.
    pub keepalive_interval_secs: u64,
    /// The connection is closed when a PING is not answered within this.
    pub keepalive_timeout_secs: u64,
    /// Concurrent HTTP/2 streams (requests) on one connection.
    pub max_concurrent_streams: u32,
    /// Requests served at once on the listener; beyond it a request is
    /// refused at once with RESOURCE_EXHAUSTED.
    pub max_in_flight: u32,
    /// Request body limit for RPCs the daemon has no specific limit for.
    pub max_request_bytes: u32,
    /// Longest time a handler may take (a shorter client deadline wins).
    pub max_request_secs: u64,
    /// Retry hint sent with a shed request (`grpc-retry-pushback-ms`).
    pub retry_pushback_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_address: 256,
            max_handshakes_per_address: 64,
            handshake_timeout_ms: 10_000,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 60,
            keepalive_timeout_secs: 20,
            max_concurrent_streams: 100,
            max_in_flight: 1024,
            max_request_bytes: 64 * 1024,
            max_request_secs: 60,
            retry_pushback_ms: 100,
        }
    }
}

/// Largest request body any table entry or default may allow (tonic's own
/// decoding limit).
pub const MAX_REQUEST_BYTES_CEILING: u32 = 4 * 1024 * 1024;

impl LimitsSection {
    /// Validates the table found at `section` (e.g. `user_limits`); the
    /// error names the field and the allowed range.
    pub fn validate(&self, section: &str) -> Result<ListenerLimits, ConfigError> {
        let check = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(&format!("{section}.{field}"), format!("is {value}; must be {min}..={max}")))
            }
        };
        check("max_connections", self.max_connections.into(), 1, 1_000_000)?;
        check("max_connections_per_address", self.max_connections_per_address.into(), 1, self.max_connections.into())?;
        check("max_handshakes_per_address", self.max_handshakes_per_address.into(), 1, self.max_connections.into())?;
        check("handshake_timeout_ms", self.handshake_timeout_ms, 100, 60_000)?;
        check("idle_timeout_secs", self.idle_timeout_secs, 1, 86_400)?;
        check("keepalive_interval_secs", self.keepalive_interval_secs, 1, 3_600)?;
        check("keepalive_timeout_secs", self.keepalive_timeout_secs, 1, 600)?;
        check("max_concurrent_streams", self.max_concurrent_streams.into(), 1, 10_000)?;
        check("max_in_flight", self.max_in_flight.into(), 1, 1_000_000)?;
        check("max_request_bytes", self.max_request_bytes.into(), 1024, MAX_REQUEST_BYTES_CEILING.into())?;
        check("max_request_secs", self.max_request_secs, 1, 3_600)?;
        check("retry_pushback_ms", self.retry_pushback_ms, 1, 60_000)?;
        Ok(self.build())
    }

    /// The limits as they are written, unchecked.
    fn build(&self) -> ListenerLimits {
        ListenerLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_handshakes_per_address: self.max_handshakes_per_address,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_secs),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_secs),
            max_concurrent_streams: self.max_concurrent_streams,
            max_in_flight: self.max_in_flight,
            request_sizes: RequestSizes::new(self.max_request_bytes),
            max_request_time: Duration::from_secs(self.max_request_secs),
            retry_pushback: Duration::from_millis(self.retry_pushback_ms),
        }
    }
}

/// Validated limits of one listener. Fields are public so tests (and
/// daemons) can tighten them after loading.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// See [`LimitsSection::max_connections`].
    pub max_connections: u32,
    /// See [`LimitsSection::max_connections_per_address`].
    pub max_connections_per_address: u32,
    /// See [`LimitsSection::max_handshakes_per_address`].
    pub max_handshakes_per_address: u32,
    /// See [`LimitsSection::handshake_timeout_ms`].
    pub handshake_timeout: Duration,
    /// See [`LimitsSection::idle_timeout_secs`].
    pub idle_timeout: Duration,
    /// See [`LimitsSection::keepalive_interval_secs`].
    pub keepalive_interval: Duration,
    /// See [`LimitsSection::keepalive_timeout_secs`].
    pub keepalive_timeout: Duration,
    /// See [`LimitsSection::max_concurrent_streams`].
    pub max_concurrent_streams: u32,
    /// See [`LimitsSection::max_in_flight`].
    pub max_in_flight: u32,
    /// Request body limits by gRPC path.
    pub request_sizes: RequestSizes,
    /// See [`LimitsSection::max_request_secs`].
    pub max_request_time: Duration,
    /// See [`LimitsSection::retry_pushback_ms`].
    pub retry_pushback: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        LimitsSection::default().build()
    }
}

impl ListenerLimits {
    /// Sets the body limit of the RPCs at `paths` (full gRPC paths,
    /// `/package.Service/Method`), capped at [`MAX_REQUEST_BYTES_CEILING`].
    pub fn with_request_size(mut self, paths: &[&'static str], bytes: usize) -> Self {
        let bytes = bytes.min(MAX_REQUEST_BYTES_CEILING as usize);
        let table = Arc::make_mut(&mut self.request_sizes.by_path);
        for path in paths {
            table.insert(path, bytes);
        }
        self
    }
}

/// Request body limits: one per listed gRPC path, a default for the rest.
#[derive(Clone, Debug)]
pub struct RequestSizes {
    default: usize,
    by_path: Arc<HashMap<&'static str, usize>>,
}

impl RequestSizes {
    /// Every path limited to `default` bytes.
    pub fn new(default: u32) -> Self {
        Self { default: default as usize, by_path: Arc::new(HashMap::new()) }
    }

    /// The limit for `path`.
    pub fn limit(&self, path: &str) -> usize {
        self.lookup(path).0
    }

    /// The limit for `path`, and the path as listed when it has its own.
    pub fn lookup(&self, path: &str) -> (usize, Option<&'static str>) {
        match self.by_path.get_key_value(path) {
            Some((listed, bytes)) => (*bytes, Some(*listed)),
            None => (self.default, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ListenerLimits, String> {
        let section: LimitsSection = toml::from_str(text).map_err(|e| e.to_string())?;
        section.validate("user_limits").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let limits = parse("").unwrap();
        assert_eq!(limits.max_connections, 10_000);
        assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(limits.request_sizes.limit("/any/Path"), 64 * 1024);
        assert_eq!(ListenerLimits::default().max_in_flight, 1024);
    }

    #[test]
    fn out_of_range_names_field_and_range() {
        for (text, field, range) in [
            ("max_connections = 0", "user_limits.max_connections", "1..=1000000"),
            ("handshake_timeout_ms = 5", "user_limits.handshake_timeout_ms", "100..=60000"),
            ("idle_timeout_secs = 0", "user_limits.idle_timeout_secs", "1..=86400"),
            ("max_concurrent_streams = 0", "user_limits.max_concurrent_streams", "1..=10000"),
            ("max_in_flight = 0", "user_limits.max_in_flight", "1..=1000000"),
            ("max_request_bytes = 10", "user_limits.max_request_bytes", "1024..=4194304"),
            ("max_request_secs = 0", "user_limits.max_request_secs", "1..=3600"),
            ("retry_pushback_ms = 0", "user_limits.retry_pushback_ms", "1..=60000"),
            ("keepalive_timeout_secs = 0", "user_limits.keepalive_timeout_secs", "1..=600"),
            (
                "max_connections = 10\nmax_connections_per_address = 11",
                "user_limits.max_connections_per_address",
                "1..=10",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(field) && err.contains(range), "{text}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = parse("max_conections = 5").unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn per_path_sizes_override_the_default() {
        let limits = ListenerLimits::default()
            .with_request_size(&["/a.B/Big"], 1 << 20)
            .with_request_size(&["/a.B/Huge"], usize::MAX);
        assert_eq!(limits.request_sizes.limit("/a.B/Big"), 1 << 20);
        assert_eq!(limits.request_sizes.limit("/a.B/Huge"), MAX_REQUEST_BYTES_CEILING as usize);
        assert_eq!(limits.request_sizes.limit("/a.B/Small"), 64 * 1024);
    }
}
