//! The tower layer in front of every handler of a listener: load shedding
//! (a semaphore: beyond `max_in_flight` a request is refused at once with
//! RESOURCE_EXHAUSTED and a `grpc-retry-pushback-ms` hint, never queued),
//! request body limits by gRPC path (INVALID_ARGUMENT naming the limit,
//! DESIGN §10), the client's `grpc-timeout` capped by `max_request_time`
//! (the handler is dropped at the deadline; DEADLINE_EXCEEDED), and the
//! per-connection count of requests in flight the idle timer reads.
//!
//! Health ([`super::UNSHED_SERVICES`]) is never shed nor counted against
//! `max_in_flight`, so a load balancer keeps seeing SERVING while the port
//! sheds. Per request
//! the layer costs a table lookup, a semaphore permit and an atomic; it
//! allocates only to refuse.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::Status;

use super::connections::ActiveRequest;
use super::{ListenerLimits, RequestSizes, UNSHED_SERVICES};
use crate::peer::PeerInfo;

/// Metadata key of the retry hint on a shed request (gRPC A6).
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Applies a listener's request limits (see the module doc).
#[derive(Clone, Debug)]
pub struct RequestLimitsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sizes: RequestSizes,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    max_time: Duration,
    pushback_ms: u64,
}

impl RequestLimitsLayer {
    /// The layer for `limits`.
    pub fn new(limits: &ListenerLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                sizes: limits.request_sizes.clone(),
                in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
                max_in_flight: limits.max_in_flight,
                max_time: limits.max_request_time,
                pushback_ms: u64::try_from(limits.retry_pushback.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

impl<S> tower::Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits { inner, shared: self.shared.clone() }
    }
}

/// The service made by [`RequestLimitsLayer`].
#[derive(Clone, Debug)]
pub struct RequestLimits<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> tower::Service<http::Request<B>> for RequestLimits<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = &self.shared;
        let path = req.uri().path();
        let unshed = UNSHED_SERVICES.iter().any(|prefix| path.starts_with(prefix));
        let permit = if unshed {
            None
        } else {
            match shared.in_flight.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::debug!(method = path, "shed: max_in_flight reached");
                    return LimitFuture::refused(shed_status(shared));
                }
            }
        };
        let (limit, named) = shared.sizes.lookup(path);
        let timeout = match grpc_timeout(req.headers()) {
            // Just under the client's deadline, so this fires before
            // tonic's own timer (armed a moment earlier, outside this
            // layer), which would answer CANCELLED instead.
            Some(client) => client.saturating_sub(Duration::from_millis(1)).min(shared.max_time),
            None => shared.max_time,
        };
        let active = req.extensions().get::<PeerInfo>().and_then(|p| p.activity.as_ref()).map(|a| a.start());
        let req = req.map(|body| tonic::body::Body::new(LimitedBody { inner: body, remaining: limit, limit, named }));
        LimitFuture {
            state: State::Running {
                inner: self.inner.call(req),
                deadline: tokio::time::sleep(timeout),
                timeout,
                permit,
                active,
            },
        }
    }
}

fn shed_status(shared: &Shared) -> Status {
    let mut status = Status::resource_exhausted(format!(
        "overloaded: {} requests in flight on this port (max_in_flight); retry after {} ms",
        shared.max_in_flight, shared.pushback_ms
    ));
    if let Ok(value) = shared.pushback_ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_PUSHBACK, value);
    }
    status
}

pin_project! {
    /// The response future of [`RequestLimits`].
    pub struct LimitFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Admitted: the handler, its deadline (and the time it was given,
        // for the message), its place among `max_in_flight` (none for
        // health) and its count on the connection (for the idle timeout).
        Running {
            #[pin]
            inner: F,
            #[pin]
            deadline: Sleep,
            timeout: Duration,
            permit: Option<OwnedSemaphorePermit>,
            active: Option<ActiveRequest>,
        },
        // Refused before the handler ran.
        Refused { status: Option<Status> },
    }
}

impl<F> LimitFuture<F> {
    fn refused(status: Status) -> Self {
        Self { state: State::Refused { status: Some(status) } }
    }
}

impl<F, E> Future for LimitFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running { inner, deadline, timeout, .. } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out);
                }
                std::task::ready!(deadline.poll(cx));
                let status = Status::deadline_exceeded(format!("deadline of {} ms exceeded", timeout.as_millis()));
                Poll::Ready(Ok(status.into_http()))
            }
            StateProj::Refused { status } => {
                let status = status.take().unwrap_or_else(|| Status::internal("polled after completion"));
                let mut response = status.into_http();
                response.extensions_mut().insert(crate::metrics::Shed);
                Poll::Ready(Ok(response))
            }
        }
    }
}

pin_project! {
    /// A request body cut off with INVALID_ARGUMENT past its limit.
    struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: usize,
        limit: usize,
        // The RPC when it has its own limit (for the message).
        named: Option<&'static str>,
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(Status::from_error(e.into())))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            if data.len() > *this.remaining {
                let message = match this.named {
                    Some(rpc) => format!("request too large: {rpc} takes at most {} bytes", this.limit),
                    None => {
                        format!("request too large: this port takes at most {} bytes (max_request_bytes)", this.limit)
                    }
                };
                return Poll::Ready(Some(Err(Status::invalid_argument(message))));
            }
            *this.remaining -= data.len();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-timeout` header: up to 8 digits and a unit (H M S m u n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let header = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(header("2S"), Some(Duration::from_secs(2)));
        assert_eq!(header("150m"), Some(Duration::from_millis(150)));
        assert_eq!(header("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(header("7u"), Some(Duration::from_micros(7)));
        assert_eq!(header("123456789S"), None);
        assert_eq!(header("5x"), None);
        assert_eq!(header("S"), None);
    }
}
