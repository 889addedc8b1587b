//! One event by id, and the summaries: actions, actors, stats, a record's history.

use bitacora_core::api::Stats;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_by_id_returns_what_was_sent_with_seq_and_leaf_hash() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let e = app.client.event("role-1", Some(SEED_TENANT)).await.unwrap();
    assert_eq!(e.seq, Some(0));
    assert_eq!(e.action, "user.role_change");
    assert_eq!(e.category, "users");
    assert_eq!(e.severity.as_str(), "critical");
    assert_eq!(
        e.target.as_ref().unwrap().name.as_deref(),
        Some("Juan Pérez")
    );
    assert_eq!(e.changes[0].field, "role");
    assert_eq!(e.changes[0].old, Some(serde_json::json!("user")));
    assert_eq!(e.changes[0].new, Some(serde_json::json!("admin")));
    assert_eq!(e.context.request_id.as_deref(), Some("r-1"));
    assert_eq!(e.metadata["reason"], "Solicitud administrativa manual");
    assert_eq!(e.leaf_hash.as_ref().map(String::len), Some(64));

    // An offset is normalized to UTC.
    let dev2 = app.client.event("dev-2", Some(SEED_TENANT)).await.unwrap();
    assert_eq!(dev2.occurred_at.to_rfc3339(), "2026-01-22T16:30:00+00:00");
    // A null old value stays null (not absent).
    let ban = app.client.event("ban-1", Some(SEED_TENANT)).await.unwrap();
    assert_eq!(ban.changes[1].old, Some(serde_json::Value::Null));

    // Ids are per tenant: role-1 is not in acme, and the default tenant is `default`.
    assert_api_error(app.client.event("role-1", Some("acme")).await, 404, None);
    assert_api_error(app.client.event("role-1", None).await, 404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_lists_each_with_category_and_count() {
    let app = spawn_app().await;
    seed(&app.client).await;
    app.client
        .send_batch(&numbered(SEED_TENANT, "more", 3))
        .await
        .unwrap();
    let list = app.client.actions(Some(SEED_TENANT)).await.unwrap().actions;
    let find = |a: &str| {
        list.iter()
            .find(|s| s.action == a)
            .unwrap_or_else(|| panic!("{a} in {list:?}"))
    };
    assert_eq!(
        (
            find("item.touch").category.as_str(),
            find("item.touch").count
        ),
        ("item", 3)
    );
    assert_eq!(
        (
            find("user.role_change").category.as_str(),
            find("user.role_change").count
        ),
        ("users", 1)
    );
    assert_eq!(find("ROLE_CHANGE").category, "ROLE");
    assert_eq!(find("device.disable").category, "device");
    assert_eq!(list.len(), 10, "{list:?}");
    assert_eq!(list[0].action, "item.touch", "most frequent first");
    // Another tenant has its own.
    let acme = app.client.actions(Some("acme")).await.unwrap().actions;
    assert_eq!(acme.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_lists_each_with_count_and_last_seen() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let list = app.client.actors(Some(SEED_TENANT)).await.unwrap().actors;
    let find = |id: &str| {
        list.iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("{id} in {list:?}"))
    };
    let admin = find("42");
    assert_eq!(admin.count, 2);
    assert_eq!(admin.name.as_deref(), Some("admin"));
    assert_eq!(admin.email.as_deref(), Some("admin@example.com"));
    assert!(
        admin.last_seen.starts_with("2026-01-23T07:00:00"),
        "{admin:?}"
    );
    assert_eq!(find("15").count, 3);
    assert_eq!(find("7").count, 2);
    assert_eq!(
        list.len(),
        3,
        "actors without an id are not listed: {list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_in_a_window() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let s: Stats = app
        .client
        .stats_in(Some(SEED_TENANT), Some("2026-01-01"), Some("2026-01-31"))
        .await
        .unwrap();
    assert_eq!(s.tenant, SEED_TENANT);
    assert_eq!(s.total, 9);
    let day = |d: &str| s.per_day.iter().find(|c| c.day == d).map(|c| c.count);
    assert_eq!(day("2026-01-21"), Some(2));
    assert_eq!(day("2026-01-22"), Some(2));
    assert_eq!(day("2026-01-23"), Some(2));
    assert_eq!(s.per_day.iter().map(|c| c.count).sum::<u64>(), 9);
    let key = |list: &[bitacora_core::api::KeyCount], k: &str| {
        list.iter().find(|c| c.key == k).map(|c| c.count)
    };
    assert_eq!(key(&s.per_category, "device"), Some(2));
    assert_eq!(key(&s.per_category, "user"), Some(2));
    assert_eq!(key(&s.per_outcome, "failure"), Some(2));
    let sev = |name: &str| {
        s.per_severity
            .iter()
            .find(|c| c.severity.as_str() == name)
            .map(|c| c.count)
    };
    assert_eq!(sev("critical"), Some(1));
    assert_eq!(sev("high"), Some(3));
    assert_eq!(key(&s.top_ips, "10.0.2.45"), Some(2));
    assert_eq!(
        s.top_actors.iter().find(|a| a.id == "15").map(|a| a.count),
        Some(3)
    );
    assert_eq!(
        s.without_actor, 2,
        "login-fail-1 (no actor id) and login-fail-2 (no actor)"
    );

    // A narrower window.
    let s = app
        .client
        .stats_in(Some(SEED_TENANT), Some("2026-01-21"), Some("2026-01-22"))
        .await
        .unwrap();
    // A bare `until` date includes that whole day, as in the search filters.
    assert_eq!(s.total, 4, "{s:?}");
    assert_api_error(
        app.client
            .stats_in(Some(SEED_TENANT), Some("yesterday"), None)
            .await,
        400,
        Some("since"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_every_event_on_one_record_oldest_first() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let h = app
        .client
        .history_in(Some(SEED_TENANT), "user", "456")
        .await
        .unwrap();
    let ids: Vec<_> = h.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["role-1", "role-2"]);
    assert_eq!(h.events[1].changes[0].new, Some(serde_json::json!("Admin")));
    let d = app
        .client
        .history_in(Some(SEED_TENANT), "device", "SW-01")
        .await
        .unwrap();
    assert_eq!(d.events.len(), 2);
    assert!(
        app.client
            .history_in(Some(SEED_TENANT), "user", "nobody")
            .await
            .unwrap()
            .events
            .is_empty()
    );
    // The credential's tenant by default (`default` for an unpinned key).
    assert!(
        app.client
            .history("user", "456")
            .await
            .unwrap()
            .events
            .is_empty()
    );
}
