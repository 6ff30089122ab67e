//! The conformance suite: the semantics every [`Store`] backend must have,
//! written once and independent of any backend, so sled, memory and (later)
//! etcd are held to the same contract instead of each to its own tests.
//!
//! Compiled only with the `conformance` feature, so no test code ships in a
//! release build. A backend plugs in through [`Backend`] (how to make a
//! fresh, empty store, and how to reopen one) and runs every case with
//! [`run_all`]; each case is also public, to run a failing one alone.
//!
//! **Durability is the one case a backend may skip, and only by saying so.**
//! [`Backend::reopen`] returns `None` for a backend that is not durable by
//! design ([`MemoryStore`](crate::MemoryStore)); the durability case then
//! reports [`Outcome::Skipped`], [`run_all`] prints that on stderr and lists
//! it in [`Report::skipped`], and the backend's test asserts the exact list
//! of skipped cases, so a durable backend that stops reopening fails.
//!
//! The concurrency cases spawn tokio tasks: run the suite on a
//! multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`), or
//! they only exercise interleavings at await points.
//!
//! A case fails by panicking, with the backend, the case and the step in
//! the message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "this module is a test suite: a panic is how a case fails, and compiling it needs the conformance feature"
)]

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::{Expect, Op, Store, StoreError, Versioned};

/// How the suite gets stores of one backend.
pub trait Backend: Sync {
    /// The backend's store.
    type S: Store + Clone;
    /// Where a store's data lives, as much as [`reopen`](Backend::reopen)
    /// needs to find it again (a temporary directory, an etcd prefix; `()`
    /// for memory). The suite keeps it alive for the whole case.
    type Location: Send + Sync;

    /// The backend's name, for messages.
    fn name(&self) -> &'static str;

    /// A new, empty store that no other case sees.
    fn fresh(&self) -> impl Future<Output = (Self::S, Self::Location)> + Send;

    /// Drops `store` (the suite holds no other clone of it by then) and
    /// opens the data at `location` again; `None` if the backend is not
    /// durable by design, which makes the durability case skip.
    fn reopen(&self, store: Self::S, location: &Self::Location) -> impl Future<Output = Option<Self::S>> + Send;
}

/// The result of one case that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check ran and held.
    Passed,
    /// The case could not run for this backend, for this reason.
    Skipped(&'static str),
}

/// A skipped case and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The case.
    pub case: &'static str,
    /// Why it was skipped.
    pub reason: &'static str,
}

/// What [`run_all`] ran.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The backend's name.
    pub backend: &'static str,
    /// Cases that ran and held.
    pub passed: Vec<&'static str>,
    /// Cases that did not run, with the reason.
    pub skipped: Vec<Skip>,
}

impl Report {
    /// The names of the skipped cases.
    pub fn skipped_cases(&self) -> Vec<&'static str> {
        self.skipped.iter().map(|s| s.case).collect()
    }

    fn record(&mut self, case: &'static str, outcome: Outcome) {
        match outcome {
            Outcome::Passed => {
                eprintln!("conformance[{}] {case}: passed", self.backend);
                self.passed.push(case);
            }
            Outcome::Skipped(reason) => {
                eprintln!("conformance[{}] {case}: SKIPPED: {reason}", self.backend);
                self.skipped.push(Skip { case, reason });
            }
        }
    }
}

/// The name of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = &[
    "revisions_and_conditions",
    "values_round_trip",
    "apply_is_all_or_nothing",
    "batches_mix_puts_and_deletes",
    "delete_conditions",
    "list_by_prefix_in_key_order",
    "binary_keys_in_byte_order",
    "ranges_exclude_end",
    "cas_race_loses_no_update",
    "concurrent_creates_one_wins",
    "concurrent_batches_never_interleave",
    "durability",
];

