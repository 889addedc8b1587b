//! `verify_tenant` throughput on 200k events. Run in release mode:
//! `cargo test --release -p bitacora-log --test throughput -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use bitacora_log::{VerifyOptions, checkpoint_tenant, verify_tenant};
use bitacora_store::Store;
use common::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run in release mode"]
async fn verify_200k_events() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for from in (0..N).step_by(20_000) {
        append(store.as_ref(), "acme", from, from + 20_000).await;
        checkpoint_tenant(store.as_ref(), &signer(), &tenant("acme"), 1)
            .await
            .unwrap();
    }
    let opts = VerifyOptions {
        unsigned_grace: Duration::ZERO,
        ..VerifyOptions::default()
    };
    for _ in 0..2 {
        let start = Instant::now();
        let report = verify_tenant(
            store.as_ref(),
            &tenant("acme"),
            &verifiers(),
            &opts,
            |_, _| {},
        )
        .await
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(report.is_intact(), "{}", report.summary());
        println!(
            "verify: {} events in {secs:.3} s = {:.0} events/s",
            report.events,
            report.events as f64 / secs
        );
    }
    // Where the time goes: the row checks (one connection, page by page) and the summaries.
    let start = Instant::now();
    let mut from = 0;
    while from < N {
        let page = store
            .check_leaves(&tenant("acme"), from, 16_384)
            .await
            .unwrap();
        assert!(page.iter().all(|c| c.index.is_none()));
        from += page.len() as u64;
    }
    println!(
        "check_leaves, one connection: {:.3} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    assert!(
        store
            .check_summaries(&tenant("acme"))
            .await
            .unwrap()
            .is_none()
    );
    println!("check_summaries: {:.3} s", start.elapsed().as_secs_f64());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run in release mode"]
async fn phases() {
    use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), "acme", 0, N).await;
    store.close().await.unwrap();
    let store = open(dir.path());
    let start = Instant::now();
    let mut after = None;
    let mut all = Vec::new();
    loop {
        let q = EventQuery {
            tenant: tenant("acme"),
            filter: EventFilter::default(),
            order: Order::Asc,
            page: Pagination::Cursor {
                limit: 16384,
                after,
            },
        };
        let r = store.search(&q).await.unwrap();
        all.extend(r.events);
        after = r.next_after;
        if after.is_none() {
            break;
        }
    }
    println!("search: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for e in &all {
        std::hint::black_box(bitacora_core::canonical::leaf_hash(e.body.as_bytes()));
    }
    println!("hash: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for e in &all {
        std::hint::black_box(serde_json::from_str::<bitacora_core::Event>(&e.body).unwrap());
    }
    println!("parse Event: {:.3} s", start.elapsed().as_secs_f64());
    #[derive(serde::Deserialize)]
    struct T<'a> {
        #[serde(borrow)]
        tenant: &'a str,
    }
    let start = Instant::now();
    for e in &all {
        std::hint::black_box(serde_json::from_str::<T>(&e.body).unwrap().tenant);
    }
    println!("parse tenant: {:.3} s", start.elapsed().as_secs_f64());
    let ids: Vec<_> = (0..N / 16)
        .map(|i| bitacora_core::merkle::NodeId::new(4, i))
        .collect();
    let start = Instant::now();
    store.tree_nodes(&tenant("acme"), &ids).await.unwrap();
    println!(
        "tree_nodes x{}: {:.3} s",
        ids.len(),
        start.elapsed().as_secs_f64()
    );
    println!("body len {}", all[5].body.len());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run in release mode"]
async fn raw_sqlite_scan() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), "acme", 0, N).await;
    store.close().await.unwrap();
    let c = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        let mut stmt = c
            .prepare(
                "SELECT pos, leaf_hash, body FROM events WHERE pos BETWEEN ?1 AND ?2 ORDER BY pos",
            )
            .unwrap();
        let mut n = 0usize;
        let mut rows = stmt.query([1i64 << 40, (2i64 << 40) - 1]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let b: String = r.get(2).unwrap();
            n += b.len();
        }
        println!(
            "raw scan: {:.3} s ({n} bytes)",
            start.elapsed().as_secs_f64()
        );
    }
    let sql = "EXPLAIN QUERY PLAN SELECT e.pos, e.leaf_hash, e.body FROM events e WHERE e.pos BETWEEN ?1 AND ?2 AND e.pos > ?3 ORDER BY e.pos ASC LIMIT 16385";
    let mut stmt = c.prepare(sql).unwrap();
    let plan: Vec<String> = stmt
        .query_map([1i64 << 40, (2i64 << 40) - 1, 5], |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    println!("plan: {plan:?}");
    let start = Instant::now();
    let mut after = 1i64 << 40;
    let mut n = 0;
    loop {
        let mut stmt = c.prepare_cached("SELECT e.pos, e.leaf_hash, e.body FROM events e WHERE e.pos BETWEEN ?1 AND ?2 AND e.pos > ?3 ORDER BY e.pos ASC LIMIT 16385").unwrap();
        let rows: Vec<(i64, Vec<u8>, String)> = stmt
            .query_map([1i64 << 40, (2i64 << 40) - 1, after], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if rows.len() < 16385 {
            n += rows.len();
            break;
        }
        after = rows[16383].0;
        n += 16384;
    }
    println!(
        "paged raw: {:.3} s ({n} rows)",
        start.elapsed().as_secs_f64()
    );
}
