//! Daemon plumbing shared by SKM's three services: configuration loading,
//! mutual TLS with SPIFFE identities, the per-RPC allow-list, gRPC serving
//! with health and reflection, Prometheus metrics, client channels, tracing
//! and graceful shutdown. (Issuing certificates is skm-pki's.)

#![forbid(unsafe_code)]

pub mod authz;
pub mod channel;
pub mod config;
pub mod daemon;
pub mod files;
pub mod health;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod neighbours;
pub mod peer;
pub mod proxy_protocol;
pub mod revocations;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tier_audit;
pub mod tls;

pub use authz::{AccessPolicy, Allow, Revocations};
pub use identity::{Principal, Role, Service, SpiffeId};
pub use limits::{LimitsSection, ListenerLimits};
pub use metrics::{Metrics, MetricsSection};
pub use peer::PeerInfo;
pub use serve::{ClientTrust, ListenOptions};
pub use shutdown::Shutdown;
