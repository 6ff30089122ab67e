//! The operations measured, their names and the `--ops` list.

use serde::Serialize;

/// The asymmetric key types measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum SigKey {
    /// Ed25519.
    Ed25519,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
    /// RSA-2048, PSS with SHA-256.
    Rsa2048,
    /// ML-DSA-65 (FIPS 204).
    MlDsa65,
}

impl SigKey {
    /// All of them, in report order.
    pub(crate) const ALL: [SigKey; 4] = [SigKey::Ed25519, SigKey::EcdsaP256, SigKey::Rsa2048, SigKey::MlDsa65];

    /// SKM's name of the key type.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SigKey::Ed25519 => "ed25519",
            SigKey::EcdsaP256 => "ecdsa-p256",
            SigKey::Rsa2048 => "rsa-2048",
            SigKey::MlDsa65 => "ml-dsa-65",
        }
    }
}

/// Bytes of every signed (or MACed) message.
pub(crate) const SIGN_MESSAGE_LEN: usize = 1024;
/// Bytes of each batch-encrypt item.
pub(crate) const BATCH_ITEM_LEN: usize = 1024;
/// Bytes of the secret read by get-secret.
pub(crate) const SECRET_LEN: usize = 64;

/// One operation on the user port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// WhoAmI: no key, no crypto, no storage: the transport ceiling.
    Noop,
    /// GetSecret of a 64-byte secret.
    GetSecret,
    /// CreateSecret of a new 64-byte secret on the admin port: a durable
    /// write (store flush and audit entry before the reply).
    CreateSecret,
    /// Encrypt of this many bytes.
    Encrypt(usize),
    /// Decrypt of a ciphertext of this many plaintext bytes.
    Decrypt(usize),
    /// GenerateDataKey (AES-256).
    DataKey,
    /// BatchEncrypt of `batch_size` items of 1 KiB.
    BatchEncrypt,
    /// Sign a 1 KiB message.
    Sign(SigKey),
    /// Verify a signature of a 1 KiB message.
    Verify(SigKey),
    /// GenerateMac of a 1 KiB message with an HMAC-SHA-256 key.
    Mac,
    /// VerifyMac of a 1 KiB message's HMAC-SHA-256 tag.
    VerifyMac,
}

/// `1KiB`, `32KiB`, `100B`.
pub(crate) fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) { format!("{}KiB", bytes / 1024) } else { format!("{bytes}B") }
}

impl Op {
    /// The name in options and reports.
    pub(crate) fn name(self) -> String {
        match self {
            Op::Noop => "noop".into(),
            Op::GetSecret => "get-secret".into(),
            Op::CreateSecret => "create-secret".into(),
            Op::Encrypt(n) => format!("encrypt-{}", size_label(n)),
            Op::Decrypt(n) => format!("decrypt-{}", size_label(n)),
            Op::DataKey => "data-key".into(),
            Op::BatchEncrypt => "batch-encrypt".into(),
            Op::Sign(k) => format!("sign-{}", k.name()),
            Op::Verify(k) => format!("verify-{}", k.name()),
            Op::Mac => "mac-hmac-sha256".into(),
            Op::VerifyMac => "verify-mac-hmac-sha256".into(),
        }
    }

    /// Every operation, in report order.
    pub(crate) fn all(payloads: &[usize]) -> Vec<Op> {
        let mut ops = vec![Op::Noop, Op::GetSecret, Op::CreateSecret];
        for &p in payloads {
            ops.push(Op::Encrypt(p));
            ops.push(Op::Decrypt(p));
        }
        ops.push(Op::DataKey);
        ops.push(Op::BatchEncrypt);
        for k in SigKey::ALL {
            ops.push(Op::Sign(k));
            ops.push(Op::Verify(k));
        }
        ops.push(Op::Mac);
        ops.push(Op::VerifyMac);
        ops
    }
}

/// Parses `--ops` (see its help); keeps report order, drops duplicates.
pub(crate) fn parse_list(items: &[String], payloads: &[usize]) -> Result<Vec<Op>, String> {
    let all = Op::all(payloads);
    let mut wanted: Vec<Op> = Vec::new();
    for item in items {
        let item = item.trim();
        let matched: Vec<Op> = match item {
            "all" => all.clone(),
            "encrypt" => all.iter().copied().filter(|o| matches!(o, Op::Encrypt(_))).collect(),
            "decrypt" => all.iter().copied().filter(|o| matches!(o, Op::Decrypt(_))).collect(),
            "sign" => all.iter().copied().filter(|o| matches!(o, Op::Sign(_))).collect(),
            "verify" => all.iter().copied().filter(|o| matches!(o, Op::Verify(_))).collect(),
            "mac" => all.iter().copied().filter(|o| matches!(o, Op::Mac | Op::VerifyMac)).collect(),
            name => all.iter().copied().filter(|o| o.name() == name).collect(),
        };
        if matched.is_empty() {
            let names: Vec<String> = all.iter().map(|o| o.name()).collect();
            return Err(format!(
                "--ops: unknown operation {item:?}; known: all, encrypt, decrypt, sign, verify, mac, {}",
                names.join(", ")
            ));
        }
        wanted.extend(matched);
    }
    Ok(all.into_iter().filter(|o| wanted.contains(o)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_groups() {
        let payloads = [1024, 32768];
        assert_eq!(Op::all(&payloads).len(), 19);
        let ops = parse_list(&["encrypt".into(), "sign-rsa-2048".into(), "noop".into()], &payloads).unwrap_or_default();
        let names: Vec<String> = ops.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["noop", "encrypt-1KiB", "encrypt-32KiB", "sign-rsa-2048"]);
        assert!(parse_list(&["frobnicate".into()], &payloads).is_err());
        assert_eq!(size_label(100), "100B");
    }
}
