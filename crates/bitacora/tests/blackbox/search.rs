//! Every search filter of CONTRACT §3 alone and in combinations, on the seed scenarios.
//! Results are newest first (by `seq`) unless `order=asc`.

use bitacora_client::SearchParams;
use bitacora_core::Order;

use crate::common::*;

fn p() -> SearchParams {
    SearchParams::new()
}

/// Runs each `(params, expected ids)` case against one seeded server.
async fn check(app: &TestApp, cases: Vec<(SearchParams, Vec<&str>)>) {
    for (params, expected) in cases {
        let got = ids(&app.client, params.clone()).await;
        assert_eq!(
            got,
            expected,
            "search {:?}",
            params.pairs().collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_alone() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            // No filter: the whole tenant, newest first.
            (
                p(),
                vec![
                    "audit-1",
                    "login-fail-2",
                    "login-fail-1",
                    "login-1",
                    "dev-2",
                    "dev-1",
                    "ban-1",
                    "role-2",
                    "role-1",
                ],
            ),
            (p().tenant("acme"), vec!["acme-1"]),
            (p().action("user.role_change"), vec!["role-1"]),
            (p().action("ROLE_CHANGE,BAN_USER"), vec!["ban-1", "role-2"]),
            (
                p().action("user.*"),
                vec!["login-fail-1", "login-1", "role-1"],
            ),
            (
                p().action("device.*,auth_failed"),
                vec!["login-fail-2", "dev-2", "dev-1"],
            ),
            (p().action("nope"), vec![]),
            (p().category("device"), vec!["dev-2", "dev-1"]),
            (p().category("ROLE"), vec!["role-2"]),
            (p().category("users,reports"), vec!["audit-1", "role-1"]),
            (p().severity("critical"), vec!["role-1"]),
            (
                p().severity("high,critical"),
                vec!["login-fail-2", "ban-1", "role-2", "role-1"],
            ),
            (
                p().min_severity("high"),
                vec!["login-fail-2", "ban-1", "role-2", "role-1"],
            ),
            (
                p().min_severity("medium"),
                vec![
                    "login-fail-2",
                    "login-fail-1",
                    "dev-2",
                    "ban-1",
                    "role-2",
                    "role-1",
                ],
            ),
            (p().outcome("failure"), vec!["login-fail-2", "login-fail-1"]),
            (p().actor_id("7"), vec!["ban-1", "role-2"]),
            (p().actor_id("4"), vec![]),
            (p().target_type("device"), vec!["dev-2", "dev-1"]),
            (p().target_id("456"), vec!["role-2", "role-1"]),
            (p().source("admin_panel"), vec!["ban-1", "role-1"]),
            (p().source("cron"), vec!["audit-1"]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_is_a_case_insensitive_part_of_name_or_email() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            (p().actor("ADMIN"), vec!["login-1", "role-1"]),
            (p().actor("torres@"), vec!["audit-1", "dev-2", "dev-1"]),
            (p().actor("nEXo"), vec!["ban-1", "role-2"]),
            // The actor, not the target: role-1's target is also Juan Pérez.
            (p().actor("juan"), vec!["login-fail-1"]),
            (p().actor("Pérez"), vec!["login-fail-1"]),
            (p().actor("nobody"), vec![]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_matches_an_address_or_a_cidr_block_v4_and_v6() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            (p().ip("10.0.2.45"), vec!["ban-1", "role-2"]),
            (p().ip("10.0.2.0/24"), vec!["audit-1", "ban-1", "role-2"]),
            (p().ip("10.0.0.0/8"), vec!["audit-1", "ban-1", "role-2"]),
            (p().ip("172.16.0.0/12"), vec!["dev-2", "dev-1"]),
            (p().ip("192.168.1.100/32"), vec!["role-1"]),
            (
                p().ip("0.0.0.0/0"),
                vec![
                    "audit-1",
                    "login-fail-2",
                    "dev-2",
                    "dev-1",
                    "ban-1",
                    "role-2",
                    "role-1",
                ],
            ),
            (p().ip("::ffff:10.0.2.45"), vec!["ban-1", "role-2"]),
            (p().ip("2001:db8::1"), vec!["login-1"]),
            (p().ip("2001:db8::/32"), vec!["login-fail-1", "login-1"]),
            (p().ip("2001:db8:0:1::/64"), vec!["login-fail-1"]),
            (p().ip("2001:db9::/32"), vec![]),
            (p().ip("10.0.2.44"), vec![]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_until_take_dates_and_rfc3339() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            (
                p().since("2026-01-22"),
                vec![
                    "audit-1",
                    "login-fail-2",
                    "login-fail-1",
                    "login-1",
                    "dev-2",
                    "dev-1",
                ],
            ),
            // A bare `until` date includes that whole day (ban-1 is at 15:45).
            (p().until("2026-01-21"), vec!["ban-1", "role-2", "role-1"]),
            // ... up to 23:59:59 (login-fail-1), not the next midnight (login-fail-2).
            (
                p().since("2026-01-23").until("2026-01-23"),
                vec!["login-fail-1", "login-1"],
            ),
            // RFC 3339 bounds are inclusive instants.
            (
                p().since("2026-01-21T09:00:00Z")
                    .until("2026-01-21T15:45:00Z"),
                vec!["ban-1", "role-2"],
            ),
            (
                p().since("2026-01-21T09:00:00.000001Z")
                    .until("2026-01-21T15:44:59Z"),
                vec![],
            ),
            // Offsets are honoured: 18:00+02:00 is 16:00Z; dev-2 happened at 16:30Z.
            (
                p().since("2026-01-22T18:00:00+02:00")
                    .until("2026-01-22T23:00:00Z"),
                vec!["dev-2"],
            ),
            (p().until("2026-01-19"), vec![]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_asc_is_by_seq() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            (
                p().order(Order::Asc),
                vec![
                    "role-1",
                    "role-2",
                    "ban-1",
                    "dev-1",
                    "dev-2",
                    "login-1",
                    "login-fail-1",
                    "login-fail-2",
                    "audit-1",
                ],
            ),
            (
                p().order(Order::Asc).action("user.*"),
                vec!["role-1", "login-1", "login-fail-1"],
            ),
            (
                p().order(Order::Desc).action("user.*"),
                vec!["login-fail-1", "login-1", "role-1"],
            ),
        ],
    )
    .await;
    let page = app
        .client
        .search(&p().tenant(SEED_TENANT).order(Order::Asc).limit(3))
        .await
        .unwrap();
    let seqs: Vec<_> = page.events.iter().map(|e| e.seq.unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_folds_case_and_diacritics() {
    let app = spawn_app().await;
    seed(&app.client).await;
    // Full text may trail ingest by up to a second: poll with a deadline.
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("auditoria", vec!["audit-1"]),
        ("AUDITORÍA", vec!["audit-1"]),
        ("mantenimiento", vec!["dev-2"]), // metadata
        ("spam", vec!["ban-1"]),          // a change's new value
        ("perez", vec!["login-fail-1", "role-2", "role-1"]), // actor and target names
        ("Nexo", vec!["ban-1", "role-2"]), // actor name
        ("solicitud administrativa", vec!["role-2", "role-1"]), // all terms required
        ("solicitud spam", vec![]),
        ("sesión", vec!["login-1"]),
        ("\"OR\" 1=1 --", vec![]), // query syntax is just text
    ];
    for (q, expected) in cases {
        eventually(&format!("q={q}"), || {
            let client = app.client.clone();
            let expected = expected.clone();
            async move {
                let got = ids(&client, p().q(q)).await;
                if got == expected {
                    Ok(())
                } else {
                    Err(format!("got {got:?}, want {expected:?}"))
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_with_and() {
    let app = spawn_app().await;
    seed(&app.client).await;
    check(
        &app,
        vec![
            (
                p().action("user.*").outcome("failure"),
                vec!["login-fail-1"],
            ),
            (
                p().actor_id("7").since("2026-01-21T12:00:00Z"),
                vec!["ban-1"],
            ),
            (
                p().ip("10.0.0.0/8").min_severity("high").order(Order::Asc),
                vec!["role-2", "ban-1"],
            ),
            (
                p().target_type("user").target_id("456").until("2026-01-20"),
                vec!["role-1"],
            ),
            (p().category("device").severity("medium"), vec!["dev-2"]),
            (
                p().source("web").outcome("success").ip("2001:db8::/32"),
                vec!["login-1"],
            ),
            (p().actor("admin").action("user.login"), vec!["login-1"]),
            (
                p().severity("low,critical").min_severity("medium"),
                vec!["role-1"],
            ),
        ],
    )
    .await;
    eventually("q with filters", || {
        let client = app.client.clone();
        async move {
            let got = ids(&client, p().category("device").q("mantenimiento")).await;
            let got2 = ids(&client, p().q("perez").actor_id("42")).await;
            if got == ["dev-2"] && got2 == ["role-1"] {
                Ok(())
            } else {
                Err(format!("{got:?} {got2:?}"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_separate_logs() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let acme = app.client.search(&p().tenant("acme")).await.unwrap();
    assert_eq!(acme.events.len(), 1);
    assert_eq!(
        acme.events[0].seq,
        Some(0),
        "each tenant's log starts at seq 0"
    );
    assert!(ids(&app.client, p().tenant("nobody")).await.is_empty());
}
