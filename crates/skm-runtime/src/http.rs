//! Serving plain HTTP APIs (kms-api's REST listener) on the same accept
//! loop as gRPC ([`crate::serve::tls_incoming_with`]: TLS 1.3, PROXY v2
//! from trusted balancers, connection limits, handshake and idle
//! timeouts), HTTP/1.1 or HTTP/2 by ALPN, with the listener's request
//! limits: at most `max_in_flight` requests at once (beyond: refused at
//! once, never queued), each given at most `max_request_secs`. What a
//! refusal looks like is the API's own ([`HttpApi::refusal`]), so each
//! surface answers in its own error format.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use crate::limits::ListenerLimits;
use crate::peer::PeerInfo;
use crate::serve::{ClientTrust, ListenOptions, tls_incoming_with};
use crate::shutdown::Shutdown;

/// A response of an HTTP API: bodies are small and complete.
pub type HttpResponse = http::Response<Full<Bytes>>;

/// Why a request was answered without reaching the API's handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_in_flight` requests were being served: retry after the hint.
    Shed {
        /// The listener's `max_in_flight`.
        max_in_flight: u32,
        /// The listener's `retry_pushback_ms`.
        retry_after: Duration,
    },
    /// The handler took longer than the listener allows.
    Timeout(Duration),
}

/// The outcome a handler names for its response (a gRPC code name such as
/// `"NOT_FOUND"`), recorded in the listener's request metrics; a response
/// without one counts by its HTTP status class.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The operation, a bounded set of names (metrics labels).
    pub operation: &'static str,
    /// The gRPC code name of the result.
    pub code: &'static str,
}

/// An HTTP API served by [`serve_http`].
pub trait HttpApi: Send + Sync + 'static {
    /// Answers one request; `peer` is what the accept loop knows of the
    /// client. The body is not read yet ([`read_body`] reads it within a
    /// limit).
    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: PeerInfo,
    ) -> impl Future<Output = HttpResponse> + Send;

    /// The answer to a request refused before (or taken from) its handler.
    fn refusal(&self, path: &str, refusal: Refusal) -> HttpResponse;

    /// Requests at `path` are never shed nor counted against
    /// `max_in_flight` (a load balancer's health check).
    fn unshed(&self, path: &str) -> bool;
}

/// The server config of an HTTP listener: `base` (TLS 1.3, its client
/// certificate rules) offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn http_tls(base: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = base.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It is longer than the limit. `drained`: the rest was read and
    /// dropped, so the answer reaches the client and the connection can
    /// be reused; otherwise the connection must close after the answer.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// Whether the whole body was read.
        drained: bool,
    },
    /// The connection failed while it was read.
    #[error("the request body could not be read")]
    Failed,
}

/// The most of a refused body read (and dropped) so that the client, still
/// sending, gets the answer rather than a reset connection.
pub const DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// The longest time spent reading a refused body.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads a whole request body of at most `limit` bytes. A longer one is
/// refused; its rest is read and dropped, up to [`DRAIN_BYTES`] within
/// [`DRAIN_TIME`] (a client that sent its body unasked then reads the
/// refusal instead of a reset).
pub async fn read_body(mut body: hyper::body::Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Failed)?;
        let Ok(data) = frame.into_data() else { continue };
        if collected.len() + data.len() > limit {
            let drained = drain(body, DRAIN_BYTES).await;
            return Err(BodyError::TooLarge { limit, drained });
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

/// Reads and drops what is left of a body, at most `max` bytes within
/// [`DRAIN_TIME`]; whether it came to its end.
pub async fn drain(mut body: hyper::body::Incoming, max: usize) -> bool {
    let reading = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > max {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, reading).await.unwrap_or(false)
}

/// Serves `api` on `listener` until shutdown; connections then finish the
/// requests they have in flight (for at most `max_request_secs`) before it
/// returns.
pub async fn serve_http<A: HttpApi>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    api: Arc<A>,
    shutdown: Shutdown,
    options: ListenOptions,
) {
    let limits = options.limits.clone();
    let metrics = options.metrics.clone();
    let shared = Arc::new(Shared {
        api,
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
        limits: limits.clone(),
        metrics,
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.handshake_timeout).max_headers(64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    let mut incoming = tls_incoming_with(listener, tls, trust, shutdown.clone(), options);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let connection = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(connection)) => connection,
                Some(Err(_)) => continue,
                None => break,
            },
            // Reaps finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let peer = connection.peer().clone();
        let shared = shared.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(shared.serve(request, peer).await) }
            });
            let served = builder.serve_connection(TokioIo::new(connection), service);
            tokio::pin!(served);
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = shutdown.wait() => {
                    served.as_mut().graceful_shutdown();
                    let _ = served.await;
                }
            }
        });
    }
    // Shutdown: requests in flight finish (each within the request time),
    // as tonic lets gRPC calls finish.
    let draining = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.max_request_time, draining).await.is_err() {
        tracing::warn!("HTTP connections still open after the request time; closing them");
    }
}

struct Shared<A> {
    api: Arc<A>,
    in_flight: Arc<Semaphore>,
    limits: ListenerLimits,
    metrics: Option<crate::metrics::ListenerMetrics>,
}

impl<A: HttpApi> Shared<A> {
    async fn serve(&self, request: http::Request<hyper::body::Incoming>, peer: PeerInfo) -> HttpResponse {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let _active = peer.activity.as_ref().map(|a| a.start());
        let permit = if self.api.unshed(&path) {
            None
        } else {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::debug!(path, "shed: max_in_flight reached");
                    let refusal = Refusal::Shed {
                        max_in_flight: self.limits.max_in_flight,
                        retry_after: self.limits.retry_pushback,
                    };
                    let response = self.api.refusal(&path, refusal);
                    self.record(&response, started, true);
                    return response;
                }
            }
        };
        let timeout = self.limits.max_request_time;
        let response = match tokio::time::timeout(timeout, self.api.handle(request, peer)).await {
            Ok(response) => response,
            Err(_) => self.api.refusal(&path, Refusal::Timeout(timeout)),
        };
        drop(permit);
        self.record(&response, started, false);
        response
    }

    fn record(&self, response: &HttpResponse, started: Instant, shed: bool) {
        let Some(metrics) = &self.metrics else { return };
        let (operation, code) = match response.extensions().get::<Outcome>() {
            Some(outcome) => (outcome.operation, outcome.code),
            None if shed => ("unknown", "RESOURCE_EXHAUSTED"),
            None => ("unknown", if response.status().is_success() { "OK" } else { "UNKNOWN" }),
        };
        metrics.request_done(operation, code, started.elapsed(), shed);
    }
}