/// Runs every case against `backend`, panicking at the first failure.
pub async fn run_all<B: Backend>(backend: &B) -> Report {
    let mut report = Report { backend: backend.name(), ..Report::default() };
    macro_rules! run {
        ($case:ident) => {{
            eprintln!("conformance[{}] {}: running", backend.name(), stringify!($case));
            let outcome = $case(backend).await;
            report.record(stringify!($case), outcome);
        }};
    }
    run!(revisions_and_conditions);
    run!(values_round_trip);
    run!(apply_is_all_or_nothing);
    run!(batches_mix_puts_and_deletes);
    run!(delete_conditions);
    run!(list_by_prefix_in_key_order);
    run!(binary_keys_in_byte_order);
    run!(ranges_exclude_end);
    run!(cas_race_loses_no_update);
    run!(concurrent_creates_one_wins);
    run!(concurrent_batches_never_interleave);
    run!(durability);
    let ran: Vec<_> = report.passed.iter().copied().chain(report.skipped_cases()).collect();
    assert_eq!(ran.len(), CASES.len(), "run_all and CASES list the same cases");
    if report.skipped.is_empty() {
        eprintln!("conformance[{}]: all {} cases passed", report.backend, report.passed.len());
    } else {
        eprintln!(
            "conformance[{}]: {} cases passed; SKIPPED {:?} (see the reasons above)",
            report.backend,
            report.passed.len(),
            report.skipped_cases()
        );
    }
    report
}

/// Per-key revisions start at 1 and grow by 1; `Absent`, `Revision` and
/// `Any` hold exactly when they should, on existing and missing keys; a
/// failed write changes nothing.
pub async fn revisions_and_conditions<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    assert!(s.list(b"").await.unwrap().is_empty(), "{n}: a fresh store is empty");
    assert_eq!(s.get(b"a").await.unwrap(), None, "{n}: get of a missing key");

    assert_eq!(s.put(b"a", b"1", Expect::Absent).await.unwrap(), 1, "{n}: the first write is revision 1");
    conflict(s.put(b"a", b"x", Expect::Absent).await, n, "Absent on an existing key");
    assert_eq!(s.put(b"a", b"2", Expect::Revision(1)).await.unwrap(), 2, "{n}: Revision(current) writes");
    conflict(s.put(b"a", b"x", Expect::Revision(1)).await, n, "a stale revision");
    conflict(s.put(b"a", b"x", Expect::Revision(3)).await, n, "a revision not reached yet");
    assert_eq!(s.get(b"a").await.unwrap(), Some(v(2, b"2")), "{n}: failed puts changed nothing");
    assert_eq!(s.put(b"a", b"3", Expect::Any).await.unwrap(), 3, "{n}: Any on an existing key");

    conflict(s.put(b"b", b"x", Expect::Revision(1)).await, n, "Revision(1) on a missing key");
    conflict(s.put(b"b", b"x", Expect::Revision(0)).await, n, "Revision(0) on a missing key");
    assert_eq!(s.get(b"b").await.unwrap(), None, "{n}: a failed put on a missing key creates nothing");
    assert_eq!(s.put(b"b", b"1", Expect::Any).await.unwrap(), 1, "{n}: Any on a missing key creates it at 1");

    assert_eq!(s.get(b"a").await.unwrap(), Some(v(3, b"3")), "{n}: revisions are per key");
    assert_eq!(s.get(b"b").await.unwrap(), Some(v(1, b"1")), "{n}: revisions are per key");

    s.delete(b"b", Expect::Revision(1)).await.unwrap();
    assert_eq!(s.get(b"b").await.unwrap(), None, "{n}: a deleted key is gone");
    assert_eq!(s.put(b"b", b"again", Expect::Absent).await.unwrap(), 1, "{n}: a deleted key starts again at 1");
    Outcome::Passed
}

/// Values are opaque bytes: empty, binary and large values come back
/// exactly, from `get` and from `list`.
pub async fn values_round_trip<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    let large: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let cases: [(&[u8], &[u8]); 4] =
        [(b"empty", b""), (b"binary", &[0x00, 0xff, 0x00, 0x80, 0x7f]), (b"large", &large), (b"zeros", &[0; 8])];
    for (key, value) in cases {
        s.put(key, value, Expect::Absent).await.unwrap();
        assert_eq!(s.get(key).await.unwrap(), Some(v(1, value)), "{n}: value of {key:?}");
    }
    let mut expected: Vec<_> = cases.iter().map(|(k, value)| (k.to_vec(), v(1, value))).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(s.list(b"").await.unwrap(), expected, "{n}: list returns the values exactly");
    s.put(b"large", b"", Expect::Revision(1)).await.unwrap();
    assert_eq!(s.get(b"large").await.unwrap(), Some(v(2, b"")), "{n}: overwrite with an empty value");
    Outcome::Passed
}

