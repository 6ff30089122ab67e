//! Prometheus metrics of a daemon (DESIGN §9): one registry per daemon
//! instance ([`Metrics`]), a tower layer that counts every RPC by method and
//! final gRPC status and times it ([`RpcMetricsLayer`]), connection counters
//! fed by the accept loop ([`ListenerMetrics`]), values read at scrape time
//! from the daemon's own state ([`Metrics::gauge_fn`]), and the opt-in,
//! plain-HTTP listener that serves `GET /metrics` in the Prometheus text
//! format ([`serve`]), configured by a `[metrics]` table ([`MetricsSection`]).
//!
//! Labels are bounded by construction: a listener's name, an RPC's service
//! and method (only methods of SKM's, health's and reflection's protos; any
//! other path counts as `unknown`), a status code name, a refusal reason.
//! No key id, keystore name, address or certificate ever becomes a label,
//! and no value carries key material.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;

use crate::config::ConfigError;
use crate::shutdown::Shutdown;

/// Latency buckets of RPCs and of audit syncs, seconds: 50 µs … ~6.5 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 18)
}

/// A histogram with [`latency_buckets`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The `[metrics]` table as written: off unless `listen` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of the plain-HTTP metrics listener (`GET /metrics`).
    pub listen: Option<SocketAddr>,
    /// Allows a `listen` address that is not loopback (the listener has no
    /// TLS and no authentication: put it on a management network only).
    pub allow_non_loopback: bool,
}

impl MetricsSection {
    /// Validates the table found at `section`: the address to listen on,
    /// or `None` when metrics are off. A non-loopback address (also the
    /// unspecified `0.0.0.0` / `::`) is refused unless explicitly allowed.
    pub fn validate(&self, section: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(addr) = self.listen else {
            return Ok(None);
        };
        if !addr.ip().to_canonical().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::invalid(
                &format!("{section}.listen"),
                format!(
                    "is {addr}; must be a loopback address (127.0.0.0/8, ::1) unless \
                     {section}.allow_non_loopback = true (the listener has no TLS)"
                ),
            ));
        }
        Ok(Some(addr))
    }
}

/// The metrics of one daemon instance. Cheap to clone; every clone feeds
/// the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    /// Scrape-time families by name, so that several sources (e.g. two
    /// listeners) add series to one family.
    observed: Mutex<HashMap<&'static str, ObservedFamily>>,
    rpc: RpcFamilies,
    connections: ConnectionFamilies,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    port: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    port: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    port: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    port: &'static str,
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct RpcFamilies {
    handled: Family<RpcLabels, Counter>,
    latency: HistogramFamily<MethodLabels>,
    shed: Family<MethodLabels, Counter>,
}

struct ConnectionFamilies {
    accepted: Family<PortLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
}

