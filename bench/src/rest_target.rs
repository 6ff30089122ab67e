//! SKM's REST/JSON listener as a benchmark target, on the same stack as
//! the gRPC rows: encrypt and get-secret, over HTTP/2 on TLS 1.3 (as gRPC
//! is), one connection per `--channels`, with the request bodies made once
//! (so the rows measure the server and the protocol, not JSON encoding in
//! the load generator).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::ops::Op;

/// HTTP/2 connections to the REST listener and the prepared requests.
pub(crate) struct RestTarget {
    connections: Vec<SendRequest<Full<Bytes>>>,
    authority: String,
    encrypt_path: String,
    secret_path: String,
    bodies: HashMap<usize, Bytes>,
}

impl RestTarget {
    /// Connects `channels` times to `endpoint` (`host:port`), trusting `ca`,
    /// and prepares encrypt bodies for every encrypt op in `ops`.
    pub(crate) async fn prepare(
        endpoint: &str,
        ca: &Path,
        aes_key: &str,
        secret: &str,
        ops: &[Op],
        channels: usize,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in skm_runtime::tls::certs_from_pem(&std::fs::read(ca)?)? {
            roots.add(cert)?;
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut connections = Vec::new();
        for _ in 0..channels.max(1) {
            let tcp = tokio::net::TcpStream::connect(endpoint).await.with_context(|| format!("connect {endpoint}"))?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let tls = connector.connect(name, tcp).await.context("TLS to the REST listener")?;
            let (send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
            tokio::spawn(connection);
            connections.push(send);
        }
        let mut bodies = HashMap::new();
        for op in ops {
            if let Op::Encrypt(n) = *op {
                let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();
                let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
                bodies.insert(n, Bytes::from(serde_json::json!({ "plaintext": b64 }).to_string()));
            }
        }
        Ok(Self {
            connections,
            authority: endpoint.to_owned(),
            encrypt_path: format!("/v1/keys/{aes_key}/encrypt"),
            secret_path: format!("/v1/secrets/{secret}"),
            bodies,
        })
    }

    /// Whether `op` has a REST row.
    pub(crate) fn supports(op: Op) -> bool {
        matches!(op, Op::Encrypt(_) | Op::GetSecret)
    }

    /// One call of `op` from task `task`; the answer must be a 200 with the
    /// field the call returns.
    pub(crate) async fn call(&self, op: Op, task: usize) -> Result<(), String> {
        let (method, path, body, field) = match op {
            Op::Encrypt(n) => {
                (hyper::Method::POST, &self.encrypt_path, self.bodies.get(&n).cloned().ok_or("no body")?, "ciphertext")
            }
            Op::GetSecret => (hyper::Method::GET, &self.secret_path, Bytes::new(), "value"),
            _ => return Err("not a REST row".into()),
        };
        let mut builder = hyper::Request::builder().method(method).uri(format!("https://{}{path}", self.authority));
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let mut send = self.connections[task % self.connections.len()].clone();
        let response = send.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])));
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if answer.get(field).is_none() {
            return Err(format!("no {field} in the answer"));
        }
        Ok(())
    }
}