/// A batch with one failing condition, wherever it is and whatever it
/// guards (put or delete, existing or missing key), writes nothing: no put
/// lands, no delete happens, no revision moves.
pub async fn apply_is_all_or_nothing<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for key in ["taken", "keep", "upd"] {
        s.put(key.as_bytes(), key.as_bytes(), Expect::Absent).await.unwrap();
    }
    let before = s.list(b"").await.unwrap();
    let good = [
        put_op("new", "1", Expect::Absent),
        Op::Delete { key: b"keep".to_vec(), expect: Expect::Revision(1) },
        put_op("upd", "changed", Expect::Revision(1)),
    ];
    let failing = [
        ("Absent on an existing key", put_op("taken", "2", Expect::Absent)),
        ("a stale revision", put_op("taken", "2", Expect::Revision(2))),
        ("Revision on a missing key", put_op("ghost", "2", Expect::Revision(1))),
        ("a delete at a stale revision", Op::Delete { key: b"taken".to_vec(), expect: Expect::Revision(2) }),
        ("a delete expecting Absent on an existing key", Op::Delete { key: b"taken".to_vec(), expect: Expect::Absent }),
        ("a delete at a revision of a missing key", Op::Delete { key: b"ghost".to_vec(), expect: Expect::Revision(1) }),
    ];
    for (what, bad) in &failing {
        for at in 0..=good.len() {
            let mut ops = good.to_vec();
            ops.insert(at, bad.clone());
            let step = format!("a batch with {what} at position {at}");
            conflict(s.apply(ops).await, n, &step);
            assert_eq!(s.list(b"").await.unwrap(), before, "{n}: {step} changed the store");
        }
    }
    s.apply(good.to_vec()).await.unwrap();
    assert_eq!(
        s.list(b"").await.unwrap(),
        vec![kv("new", 1, "1"), kv("taken", 1, "taken"), kv("upd", 2, "changed")],
        "{n}: the same batch without the failing op applies whole"
    );
    Outcome::Passed
}

/// One batch can create, update and delete; `Any` holds on a missing key
/// (deleting nothing is no error); an empty batch succeeds and changes
/// nothing.
pub async fn batches_mix_puts_and_deletes<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for key in ["a", "b", "c"] {
        s.put(key.as_bytes(), key.as_bytes(), Expect::Absent).await.unwrap();
    }
    s.apply(vec![
        put_op("n", "n", Expect::Absent),
        put_op("a", "a2", Expect::Revision(1)),
        Op::Delete { key: b"b".to_vec(), expect: Expect::Revision(1) },
        Op::Delete { key: b"c".to_vec(), expect: Expect::Any },
        put_op("d", "d", Expect::Any),
        Op::Delete { key: b"missing".to_vec(), expect: Expect::Any },
    ])
    .await
    .unwrap();
    let after = vec![kv("a", 2, "a2"), kv("d", 1, "d"), kv("n", 1, "n")];
    assert_eq!(s.list(b"").await.unwrap(), after, "{n}: the mixed batch");
    s.apply(Vec::new()).await.unwrap();
    assert_eq!(s.list(b"").await.unwrap(), after, "{n}: an empty batch changes nothing");
    Outcome::Passed
}

/// A delete at a stale revision, or expecting `Absent` on an existing key,
/// fails and leaves the key; at the current revision it deletes; a
/// `Revision` delete of a missing key fails. Through `delete` and `apply`.
pub async fn delete_conditions<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for key in [&b"via-delete"[..], b"via-apply"] {
        let one = |expect| vec![Op::Delete { key: key.to_vec(), expect }];
        s.put(key, b"1", Expect::Absent).await.unwrap();
        s.put(key, b"2", Expect::Revision(1)).await.unwrap();
        let through_delete = key == b"via-delete";
        for (expect, what) in [
            (Expect::Revision(1), "a stale revision"),
            (Expect::Absent, "Absent"),
            (Expect::Revision(3), "a future revision"),
        ] {
            let result = if through_delete { s.delete(key, expect).await } else { s.apply(one(expect)).await };
            conflict(result, n, &format!("delete of {key:?} at {what}"));
            assert_eq!(s.get(key).await.unwrap(), Some(v(2, b"2")), "{n}: a failed delete left {key:?}");
        }
        let result = if through_delete {
            s.delete(key, Expect::Revision(2)).await
        } else {
            s.apply(one(Expect::Revision(2))).await
        };
        result.unwrap();
        assert_eq!(s.get(key).await.unwrap(), None, "{n}: delete of {key:?} at the current revision");
        let result = if through_delete {
            s.delete(key, Expect::Revision(2)).await
        } else {
            s.apply(one(Expect::Revision(2))).await
        };
        conflict(result, n, &format!("a second delete of {key:?} at its old revision"));
    }
    Outcome::Passed
}