impl Metrics {
    /// An empty registry with the RPC and connection families every
    /// daemon has.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc = RpcFamilies {
            handled: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            shed: Family::default(),
        };
        registry.register(
            "grpc_server_handled",
            "RPCs answered, by port, service, method and final gRPC status code",
            rpc.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its final status, by port, service and method",
            rpc.latency.clone(),
        );
        registry.register(
            "skm_requests_shed",
            "Requests refused with RESOURCE_EXHAUSTED by the load shedder (max_in_flight reached)",
            rpc.shed.clone(),
        );
        let connections = ConnectionFamilies { accepted: Family::default(), refused: Family::default() };
        registry.register(
            "skm_connections_accepted",
            "TCP connections accepted and admitted by the connection limits",
            connections.accepted.clone(),
        );
        registry.register(
            "skm_connections_refused",
            "TCP connections closed at once because a connection limit was reached, by limit",
            connections.refused.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                observed: Mutex::new(HashMap::new()),
                rpc,
                connections,
            }),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a gauge the daemon sets itself.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.registry().register(name, help, gauge.clone());
        gauge
    }

    /// Registers a histogram (e.g. one a component records into).
    pub fn register_histogram(&self, name: &str, help: &str, histogram: Histogram) {
        self.registry().register(name, help, histogram);
    }

    /// A gauge read at each scrape from `read`, with `labels` (constant,
    /// bounded). Calls with the same `name` add series to one family.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &str,
        labels: &[(&'static str, &'static str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.observed(name, help, MetricType::Gauge, labels, Box::new(read));
    }

    /// A counter read at each scrape from `read` (a monotonic count the
    /// daemon keeps anyway, e.g. in an atomic). `name` without `_total`.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &str,
        labels: &[(&'static str, &'static str)],
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        self.observed(name, help, MetricType::Counter, labels, Box::new(move || read() as f64));
    }

    fn observed(
        &self,
        name: &'static str,
        help: &str,
        kind: MetricType,
        labels: &[(&'static str, &'static str)],
        read: Box<dyn Fn() -> f64 + Send + Sync>,
    ) {
        let mut observed = self.inner.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let family = observed.entry(name).or_insert_with(|| {
            let family = ObservedFamily { kind, series: Arc::default() };
            self.registry().register(name, help, family.clone());
            family
        });
        family.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((labels.to_vec(), read));
    }

    /// The metrics of one listener named `port` (e.g. `user`): the accept
    /// loop and the RPC layer record into them.
    pub fn listener(&self, port: &'static str) -> ListenerMetrics {
        ListenerMetrics { port, metrics: self.clone() }
    }

    /// The exposition in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry()) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

type Read = Box<dyn Fn() -> f64 + Send + Sync>;

/// A family whose values are read at scrape time.
#[derive(Clone)]
struct ObservedFamily {
    kind: MetricType,
    #[allow(clippy::type_complexity, reason = "labels and a reader per series")]
    series: Arc<Mutex<Vec<(Vec<(&'static str, &'static str)>, Read)>>>,
}

impl std::fmt::Debug for ObservedFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedFamily").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl EncodeMetric for ObservedFamily {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (labels, read) in series.iter() {
            let value = read();
            let mut metric = encoder.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "read from a u64")]
                    let count = value as u64;
                    metric.encode_counter::<NoLabelSet, u64, f64>(&count, None)?;
                }
                _ => metric.encode_gauge(&value)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// What one listener records: connections (by the accept loop) and RPCs
/// (by [`RpcMetricsLayer`]).
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    port: &'static str,
    metrics: Metrics,
}

impl ListenerMetrics {
    /// A connection was admitted.
    pub fn accepted(&self) {
        self.metrics.inner.connections.accepted.get_or_create(&PortLabels { port: self.port }).inc();
    }

    /// A connection was refused at `limit` (the limit's config field name).
    pub fn refused(&self, limit: &'static str) {
        self.metrics.inner.connections.refused.get_or_create(&RefusedLabels { port: self.port, reason: limit }).inc();
    }

    /// Open connections of this listener, read at scrape time.
    pub fn open_connections(&self, read: impl Fn() -> usize + Send + Sync + 'static) {
        #[allow(clippy::cast_precision_loss, reason = "connection counts")]
        self.metrics.gauge_fn(
            "skm_connections_open",
            "Connections open on the listener, handshaking ones included",
            &[("port", self.port)],
            move || read() as f64,
        );
    }

    /// A request of an HTTP API ([`crate::http`]) finished: counted like an
    /// RPC, under service `rest` and the API's operation name.
    pub fn request_done(&self, operation: &'static str, code: &'static str, elapsed: Duration, shed: bool) {
        self.rpc_done(("rest", operation), code, elapsed, shed);
    }

    fn rpc_done(&self, method: (&'static str, &'static str), code: &'static str, elapsed: Duration, shed: bool) {
        let rpc = &self.metrics.inner.rpc;
        let (grpc_service, grpc_method) = method;
        rpc.handled.get_or_create(&RpcLabels { port: self.port, grpc_service, grpc_method, grpc_code: code }).inc();
        let labels = MethodLabels { port: self.port, grpc_service, grpc_method };
        rpc.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if shed {
            rpc.shed.get_or_create(&labels).inc();
        }
    }
}

