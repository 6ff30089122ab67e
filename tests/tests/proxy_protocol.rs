//! PROXY protocol v2 on the user port, end to end: a load balancer in front
//! of kms-api names the client, the keystore policy sees that address, and
//! a header from anyone but the configured balancer is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, create_key, encrypt, wait_ready};
use skm_runtime::proxy_protocol::{TrustedProxies, encode_v2};
use tokio::net::{TcpListener, TcpSocket};

/// A TCP load balancer: accepts clients, connects to `backend` from
/// `source_ip`, optionally sends a PROXY v2 header naming `claimed`, then
/// relays bytes both ways.
async fn balancer(backend: SocketAddr, source_ip: [u8; 4], claimed: Option<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::from((source_ip, 0))).unwrap();
                let Ok(mut upstream) = socket.connect(backend).await else { return };
                if let Some(claimed) = claimed {
                    use tokio::io::AsyncWriteExt;
                    if upstream.write_all(&encode_v2(claimed, backend)).await.is_err() {
                        return;
                    }
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

async fn keystore_for(skm: &skm_client::Skm, name: &str, ip: &str) -> String {
    let policy = admin::Policy { allow_ips: vec![ip.into()], ..Default::default() };
    let ks = skm_e2e::keystore_with(skm, name, policy).await.unwrap();
    create_key(skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap()
}

#[tokio::test]
async fn client_address_comes_from_a_trusted_balancer_only() {
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |config| {
        config.user_proxy_protocol_from = Some(TrustedProxies::parse(["127.0.0.1"]).unwrap());
    })
    .await
    .unwrap();
    let operator = stack.client().unwrap();
    // Health over the admin port (the user port now wants a header from 127.0.0.1).
    wait_ready(&operator, Duration::from_secs(30)).await.unwrap();
    let backend = stack.kms().user_addr;
    let claimed: SocketAddr = "10.99.0.7:41000".parse().unwrap();
    let via = |lb: SocketAddr| {
        let mut profile = stack.profile.clone();
        profile.user_endpoint = lb.to_string();
        profile.connect().unwrap()
    };

    // Through the trusted balancer: kms-api sees the client it names.
    let trusted = via(balancer(backend, [127, 0, 0, 1], Some(claimed)).await);
    let who = trusted.keys().who_am_i(api::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!(who.client_ip, "10.99.0.7");
    assert!(who.proxied_by.starts_with("127.0.0.1:"), "{who:?}");
    assert_eq!(who.verified_mac, "", "no MAC for an address from a header");
    let allowed = keystore_for(&operator, "behind-lb", "10.99.0.7").await;
    encrypt(&trusted, &allowed, b"via the balancer", b"").await.unwrap();
    let balancer_only = keystore_for(&operator, "lb-address", "127.0.0.1").await;
    let err = encrypt(&trusted, &balancer_only, b"x", b"").await.unwrap_err();
    assert_eq!(err.message(), "IPv4 authentication failed");

    // The trusted balancer must send a header: without one, no service.
    let silent = via(balancer(backend, [127, 0, 0, 1], None).await);
    assert!(silent.keys().who_am_i(api::WhoAmIRequest {}).await.is_err());

    // A header from anyone else is refused, even one naming an allowed client.
    let forged = via(balancer(backend, [127, 0, 0, 2], Some(claimed)).await);
    assert!(forged.keys().who_am_i(api::WhoAmIRequest {}).await.is_err());
    assert!(encrypt(&forged, &allowed, b"x", b"").await.is_err());

    // That other peer without a header is served as itself.
    let plain = via(balancer(backend, [127, 0, 0, 2], None).await);
    let who = plain.keys().who_am_i(api::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((who.client_ip.as_str(), who.proxied_by.as_str()), ("127.0.0.2", ""));
    assert_eq!(encrypt(&plain, &allowed, b"x", b"").await.unwrap_err().message(), "IPv4 authentication failed");
}
