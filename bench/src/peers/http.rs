//! A small HTTP/1.1 client for the peers (hyper, already in the graph
//! through tonic): keep-alive connections, pooled, one per request in
//! flight.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(300).collect();
            return Err(format!("HTTP {status}: {text}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON answer: {e}"))
    }
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
