//! Compiles `skm/**/*.proto` with `protox` (pure Rust: no `protoc` needed) and
//! generates prost messages and tonic clients/servers, plus the encoded file
//! descriptor set that the reflection service serves; and clients of the
//! part of etcd's v3 API that skm-store uses (`etcd/rpc.proto`).

use std::path::PathBuf;

const PROTOS: &[&str] =
    &["skm/root/v1/root.proto", "skm/system/v1/system.proto", "skm/api/v1/api.proto", "skm/admin/v1/admin.proto"];

const ETCD_PROTO: &str = "etcd/rpc.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    let encoded = prost::Message::encode_to_vec(&fds);
    std::fs::write(out_dir.join("skm_descriptor.bin"), encoded)?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::SkmCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    // etcd's v3 API (the subset skm-store's etcd backend calls): clients
    // only, with prost's own codec, and outside the descriptor set above
    // (reflection serves SKM's services, not etcd's).
    println!("cargo:rerun-if-changed={ETCD_PROTO}");
    let etcd = protox::compile([ETCD_PROTO], ["etcd"])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(etcd)?;
    Ok(())
}
