//! The hybrid post-quantum key exchange is what every link negotiates:
//! each tier link (system-keyd → root-keyd, kms-api → system-keyd and
//! root-keyd), the user, admin and REST listeners, connected with the very
//! client configurations the tiers and clients use, agree on
//! X25519MLKEM768 (rustls reports the group per connection), over TLS 1.3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::{NamedGroup, ProtocolVersion};
use skm::devstack::DevSeal;
use skm_e2e::{InProcess, TRUST_DOMAIN, wait_ready};
use skm_runtime::identity::{Service, SpiffeId};
use skm_runtime::tls::{TlsFiles, TlsIdentity};

/// The group and protocol a handshake with `addr` settled on.
async fn negotiated(addr: &str, config: Arc<rustls::ClientConfig>) -> (Option<NamedGroup>, Option<ProtocolVersion>) {
    let addr: SocketAddr = addr.parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let (_, conn) = tls.get_ref();
    (conn.negotiated_key_exchange_group().map(|g| g.name()), conn.protocol_version())
}

/// The TLS identity a tier (or the operator) presents, as the tier loads it.
fn identity(stack: &InProcess, who: &str, expected: Option<Service>) -> TlsIdentity {
    let dir = stack.stack.dir.join("pki").join(who);
    let files = TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let expected = expected.map(|s| SpiffeId::for_service(TRUST_DOMAIN, s).unwrap());
    TlsIdentity::load(&files, expected.as_ref()).unwrap()
}

fn id(service: Service) -> SpiffeId {
    SpiffeId::for_service(TRUST_DOMAIN, service).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_and_listener_negotiates_x25519mlkem768() {
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |c| {
        c.rest_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await
    .unwrap();
    wait_ready(&stack.client().unwrap(), Duration::from_secs(30)).await.unwrap();
    let p = &stack.profile;
    let rest = stack.kms().rest_addr.expect("REST listener bound").to_string();
    let system = identity(&stack, "system-keyd", Some(Service::SystemKeyd));
    let kms = identity(&stack, "kms-api", Some(Service::KmsApi));
    let operator = identity(&stack, "operator", None);
    let roots = || skm_runtime::tls::load_roots(&p.ca).unwrap();
    let links = [
        ("system-keyd → root-keyd", p.root_keyd.clone(), system.client_config(&id(Service::RootKeyd)).unwrap()),
        ("kms-api → root-keyd", p.root_keyd.clone(), kms.client_config(&id(Service::RootKeyd)).unwrap()),
        ("kms-api → system-keyd", p.system_keyd.clone(), kms.client_config(&id(Service::SystemKeyd)).unwrap()),
        ("operator → admin port", p.admin_endpoint.clone(), operator.client_config(&id(Service::KmsApi)).unwrap()),
        (
            "application → user port",
            p.user_endpoint.clone(),
            skm_runtime::tls::anonymous_client_config(roots(), &id(Service::KmsApi)).unwrap(),
        ),
        ("application → REST", rest, skm_runtime::tls::anonymous_client_config(roots(), &id(Service::KmsApi)).unwrap()),
    ];
    for (link, addr, config) in links {
        let (group, version) = negotiated(&addr, config).await;
        assert_eq!(group, Some(NamedGroup::X25519MLKEM768), "{link} ({addr})");
        assert_eq!(version, Some(ProtocolVersion::TLSv1_3), "{link} ({addr})");
    }
}
