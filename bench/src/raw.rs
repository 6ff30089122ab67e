//! Raw crypto rates: the same `skm_crypto` calls kms-api makes for each
//! operation, in this process on one core, without RPC, policy or audit.
//! cores × this rate is the crypto ceiling of a service figure. (The
//! criterion benches in crates/skm-crypto/benches/ops.rs measure the same
//! calls with more care; this quick measurement keeps each report
//! self-contained.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey};
use skm_crypto::mac::{MacAlgorithm, MacKey};
use skm_crypto::user::{self, Header};
use skm_crypto::{Id, Secret32};

use crate::ops::{self, Op, SigKey};

/// The raw rate of one operation.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RawRate {
    /// Operation name.
    pub(crate) op: String,
    /// What was timed.
    pub(crate) what: String,
    /// Calls per second on one core (None: the operation does no crypto
    /// on kms-api's hot path).
    pub(crate) per_core: Option<f64>,
}

/// Slices a raw measurement is cut into; the fastest counts.
const SLICES: u32 = 8;

/// Runs `f` for about `budget`; calls per second in the fastest of
/// [`SLICES`] equal slices. On a shared VM other guests only ever slow a
/// slice down, so the fastest one is the closest to what a core can do:
/// the ceiling errs on the high side and the "of ceiling" ratios on the
/// low side.
fn rate(budget: Duration, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let slice = budget / SLICES;
    let mut best = 0f64;
    for _ in 0..SLICES {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice || n == 0 {
            f()?;
            n += 1;
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn alg(k: SigKey) -> KeyAlgorithm {
    match k {
        SigKey::Ed25519 => KeyAlgorithm::Ed25519,
        SigKey::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        SigKey::Rsa2048 => KeyAlgorithm::Rsa2048,
        SigKey::MlDsa65 => KeyAlgorithm::MlDsa65,
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// Measures each operation's raw rate (blocking; one core).
pub(crate) fn measure(ops: &[Op], batch_size: usize, budget: Duration) -> anyhow::Result<Vec<RawRate>> {
    let key = Secret32::generate().map_err(err)?;
    let header = Header { key_id: Id::generate().map_err(err)?, version: 1 };
    let message = vec![0x42u8; ops::SIGN_MESSAGE_LEN];
    let mut out = Vec::new();
    for &op in ops {
        let (what, per_core) = match op {
            Op::Noop => ("no crypto".to_owned(), None),
            Op::GetSecret => ("no crypto (the secret is cached decrypted)".to_owned(), None),
            Op::CreateSecret => ("a durable write, not crypto-bound".to_owned(), None),
            Op::Encrypt(n) => {
                let p = vec![0x5au8; n];
                let r = rate(budget, || {
                    black_box(user::encrypt(&key, header, black_box(&p), b"").map_err(err)?);
                    Ok(())
                })?;
                (format!("skm_crypto::user::encrypt {}", ops::size_label(n)), Some(r))
            }
            Op::Decrypt(n) => {
                let ct = user::encrypt(&key, header, &vec![0x5au8; n], b"").map_err(err)?;
                let r = rate(budget, || {
                    black_box(user::decrypt(&key, black_box(&ct), b"").map_err(err)?);
                    Ok(())
                })?;
                (format!("skm_crypto::user::decrypt {}", ops::size_label(n)), Some(r))
            }
            Op::DataKey => {
                let r = rate(budget, || {
                    let dk = Secret32::generate().map_err(err)?;
                    black_box(user::encrypt(&key, header, dk.danger_expose(), b"").map_err(err)?);
                    Ok(())
                })?;
                ("Secret32::generate + user::encrypt 32 B".to_owned(), Some(r))
            }
            Op::BatchEncrypt => {
                let p = vec![0x5au8; ops::BATCH_ITEM_LEN];
                let r = rate(budget, || {
                    for _ in 0..batch_size {
                        black_box(user::encrypt(&key, header, black_box(&p), b"").map_err(err)?);
                    }
                    Ok(())
                })?;
                (format!("{batch_size} × user::encrypt 1KiB"), Some(r))
            }
            Op::Sign(k) => {
                let private = PrivateKey::generate(alg(k)).map_err(err)?;
                let sig_alg = alg(k).default_signature_algorithm();
                let r = rate(budget, || {
                    black_box(private.sign(sig_alg, Message::Raw(black_box(&message))).map_err(err)?);
                    Ok(())
                })?;
                (format!("asym sign {} 1KiB", sig_alg.name()), Some(r))
            }
            Op::Verify(k) => {
                let private = PrivateKey::generate(alg(k)).map_err(err)?;
                let sig_alg = alg(k).default_signature_algorithm();
                let sig = private.sign(sig_alg, Message::Raw(&message)).map_err(err)?;
                let public = private.public_key();
                let r = rate(budget, || {
                    public.verify(sig_alg, Message::Raw(black_box(&message)), black_box(&sig)).map_err(err)?;
                    Ok(())
                })
                .context("verify")?;
                (format!("asym verify {} 1KiB", sig_alg.name()), Some(r))
            }
            Op::Mac => {
                let mac = MacKey::generate(MacAlgorithm::HmacSha256).map_err(err)?;
                let r = rate(budget, || {
                    black_box(mac.sign(black_box(&message)));
                    Ok(())
                })?;
                ("mac::MacKey::sign hmac-sha256 1KiB".to_owned(), Some(r))
            }
            Op::VerifyMac => {
                let mac = MacKey::generate(MacAlgorithm::HmacSha256).map_err(err)?;
                let tag = mac.sign(&message);
                let r = rate(budget, || {
                    mac.verify(black_box(&message), black_box(&tag)).map_err(err)?;
                    Ok(())
                })?;
                ("mac::MacKey::verify hmac-sha256 1KiB".to_owned(), Some(r))
            }
        };
        out.push(RawRate { op: op.name(), what, per_core });
    }
    Ok(out)
}
