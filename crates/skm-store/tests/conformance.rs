//! Runs the backend conformance suite (`skm_store::conformance`) against
//! every backend of this crate: sled (durable, reopened from its
//! directory) and memory (not durable by design: only the durability case
//! may be skipped, and the test says so).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use skm_store::conformance::{self, Backend};
use skm_store::{MemoryStore, SledStore};
use tempfile::TempDir;

struct Sled;

impl Backend for Sled {
    type S = SledStore;
    type Location = TempDir;

    fn name(&self) -> &'static str {
        "sled"
    }

    async fn fresh(&self) -> (SledStore, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (SledStore::open(dir.path()).unwrap(), dir)
    }

    async fn reopen(&self, store: SledStore, dir: &TempDir) -> Option<SledStore> {
        drop(store);
        Some(SledStore::open(dir.path()).unwrap())
    }
}

struct Memory;

impl Backend for Memory {
    type S = MemoryStore;
    type Location = ();

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn fresh(&self) -> (MemoryStore, ()) {
        (MemoryStore::new(), ())
    }

    async fn reopen(&self, _: MemoryStore, _: &()) -> Option<MemoryStore> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_conforms() {
    let report = conformance::run_all(&Sled).await;
    assert!(report.skipped.is_empty(), "sled is durable and skips nothing: {:?}", report.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_conforms_except_durability() {
    let report = conformance::run_all(&Memory).await;
    assert_eq!(
        report.skipped_cases(),
        ["durability"],
        "MemoryStore is not durable by design, and nothing else is skipped"
    );
}
