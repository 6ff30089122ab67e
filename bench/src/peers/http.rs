//! A small HTTP/1.1 client for the peers (hyper, already in the graph
//! through tonic): keep-alive connections, pooled, one per request in
//! flight. The measured calls send [`Prepared`] requests, serialised once
//! at set-up, and check only the answer's status (2xx, as `wrk` counts
//! it), reading and dropping its body: so the load generator does as
//! little per call as it can, and a peer's figures are the peer's, not
//! our JSON code's. What each kind of answer holds is checked once, at
//! set-up.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A request made once and sent as is on every call (cloning it copies no
/// byte of its body).
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// The status and the start of a body, as an error.
fn refused(status: StatusCode, body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    format!("HTTP {status}: {text}")
}

/// A client of one server on 127.0.0.1.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// A client of `http://127.0.0.1:port`.
    pub(crate) fn new(port: u16) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A request to send many times: `method path` with `headers` and `body`.
    pub(crate) fn prepare(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Prepared, String> {
        let uri: Uri = format!("{}{path}", self.base).parse().map_err(|e| format!("{path}: {e}"))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
            map.insert(name, HeaderValue::from_str(value).map_err(|e| format!("{value}: {e}"))?);
        }
        Ok(Prepared { method, uri, headers: map, body: body.into() })
    }

    /// Sends `prepared` with `body` instead of its own.
    async fn response(
        &self,
        prepared: &Prepared,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = prepared.method.clone();
        *request.uri_mut() = prepared.uri.clone();
        *request.headers_mut() = prepared.headers.clone();
        self.client.request(request).await.map_err(|e| format!("{e:?}"))
    }

    /// One measured call: `prepared` as is (or with `body` instead of its
    /// own); Ok for a 2xx answer, whose body is read and dropped.
    pub(crate) async fn call(&self, prepared: &Prepared, body: Option<Bytes>) -> Result<(), String> {
        let response = self.response(prepared, body.unwrap_or_else(|| prepared.body.clone())).await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            return Err(refused(status, &bytes));
        }
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `prepared` as is; the JSON answer of a 2xx (to check at set-up what
    /// the measured calls will get).
    pub(crate) async fn json_answer(&self, prepared: &Prepared) -> Result<Value, String> {
        let response = self.response(prepared, prepared.body.clone()).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON answer: {e}"))
    }

    /// One request; the status and the body.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut builder = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }

    /// POSTs JSON; the JSON answer of a 2xx, else the status and the start
    /// of the body as the error.
    pub(crate) async fn json(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Result<Value, String> {
        let (status, bytes) = self.send(Method::POST, path, headers, body.to_string().into_bytes()).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON answer: {e}"))
    }
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
