//! Scale: the same encrypt with 1k..1M AES keys in the store. For each key
//! count: a fresh stack whose kms-api cache is smaller than the key count,
//! the keys created over the admin port (many CreateKey calls in flight:
//! the honest way, through the product's own write path with its flushes
//! and audit), kms-api restarted and timed until SERVING, then encrypt
//! 1 KiB against one key (cache hit) and against a random key per call
//! (mostly cache misses: read and open the sealed record).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use tokio::time::Instant;

use crate::args::Plan;
use crate::load::{self, Phase};
use crate::report::{Row, ScaleRow};
use crate::skm_target::{create_key, create_keystore};
use crate::stack::Stack;

/// CreateKey calls in flight while filling the store.
const CREATE_IN_FLIGHT: usize = 64;
/// Admin connections they share.
const CREATE_CONNECTIONS: usize = 4;

/// Creates `n` AES keys; their ids.
async fn create_keys(stack: &Stack, keystore: &str, n: usize, bar: &ProgressBar) -> anyhow::Result<Vec<String>> {
    let clients = stack.operator_clients(CREATE_CONNECTIONS)?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CREATE_IN_FLIGHT.min(n) {
        let client = clients[t % clients.len()].clone();
        let (next, keystore, bar) = (next.clone(), keystore.to_owned(), bar.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(ids);
                }
                ids.push(create_key(&client, &keystore, &format!("k{i}"), admin::KeyType::Aes256).await?);
                bar.inc(1);
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// Runs the scale measurement for every key count of the plan.
pub(crate) async fn run(plan: &Plan, skm: &Path, say: &dyn Fn(String)) -> anyhow::Result<Vec<ScaleRow>> {
    let mut out: Vec<ScaleRow> = Vec::new();
    let plaintext = vec![0x5au8; 1024];
    for &n in &plan.scale {
        let mut stack = Stack::start(skm, Some(plan.scale_cache_entries), &plan.audit_sync, plan.store).await?;
        crate::run::pin_servers(plan, say)?;
        let keystore = create_keystore(&stack, "scale", false).await?;
        let bar = ProgressBar::new(n as u64);
        bar.set_style(crate::run::bar_style());
        bar.set_message(format!("creating {n} keys"));
        let started = Instant::now();
        let ids = create_keys(&stack, &keystore, n, &bar).await?;
        let create_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        say(format!("scale {n}: created {n} keys in {create_seconds:.1} s ({:.0}/s)", n as f64 / create_seconds));
        let rss_after_create = stack.kms_rss();
        let ready = stack.restart_kms().await?;
        let rss_after_restart = stack.kms_rss();
        say(format!("scale {n}: kms-api SERVING {:.2} s after its restart", ready.as_secs_f64()));
        crate::run::pin_servers(plan, say)?;
        let watched = stack.watched();
        let clients = stack.user_clients(plan.channels, None)?;
        let ids = Arc::new(ids);
        let mut per_level = Vec::new();
        for &c in &plan.concurrency {
            let phase = Phase { concurrency: c, warmup: plan.warmup, duration: plan.duration };
            let mut rows = Vec::new();
            for random in [false, true] {
                let (clients, ids, plaintext) = (clients.clone(), ids.clone(), plaintext.clone());
                let m = load::drive(phase, &watched, move |task, i| {
                    let mut keys = clients[task % clients.len()].clone();
                    let key = if random {
                        let r = load::splitmix(((task as u64) << 40) ^ i);
                        ids[(r % ids.len() as u64) as usize].clone()
                    } else {
                        ids[0].clone()
                    };
                    let plaintext = plaintext.clone();
                    async move {
                        keys.encrypt(api::EncryptRequest { key_id: key, plaintext, aad: Vec::new() })
                            .await
                            .map(drop)
                            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                    }
                })
                .await?;
                let name = if random { "encrypt-1KiB random keys" } else { "encrypt-1KiB one key" };
                let row = Row::measured("skm", name.into(), c, None, &m);
                say(format!("scale {n}: {}", crate::run::line(&row, &m)));
                rows.push(row);
            }
            per_level.push((c, rows));
        }
        let rss_after_load = stack.kms_rss();
        for (c, mut rows) in per_level {
            let random_keys = rows.pop().ok_or_else(|| anyhow::anyhow!("no row"))?;
            let one_key = rows.pop().ok_or_else(|| anyhow::anyhow!("no row"))?;
            let base = out.iter().find(|s| s.concurrency == c);
            let ratio = |now: f64, then: Option<f64>| then.filter(|t| *t > 0.0).map_or(1.0, |t| now / t);
            out.push(ScaleRow {
                keys: n,
                cache_entries: plan.scale_cache_entries,
                create_seconds,
                create_rate: n as f64 / create_seconds,
                ready_seconds: ready.as_secs_f64(),
                rss_after_create,
                rss_after_restart,
                rss_after_load,
                concurrency: c,
                one_key_p50_ratio: ratio(one_key.p50_us, base.map(|b| b.one_key.p50_us)),
                random_keys_p50_ratio: ratio(random_keys.p50_us, base.map(|b| b.random_keys.p50_us)),
                one_key,
                random_keys,
            });
        }
        stack.shutdown().await;
    }
    Ok(out)
}
