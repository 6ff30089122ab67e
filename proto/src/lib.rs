//! Generated protobuf messages and tonic services of SKM's three tiers and
//! its operator plane. Packages are versioned (`skm.<plane>.v1`); domain code
//! converts these types at its gRPC edge and never passes them further in.

#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod codec;

/// root-keyd: root key, seal/unseal, system key wrap/unwrap.
pub mod root {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("skm.root.v1");
    }
}

/// system-keyd: wrapped system key versions.
pub mod system {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("skm.system.v1");
    }
}

/// kms-api user plane: key use by applications.
pub mod api {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("skm.api.v1");
    }
}

/// kms-api operator plane: keystore and key management.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("skm.admin.v1");
    }
}

/// etcd's v3 API, the KV, Watch and Lease calls of skm-store's etcd
/// backend (`etcd/rpc.proto`: etcd's messages and field numbers, trimmed).
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// Encoded `FileDescriptorSet` of every SKM proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skm_descriptor.bin"));