/// `list` returns exactly the keys with the prefix, in key order, whatever
/// the insertion order, with keys that are prefixes of each other; the
/// empty prefix lists everything.
pub async fn list_by_prefix_in_key_order<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for key in ["k/2", "k/10", "k", "kk", "k/1", "j/1", "k0", "k/", "l", "k/1/x"] {
        s.put(key.as_bytes(), key.as_bytes(), Expect::Absent).await.unwrap();
    }
    let cases: [(&str, &[&str]); 7] = [
        ("k/", &["k/", "k/1", "k/1/x", "k/10", "k/2"]),
        ("k", &["k", "k/", "k/1", "k/1/x", "k/10", "k/2", "k0", "kk"]),
        ("", &["j/1", "k", "k/", "k/1", "k/1/x", "k/10", "k/2", "k0", "kk", "l"]),
        ("k/1", &["k/1", "k/1/x", "k/10"]),
        ("k/1/", &["k/1/x"]),
        ("k/10/", &[]),
        ("m", &[]),
    ];
    for (prefix, want) in cases {
        let got = s.list(prefix.as_bytes()).await.unwrap();
        let expected: Vec<_> = want.iter().map(|k| kv(k, 1, k)).collect();
        assert_eq!(got, expected, "{n}: list({prefix:?})");
    }
    s.delete(b"k/1", Expect::Any).await.unwrap();
    assert_eq!(keys(s.list(b"k/1").await.unwrap()), strs(&["k/1/x", "k/10"]), "{n}: a deleted key is not listed");
    Outcome::Passed
}

/// Keys are bytes compared unsigned: 0x00 and 0xff anywhere in a key,
/// prefixes made of 0xff (where "increment the last byte" fails), and
/// ranges across 0x7f/0x80.
pub async fn binary_keys_in_byte_order<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    let sorted: Vec<&[u8]> = vec![
        &[0x00],
        &[0x00, 0x00],
        &[0x00, 0xff],
        &[0x01],
        b"a",
        b"a\x00b",
        b"a\xffb",
        &[0x7f],
        &[0x80],
        &[0xfe, 0xff],
        &[0xff],
        &[0xff, 0x00],
        &[0xff, 0xff],
        &[0xff, 0xff, 0xff],
    ];
    for key in sorted.iter().rev() {
        s.put(key, key, Expect::Absent).await.unwrap();
    }
    let all: Vec<_> = sorted.iter().map(|k| k.to_vec()).collect();
    assert_eq!(keys(s.list(b"").await.unwrap()), all, "{n}: every key in unsigned byte order");
    let cases: [(&[u8], Vec<&[u8]>); 6] = [
        (&[0xff], vec![&[0xff], &[0xff, 0x00], &[0xff, 0xff], &[0xff, 0xff, 0xff]]),
        (&[0xff, 0xff], vec![&[0xff, 0xff], &[0xff, 0xff, 0xff]]),
        (&[0x00], vec![&[0x00], &[0x00, 0x00], &[0x00, 0xff]]),
        (&[0x00, 0x00], vec![&[0x00, 0x00]]),
        (b"a", vec![b"a", b"a\x00b", b"a\xffb"]),
        (b"a\x00", vec![b"a\x00b"]),
    ];
    for (prefix, want) in cases {
        let want: Vec<_> = want.iter().map(|k| k.to_vec()).collect();
        assert_eq!(keys(s.list(prefix).await.unwrap()), want, "{n}: list({prefix:?})");
    }
    assert_eq!(keys(s.list_range(&[0x7f], &[0x80]).await.unwrap()), vec![vec![0x7f]], "{n}: range [7f, 80)");
    assert_eq!(
        keys(s.list_range(&[0x00], &[0xff]).await.unwrap()),
        all[..10].to_vec(),
        "{n}: range [00, ff) excludes ff and everything after it"
    );
    assert_eq!(
        keys(s.list_range(&[0xff, 0x00], &[0xff, 0xff, 0xff]).await.unwrap()),
        vec![vec![0xff, 0x00], vec![0xff, 0xff]],
        "{n}: range [ff00, ffffff)"
    );
    // A scan in pages of 3 from the empty key visits every key once, in order.
    let mut paged = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = keys(s.list_from(&from, 3).await.unwrap());
        assert!(page.len() <= 3, "{n}: list_from returns at most limit keys");
        let Some(last) = page.last() else { break };
        from = [last.as_slice(), &[0x00]].concat();
        paged.extend(page);
    }
    assert_eq!(paged, all, "{n}: list_from pages through every key");
    assert_eq!(keys(s.list_from(&[0xff, 0xff], 10).await.unwrap()), vec![vec![0xff, 0xff], vec![0xff, 0xff, 0xff]]);
    assert!(s.list_from(&[0x00], 0).await.unwrap().is_empty(), "{n}: limit 0");
    Outcome::Passed
}

