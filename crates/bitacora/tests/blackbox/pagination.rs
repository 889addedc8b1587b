//! Cursor (keyset) and numbered pagination, and cursor walks that stay consistent while
//! events keep arriving.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bitacora_client::SearchParams;
use bitacora_core::Order;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_cover_everything_once() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("pg", "c", 25))
        .await
        .unwrap();
    for order in [Order::Desc, Order::Asc] {
        let mut params = SearchParams::new().tenant("pg").limit(10).order(order);
        let mut sizes = Vec::new();
        let mut seqs = Vec::new();
        loop {
            let page = app.client.search(&params).await.unwrap();
            assert!(page.total.is_none(), "cursor pages carry no total");
            sizes.push(page.events.len());
            seqs.extend(page.events.iter().map(|e| e.seq.unwrap()));
            match page.next_cursor {
                Some(c) => params = params.cursor(c),
                None => break,
            }
            assert!(sizes.len() < 10, "the walk does not end");
        }
        let mut expected: Vec<u64> = (0..25).collect();
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(seqs, expected, "{order:?}");
        assert_eq!(&sizes[..3], &[10, 10, 5], "{order:?}: {sizes:?}");
    }
    // The default page is 50; limit 1000 is accepted.
    let page = app
        .client
        .search(&SearchParams::new().tenant("pg"))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 25);
    assert!(page.next_cursor.is_none());
    app.client
        .search(&SearchParams::new().tenant("pg").limit(1000))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_with_a_filter() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("pf", "f", 40))
        .await
        .unwrap();
    // actor ids cycle u0..u6: u3 is at 3, 10, 17, 24, 31, 38.
    let params = SearchParams::new().tenant("pf").actor_id("u3").limit(2);
    let got = ids(&app.client, params).await;
    assert_eq!(got, vec!["f-38", "f-31", "f-24", "f-17", "f-10", "f-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_pages_have_exact_totals() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("pn", "n", 25))
        .await
        .unwrap();
    let page = |n: u32, per: u32| SearchParams::new().tenant("pn").page(n).per_page(per);

    let p3 = app.client.search(&page(3, 10)).await.unwrap();
    assert_eq!(p3.events.len(), 5);
    assert_eq!(
        (p3.total, p3.page, p3.per_page, p3.total_pages),
        (Some(25), Some(3), Some(10), Some(3))
    );
    assert_eq!(p3.total_exact, Some(true));
    assert_eq!(
        p3.events[0].id, "n-4",
        "page 3 of newest-first starts at the 21st newest"
    );

    let p1 = app
        .client
        .search(&page(1, 10).order(Order::Asc))
        .await
        .unwrap();
    assert_eq!(
        p1.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>()[..3],
        ["n-0", "n-1", "n-2"]
    );
    assert_eq!(p1.total, Some(25));

    let past = app.client.search(&page(4, 10)).await.unwrap();
    assert!(past.events.is_empty());
    assert_eq!(past.total, Some(25));

    // Totals are exact with filters too: u3 appears at 3, 10, 17, 24.
    let f = app.client.search(&page(1, 3).actor_id("u3")).await.unwrap();
    assert_eq!(
        (f.total, f.total_pages, f.events.len()),
        (Some(4), Some(2), 3)
    );
    assert_eq!(
        f.total_exact,
        Some(true),
        "counted within the default budget"
    );
    let one = app
        .client
        .search(&SearchParams::new().tenant("pn").page(1))
        .await
        .unwrap();
    assert_eq!((one.per_page, one.total), (Some(50), Some(25)));
}

/// A server whose budget is spent before counting (`store.total_budget_ms = 0`) estimates
/// the totals it keeps no counter for and says so with `total_exact: false`, still serves
/// exact pages, and knows the exact total on the last page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_over_budget_are_flagged_estimates() {
    const N: usize = 20_000;
    let app = spawn_app_with(|c| c.store.total_budget_ms = 0).await;
    for chunk in numbered("pe", "e", N).chunks(5_000) {
        app.client.send_batch(chunk).await.unwrap();
    }
    let page = |n: u32, per: u32| SearchParams::new().tenant("pe").page(n).per_page(per);

    // No filter: the tenant's size, exact.
    let all = app.client.search(&page(1, 10)).await.unwrap();
    assert_eq!((all.total, all.total_exact), (Some(N as u64), Some(true)));

    // actor ids cycle u0..u6: one event in seven is u3's, the newest 19,995.
    let want = (0..N).filter(|i| i % 7 == 3).count() as u64;
    let f = app.client.search(&page(2, 2).actor_id("u3")).await.unwrap();
    assert_eq!(
        f.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e-19981", "e-19974"]
    );
    assert_eq!(f.total_exact, Some(false));
    let total = f.total.unwrap();
    assert!(
        total.abs_diff(want) * 10 <= want * 3,
        "estimate {total} of {want}"
    );
    assert_eq!(f.total_pages, Some(total.div_ceil(2)));

    // The raw JSON carries the flag beside the total; the last page's total is exact.
    let per_page = 1_000;
    let last = want.div_ceil(per_page);
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/events?tenant=pe&actor_id=u3&page={last}&per_page={per_page}",
            app.base_url()
        ))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["total_exact"], true);
    assert_eq!(raw["total"], want);
    assert_eq!(
        raw["events"].as_array().unwrap().len() as u64,
        want - (last - 1) * per_page
    );
}