/// Marker the load shedder puts in the extensions of a response it
/// refused, so the RPC layer counts it as shed (not merely as a
/// RESOURCE_EXHAUSTED from anywhere).
#[derive(Clone, Copy, Debug)]
pub struct Shed;

/// Every method of the protos SKM serves, by gRPC path, as (service,
/// method) labels; built once per process (a bounded set).
fn known_methods() -> &'static HashMap<String, (&'static str, &'static str)> {
    static KNOWN: OnceLock<HashMap<String, (&'static str, &'static str)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        use prost::Message as _;
        let mut known = HashMap::new();
        for set in [
            skm_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = service.name.unwrap_or_default();
                    let full: &'static str =
                        Box::leak(if package.is_empty() { name } else { format!("{package}.{name}") }.into_boxed_str());
                    for method in service.method {
                        let method: &'static str = Box::leak(method.name.unwrap_or_default().into_boxed_str());
                        known.insert(format!("/{full}/{method}"), (full, method));
                    }
                }
            }
        }
        known
    })
}

/// The (service, method) labels of a request path; `unknown` for a path
/// that is not a method of SKM's protos (so a client can't make labels).
fn method_labels(path: &str) -> (&'static str, &'static str) {
    known_methods().get(path).copied().unwrap_or(("unknown", "unknown"))
}

/// The name of a gRPC status code, as in the gRPC spec (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The gRPC status name in `headers` (response headers or trailers).
pub(crate) fn status_of(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok()?.parse::<i32>().ok()?;
    Some(code_name(tonic::Code::from_i32(code)))
}

/// The outermost layer of a listener: counts each RPC by its final gRPC
/// status (from the response headers of a trailers-only answer — as the
/// load shedder, the request limits and the allow-list give — or from the
/// trailers at the end of the body) and records its latency. A body
/// dropped before its trailers (the client went away) counts as
/// CANCELLED. Without metrics it only passes requests through.
#[derive(Clone, Debug, Default)]
pub struct RpcMetricsLayer {
    listener: Option<ListenerMetrics>,
}

impl RpcMetricsLayer {
    /// The layer recording into `listener` (none: pass-through).
    pub fn new(listener: Option<ListenerMetrics>) -> Self {
        Self { listener }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner, listener: self.listener.clone() }
    }
}

/// The service made by [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    listener: Option<ListenerMetrics>,
}

impl<S, B> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = RpcMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let record = self.listener.clone().map(|listener| Record { listener, method: method_labels(req.uri().path()) });
        RpcMetricsFuture { inner: self.inner.call(req), record, started: Instant::now() }
    }
}

/// Where and as what an RPC is recorded.
#[derive(Debug)]
struct Record {
    listener: ListenerMetrics,
    method: (&'static str, &'static str),
}

pin_project! {
    /// The response future of [`RpcMetrics`].
    pub struct RpcMetricsFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
        started: Instant,
    }
}

impl<F, E> Future for RpcMetricsFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(record) = this.record.take() else {
            return Poll::Ready(result);
        };
        let started = *this.started;
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(code) = status_of(response.headers()) {
                    let shed = response.extensions().get::<Shed>().is_some();
                    record.listener.rpc_done(record.method, code, started.elapsed(), shed);
                    Ok(response)
                } else {
                    Ok(response.map(|body| {
                        tonic::body::Body::new(RecordedBody { inner: body, record: Some(record), started })
                    }))
                }
            }
            Err(e) => {
                record.listener.rpc_done(record.method, "UNKNOWN", started.elapsed(), false);
                Err(e)
            }
        })
    }
}

pin_project! {
    /// A response body whose trailers carry the RPC's status.
    struct RecordedBody<B> {
        #[pin]
        inner: B,
        record: Option<Record>,
        started: Instant,
    }

    impl<B> PinnedDrop for RecordedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                record.listener.rpc_done(record.method, "CANCELLED", this.started.elapsed(), false);
            }
        }
    }
}