/// `list_range(start, end)` includes `start`, excludes `end`, needs neither
/// to exist, and is empty when `start >= end`.
pub async fn ranges_exclude_end<B: Backend>(backend: &B) -> Outcome {
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for key in ["d", "b0", "a", "c", "b"] {
        s.put(key.as_bytes(), key.as_bytes(), Expect::Absent).await.unwrap();
    }
    let cases: [(&str, &str, &[&str]); 9] = [
        ("b", "d", &["b", "b0", "c"]),
        ("b", "c", &["b", "b0"]),
        ("b", "b\0", &["b"]),
        ("bb", "cc", &["c"]),
        ("", "c", &["a", "b", "b0"]),
        ("c", "zz", &["c", "d"]),
        ("b", "b", &[]),
        ("d", "b", &[]),
        ("e", "f", &[]),
    ];
    for (start, end, want) in cases {
        let got = s.list_range(start.as_bytes(), end.as_bytes()).await.unwrap();
        let expected: Vec<_> = want.iter().map(|k| kv(k, 1, k)).collect();
        assert_eq!(got, expected, "{n}: list_range({start:?}, {end:?})");
    }
    Outcome::Passed
}

/// Many tasks run read-modify-CAS loops on one counter: every increment
/// lands exactly once (no lost update), and the revision counts the writes.
pub async fn cas_race_loses_no_update<B: Backend>(backend: &B) -> Outcome {
    const TASKS: u64 = 8;
    const INCREMENTS: u64 = 10;
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    s.put(b"n", &0u64.to_be_bytes(), Expect::Absent).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..INCREMENTS {
                    loop {
                        let current = s.get(b"n").await.unwrap().expect("the counter exists");
                        let next = counter(&current.value) + 1;
                        match s.put(b"n", &next.to_be_bytes(), Expect::Revision(current.revision)).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("increment failed: {e:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    join_all(tasks).await;
    let last = s.get(b"n").await.unwrap().expect("the counter exists");
    assert_eq!(counter(&last.value), TASKS * INCREMENTS, "{n}: every increment landed once");
    assert_eq!(last.revision, TASKS * INCREMENTS + 1, "{n}: one revision per write");
    Outcome::Passed
}

/// Two tasks create the same key with `Absent` at the same moment: exactly
/// one wins (revision 1, its value stored), the other gets `Conflict`. The
/// same for two batches, whose loser writes none of its other keys.
pub async fn concurrent_creates_one_wins<B: Backend>(backend: &B) -> Outcome {
    const ROUNDS: usize = 32;
    let (s, _location) = backend.fresh().await;
    let n = backend.name();
    for round in 0..ROUNDS {
        let key = format!("race/{round}").into_bytes();
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = ["first", "second"]
            .into_iter()
            .map(|tag| {
                let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (tag, s.put(&key, tag.as_bytes(), Expect::Absent).await)
                })
            })
            .collect();
        let results = join_all(tasks).await;
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).map(|(tag, _)| *tag).collect();
        assert_eq!(winners.len(), 1, "{n}: round {round}: exactly one create wins, got {results:?}");
        for (tag, result) in &results {
            match result {
                Ok(revision) => assert_eq!(*revision, 1, "{n}: the winner creates revision 1"),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{n}: round {round}: {tag} failed with {e:?}, not Conflict"),
            }
        }
        assert_eq!(s.get(&key).await.unwrap(), Some(v(1, winners[0].as_bytes())), "{n}: the winner's value");
    }
    for round in 0..ROUNDS {
        let key = format!("batch-race/{round}");
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = ["first", "second"]
            .into_iter()
            .map(|tag| {
                let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    let ops =
                        vec![put_op(&format!("{key}/{tag}"), tag, Expect::Absent), put_op(&key, tag, Expect::Absent)];
                    barrier.wait().await;
                    (tag, s.apply(ops).await)
                })
            })
            .collect();
        let results = join_all(tasks).await;
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).map(|(tag, _)| *tag).collect();
        assert_eq!(winners.len(), 1, "{n}: round {round}: exactly one batch wins, got {results:?}");
        for (tag, result) in &results {
            if let Err(e) = result {
                assert!(matches!(e, StoreError::Conflict { .. }), "{n}: round {round}: {tag} failed with {e:?}");
            }
        }
        let winner = winners[0];
        assert_eq!(
            s.list(key.as_bytes()).await.unwrap(),
            vec![kv(&key, 1, winner), kv(&format!("{key}/{winner}"), 1, winner)],
            "{n}: round {round}: only the winning batch is visible"
        );
    }
    Outcome::Passed
}