/// Walks every page with a cursor while another task ingests into the same tenant: each event
/// that existed when the walk started is seen exactly once, and nothing is seen twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_walk_is_consistent_while_ingest_runs() {
    let app = spawn_app().await;
    let initial = numbered("live", "init", 600);
    for chunk in initial.chunks(200) {
        app.client.send_batch(chunk).await.unwrap();
    }
    let initial_ids: HashSet<String> = (0..600).map(|i| format!("init-{i}")).collect();

    for order in [Order::Desc, Order::Asc] {
        let running = Arc::new(AtomicBool::new(true));
        let progress = Arc::new(AtomicUsize::new(0));
        let writer = {
            let client = app.client.clone();
            let running = running.clone();
            let progress = progress.clone();
            let tag = format!("{order:?}");
            tokio::spawn(async move {
                let mut n = 0usize;
                // Bounded, so an ascending walk (which sees new events) ends.
                while running.load(Ordering::Relaxed) && n < 1500 {
                    let batch: Vec<_> = numbered("live", &format!("new-{tag}-{n}"), 5);
                    client.send_batch(&batch).await.unwrap();
                    n += 5;
                    progress.store(n, Ordering::Relaxed);
                }
                n
            })
        };
        // The walk starts once the writer is demonstrably running.
        while progress.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let mut params = SearchParams::new().tenant("live").limit(10).order(order);
        let mut seen: Vec<String> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        loop {
            let page = app.client.search(&params).await.unwrap();
            seen.extend(page.events.iter().map(|e| e.id.clone()));
            seqs.extend(page.events.iter().map(|e| e.seq.unwrap()));
            match page.next_cursor {
                Some(c) => params = params.cursor(c),
                None => break,
            }
            // Give the writer a chance between pages.
            tokio::task::yield_now().await;
        }
        running.store(false, Ordering::Relaxed);
        let written = writer.await.unwrap();

        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{order:?}: an event was repeated");
        for id in &initial_ids {
            assert!(unique.contains(id), "{order:?}: {id} was skipped");
        }
        let monotonic = seqs.windows(2).all(|w| match order {
            Order::Desc => w[0] > w[1],
            Order::Asc => w[0] < w[1],
        });
        assert!(monotonic, "{order:?}: seqs out of order");
        let during = written - 5;
        eprintln!(
            "{order:?}: walked {} events while {during} more arrived",
            seen.len()
        );
        assert!(during > 0, "the writer ran during the walk");
    }
}