impl<B> Body for RecordedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| status_of(t).unwrap_or("UNKNOWN")),
            Some(Err(_)) | None => Some("UNKNOWN"),
        };
        // Only a final frame takes the record (data frames leave it).
        if let Some(code) = code
            && let Some(record) = this.record.take()
        {
            record.listener.rpc_done(record.method, code, this.started.elapsed(), false);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections the metrics listener serves at once; more wait in the
/// kernel's backlog.
const MAX_SCRAPERS: usize = 8;
/// A scraper must send its request headers within this.
const SCRAPE_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A scrape connection is closed after this, whatever it is doing.
const SCRAPE_CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// Binds the metrics listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::serve::BindError> {
    crate::serve::bind(addr).await
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until shutdown
/// (anything else: 404 or 405). At most [`MAX_SCRAPERS`] connections at
/// once, each bounded in time.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: Shutdown) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPERS));
    let mut backoff = crate::serve::AcceptBackoff::default();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, _) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        backoff.succeeded();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &metrics)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SCRAPE_HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(SCRAPE_CONNECTION_LIMIT, connection).await;
            drop(slot);
        });
    }
}

fn respond<B>(req: &http::Request<B>, metrics: &Metrics) -> http::Response<http_body_util::Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Bytes::from(metrics.encode()),
        ),
        (_, "/metrics") => (http::StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::from_static(b"GET only\n")),
        _ => (http::StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"see /metrics\n")),
    };
    let mut response = http::Response::new(http_body_util::Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<Option<SocketAddr>, String> {
        let section: MetricsSection = toml::from_str(text).map_err(|e| e.to_string())?;
        section.validate("metrics").map_err(|e| e.to_string())
    }

    #[test]
    fn metrics_table_is_off_by_default_and_loopback_unless_allowed() {
        assert_eq!(section("").unwrap(), None);
        assert_eq!(section("listen = \"127.0.0.1:9100\"").unwrap(), Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(section("listen = \"[::1]:9100\"").unwrap(), Some("[::1]:9100".parse().unwrap()));
        for addr in ["0.0.0.0:9100", "10.0.0.5:9100", "[::]:9100"] {
            let err = section(&format!("listen = \"{addr}\"")).unwrap_err();
            assert!(err.contains("metrics.listen") && err.contains("loopback"), "{err}");
            assert!(err.contains("metrics.allow_non_loopback"), "{err}");
            assert!(!err.contains('\n'), "{err}");
            let allowed = section(&format!("listen = \"{addr}\"\nallow_non_loopback = true")).unwrap();
            assert_eq!(allowed, Some(addr.parse().unwrap()));
        }
        let err = section("listen = \"localhost\"").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = section("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn method_labels_are_bounded_to_known_methods() {
        assert_eq!(method_labels("/skm.api.v1.KeyService/Encrypt"), ("skm.api.v1.KeyService", "Encrypt"));
        assert_eq!(method_labels("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(method_labels("/skm.api.v1.KeyService/Nope"), ("unknown", "unknown"));
        assert_eq!(method_labels("/00112233445566778899aabbccddeeff"), ("unknown", "unknown"));
    }

    #[test]
    fn scrape_time_values_share_one_family() {
        let metrics = Metrics::new();
        metrics.listener("user").open_connections(|| 3);
        metrics.listener("admin").open_connections(|| 1);
        metrics.counter_fn("skm_test_things", "things", &[], || 7);
        metrics.listener("user").refused("max_connections");
        let text = metrics.encode();
        assert_eq!(text.matches("# TYPE skm_connections_open gauge").count(), 1, "{text}");
        assert!(text.contains("skm_connections_open{port=\"user\"} 3"), "{text}");
        assert!(text.contains("skm_connections_open{port=\"admin\"} 1"), "{text}");
        assert!(text.contains("skm_test_things_total 7"), "{text}");
        assert!(text.contains("skm_connections_refused_total{port=\"user\",reason=\"max_connections\"} 1"), "{text}");
    }
}