/// Concurrent batches on overlapping keys never interleave partially:
/// conditional batches over {x, y} and {y, z} count exactly (y counts
/// both), and in rounds of unconditional batches writing the same keys in
/// different orders, every key ends with the same batch's value.
pub async fn concurrent_batches_never_interleave<B: Backend>(backend: &B) -> Outcome {
    const PER_GROUP: u64 = 3;
    const BATCHES: u64 = 8;
    const ROUNDS: u64 = 24;
    const WRITERS: usize = 4;
    let (s, _location) = backend.fresh().await;
    let n = backend.name();

    for key in [b"x", b"y", b"z"] {
        s.put(key, &0u64.to_be_bytes(), Expect::Absent).await.unwrap();
    }
    let groups: [[&'static [u8]; 2]; 2] = [[b"x", b"y"], [b"z", b"y"]];
    let tasks: Vec<_> = groups
        .iter()
        .flat_map(|pair| std::iter::repeat_n(*pair, PER_GROUP as usize))
        .map(|pair| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..BATCHES {
                    loop {
                        let mut ops = Vec::new();
                        for key in pair {
                            let current = s.get(key).await.unwrap().expect("the counter exists");
                            let next = counter(&current.value) + 1;
                            ops.push(Op::Put {
                                key: key.to_vec(),
                                value: next.to_be_bytes().to_vec(),
                                expect: Expect::Revision(current.revision),
                            });
                        }
                        match s.apply(ops).await {
                            Ok(()) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("batch failed: {e:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    join_all(tasks).await;
    let group_total = PER_GROUP * BATCHES;
    for (key, total) in [("x", group_total), ("y", 2 * group_total), ("z", group_total)] {
        let got = s.get(key.as_bytes()).await.unwrap().expect("the counter exists");
        assert_eq!(counter(&got.value), total, "{n}: counter {key:?} counts every batch that wrote it");
        assert_eq!(got.revision, total + 1, "{n}: revision of {key:?}");
    }

    let keys: Vec<Vec<u8>> = (0..WRITERS).map(|i| format!("w/{i}").into_bytes()).collect();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (s, barrier) = (s.clone(), barrier.clone());
                // Each writer writes the keys in a different order, so a
                // non-atomic apply would leave them mixed.
                let mut order = keys.clone();
                order.rotate_left(writer);
                tokio::spawn(async move {
                    let tag = format!("round {round} writer {writer}").into_bytes();
                    let ops =
                        order.into_iter().map(|key| Op::Put { key, value: tag.clone(), expect: Expect::Any }).collect();
                    barrier.wait().await;
                    s.apply(ops).await.unwrap();
                })
            })
            .collect();
        join_all(tasks).await;
        let entries = s.list(b"w/").await.unwrap();
        assert_eq!(entries.len(), WRITERS, "{n}: round {round}");
        let first = &entries[0].1;
        assert_eq!(first.revision, (round + 1) * WRITERS as u64, "{n}: round {round}: one revision per batch");
        for (key, value) in &entries {
            assert_eq!(value, first, "{n}: round {round}: {key:?} is from the same batch as {:?}", entries[0].0);
        }
    }
    Outcome::Passed
}

/// Every acknowledged write (puts, batches, deletes, concurrent puts) is
/// present after a reopen, with its revision; a failed batch or put is
/// absent; revisions carry on from where they were. Skipped, and reported,
/// for a backend that is not durable by design.
pub async fn durability<B: Backend>(backend: &B) -> Outcome {
    const CONCURRENT: usize = 32;
    let (s, location) = backend.fresh().await;
    let n = backend.name();
    s.put(b"a", b"1", Expect::Absent).await.unwrap();
    s.put(b"a", b"2", Expect::Revision(1)).await.unwrap();
    s.apply(vec![put_op("b", "b", Expect::Absent), put_op("c", "c", Expect::Absent), put_op("gone", "x", Expect::Any)])
        .await
        .unwrap();
    s.delete(b"gone", Expect::Revision(1)).await.unwrap();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.put(format!("many/{i:02}").as_bytes(), b"m", Expect::Absent).await.unwrap() })
        })
        .collect();
    join_all(tasks).await;
    conflict(
        s.apply(vec![
            put_op("ghost", "g", Expect::Absent),
            Op::Delete { key: b"b".to_vec(), expect: Expect::Any },
            put_op("a", "x", Expect::Absent),
        ])
        .await,
        n,
        "the batch meant to fail",
    );
    conflict(s.put(b"c", b"x", Expect::Revision(9)).await, n, "the put meant to fail");

    let mut expected = vec![kv("a", 2, "2"), kv("b", 1, "b"), kv("c", 1, "c")];
    expected.extend((0..CONCURRENT).map(|i| kv(&format!("many/{i:02}"), 1, "m")));
    assert_eq!(s.list(b"").await.unwrap(), expected, "{n}: before reopening");

    let Some(s) = backend.reopen(s, &location).await else {
        return Outcome::Skipped(
            "the backend is not durable by design (reopen returned None); every write above was checked before the \
             reopen, only the check after it did not run",
        );
    };
    assert_eq!(s.list(b"").await.unwrap(), expected, "{n}: every acknowledged write, and nothing else, after reopen");
    assert_eq!(s.get(b"ghost").await.unwrap(), None, "{n}: the failed batch is absent after reopen");
    conflict(s.put(b"a", b"x", Expect::Revision(1)).await, n, "a stale revision after reopen");
    assert_eq!(s.put(b"a", b"3", Expect::Revision(2)).await.unwrap(), 3, "{n}: revisions carry on after reopen");

    let s = backend.reopen(s, &location).await.expect("a backend that reopened once reopens again");
    assert_eq!(s.get(b"a").await.unwrap(), Some(v(3, b"3")), "{n}: a write after a reopen survives the next");
    Outcome::Passed
}

fn v(revision: u64, value: &[u8]) -> Versioned {
    Versioned { revision, value: value.to_vec() }
}

fn kv(key: &str, revision: u64, value: &str) -> (Vec<u8>, Versioned) {
    (key.as_bytes().to_vec(), v(revision, value.as_bytes()))
}

fn put_op(key: &str, value: &str, expect: Expect) -> Op {
    Op::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), expect }
}

fn keys(entries: Vec<(Vec<u8>, Versioned)>) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(k, _)| k).collect()
}

fn strs(keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.as_bytes().to_vec()).collect()
}

fn counter(value: &[u8]) -> u64 {
    u64::from_be_bytes(value.try_into().expect("a counter is 8 bytes"))
}

#[track_caller]
fn conflict<T: Debug>(result: Result<T, StoreError>, backend: &str, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{backend}: {what}: expected Conflict, got {other:?}"),
    }
}

/// Awaits every task; a task's panic becomes this one's, with its message.
async fn join_all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(value) => out.push(value),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task did not finish: {e}"),
        }
    }
    out
}
