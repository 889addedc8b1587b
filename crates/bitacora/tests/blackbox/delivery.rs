//! Alerts and streaming (CONTRACT §10, issue 17) against real receivers: a webhook receiver
//! that verifies every signature with the reference Standard Webhooks library
//! (`webhook_receiver.py`, PyPI `standardwebhooks`) and fails on cue, also standing in for
//! Slack and Splunk HEC. The server is the real binary, so it can be killed with `kill -9`.
//! Without `python3` and `standardwebhooks` these tests fail (they never skip).

use std::time::{Duration, Instant};

use bitacora_client::Client;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::receiver::{Receiver, check_in_order};
use crate::common::{self, data_folder, numbered, spawn_binary_with};

/// A data folder and a config that allows local receivers and retries quickly.
pub(crate) fn setup() -> (tempfile::TempDir, String) {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("bitacora.toml");
    std::fs::write(
        &config,
        "[delivery]\nallow_private_destinations = true\npoll_interval_ms = 50\n\
         timeout_secs = 2\nmax_backoff_secs = 1\nmax_batch = 50\n",
    )
    .unwrap();
    (root, config.display().to_string())
}

pub(crate) async fn post(client: &Client, path: &str, body: Value) -> (u16, Value) {
    let r = client
        .request(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn get(client: &Client, path: &str) -> Value {
    let r = client.request(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits (up to `limit`) for `check` to hold.
pub(crate) async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn stream_destination(client: &Client, receiver: &Receiver) -> Value {
    let (status, d) = post(
        client,
        "/v1/destinations",
        json!({"name": "siem", "kind": "webhook", "tenant": "acme", "url": receiver.url("/hook"),
               "stream": true, "filter": {"action": "item.*"}}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    assert!(d["secret"].as_str().unwrap().starts_with("whsec_"));
    receiver.control(json!({"secret": d["secret"]})).await;
    d
}

#[tokio::test]
async fn a_stream_reaches_a_failing_receiver_in_order_with_verified_signatures() {
    common::init_test_log();
    let receiver = Receiver::start();
    let (root, config) = setup();
    let app = spawn_binary_with(&data_folder(root.path()), &["--config", &config]).await;
    let d = stream_destination(&app.client, &receiver).await;
    // The failures Kubernetes, GitLab and Falco users lost events to: 502, 500, throttling
    // with Retry-After, and a receiver that never answers (timeout 2 s).
    receiver
        .control(json!({"queue": ["502", "500", "503:1", "429:1", "hang", "502"]}))
        .await;
    let events = numbered("acme", "s", 120);
    app.client.send_batch(&events).await.unwrap();
    // Unmatched events in between are passed over, not delivered.
    app.client
        .send(&common::event(
            json!({"tenant": "acme", "action": "other.thing"}),
        ))
        .await
        .unwrap();
    app.client
        .send_batch(&numbered("acme", "t", 30))
        .await
        .unwrap();

    wait_for("every event delivered", Duration::from_secs(60), || async {
        let n = check_in_order(&receiver.accepted("/hook").await).len();
        if n == 150 {
            Ok(())
        } else {
            Err(format!("{n} of 150"))
        }
    })
    .await;
    let received = receiver.received().await;
    assert_eq!(received["bad_signatures"], 0, "{received}");
    let ids = check_in_order(&receiver.accepted("/hook").await);
    let expected: Vec<String> = (0..120)
        .map(|i| format!("s-{i}"))
        .chain((0..30).map(|i| format!("t-{i}")))
        .collect();
    assert_eq!(ids, expected);
    // Each delivery names its tenant and carries the event as GET /v1/events/{id} does.
    let first = &receiver.accepted("/hook").await[0];
    assert_eq!(first["payload"]["tenant"], "acme");
    let event = &first["payload"]["events"][0];
    assert_eq!(event["tenant"], "acme");
    assert!(event["leaf_hash"].is_string());
    // The webhook-id of the batch that failed six times is the one finally accepted.
    let attempts = received["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["cue"], "502");
    let failed_id = attempts[0]["webhook_id"].as_str().unwrap();
    assert!(
        attempts[..6].iter().all(|a| a["webhook_id"] == failed_id),
        "{attempts:?}"
    );
    assert_eq!(first["webhook_id"], failed_id);

    // The health shows the position, no lag, the last success and the last error.
    let list = get(&app.client, "/v1/destinations").await;
    let dest = list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == d["id"])
        .unwrap()
        .clone();
    assert!(dest.get("secret").is_none(), "{dest}");
    let health = &dest["health"].as_array().unwrap()[0];
    assert_eq!(health["tenant"], "acme");
    assert_eq!(health["lag"], 0, "{health}");
    assert!(health["last_success_at"].is_string());
    assert!(
        health["last_error"].as_str().unwrap().contains("502"),
        "{health}"
    );
    let metrics = app
        .client
        .request_without_key(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bitacora_delivery_delivered_total"),
        "{metrics}"
    );
    assert!(metrics.contains("bitacora_delivery_failed_total"));
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing_after_a_restart() {
    common::init_test_log();
    let receiver = Receiver::start();
    let (root, config) = setup();
    let data = data_folder(root.path());
    let mut app = spawn_binary_with(&data, &["--config", &config]).await;
    stream_destination(&app.client, &receiver).await;
    // The receiver answers slowly (a hang ends with the 2 s timeout), so the server is killed
    // with a batch in flight.
    receiver
        .control(json!({"queue": ["hang", "hang", "hang", "hang"]}))
        .await;
    app.client
        .send_batch(&numbered("acme", "k", 300))
        .await
        .unwrap();
    wait_for("a delivery in flight", Duration::from_secs(20), || async {
        let n = receiver.received().await["attempts"]
            .as_array()
            .unwrap()
            .len();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} attempts"))
        }
    })
    .await;
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    drop(app);
    let app = spawn_binary_with(&data, &["--config", &config]).await;
    app.client
        .send_batch(&numbered("acme", "after", 20))
        .await
        .unwrap();
    wait_for(
        "every event delivered after the restart",
        Duration::from_secs(60),
        || async {
            let n = check_in_order(&receiver.accepted("/hook").await).len();
            if n == 320 {
                Ok(())
            } else {
                Err(format!("{n} of 320"))
            }
        },
    )
    .await;
    let ids = check_in_order(&receiver.accepted("/hook").await);
    assert_eq!(ids[0], "k-0");
    assert_eq!(ids[299], "k-299");
    assert_eq!(ids[319], "after-19");
    assert_eq!(receiver.received().await["bad_signatures"], 0);
}

#[tokio::test]
async fn a_410_disables_the_destination() {
    common::init_test_log();
    let receiver = Receiver::start();
    let (root, config) = setup();
    let app = spawn_binary_with(&data_folder(root.path()), &["--config", &config]).await;
    let d = stream_destination(&app.client, &receiver).await;
    receiver.control(json!({"queue": ["410"]})).await;
    app.client
        .send_batch(&numbered("acme", "g", 3))
        .await
        .unwrap();
    wait_for(
        "the destination disabled",
        Duration::from_secs(20),
        || async {
            let list = get(&app.client, "/v1/destinations").await;
            let dest = &list["destinations"][0];
            assert_eq!(dest["id"], d["id"]);
            match dest["disabled"].as_str() {
                Some(reason) if reason.contains("410") => Ok(()),
                _ => Err(dest.to_string()),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let attempts = receiver.received().await["attempts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(attempts, 1, "nothing is sent to a gone receiver");
    let ready = app
        .client
        .request_without_key(Method::GET, "/readyz")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ready["delivery"][0]["state"], "disabled", "{ready}");
}

#[tokio::test]
async fn alert_rules_fire_once_per_crossing_and_reach_webhook_slack_and_splunk() {
    common::init_test_log();
    let receiver = Receiver::start();
    let (root, config) = setup();
    let app = spawn_binary_with(&data_folder(root.path()), &["--config", &config]).await;
    let c = &app.client;
    let (_, hook) = post(
        c,
        "/v1/destinations",
        json!({"name": "alerts", "kind": "webhook", "url": receiver.url("/hook"), "format": "ocsf"}),
    )
    .await;
    receiver.control(json!({"secret": hook["secret"]})).await;
    let (_, slack) = post(
        c,
        "/v1/destinations",
        json!({"name": "chat", "kind": "slack", "url": receiver.url("/slack")}),
    )
    .await;
    let (status, hec) = post(
        c,
        "/v1/destinations",
        json!({"name": "splunk", "kind": "splunk_hec", "url": receiver.url("/hec"),
               "token": "test-token"}),
    )
    .await;
    assert_eq!(status, 201, "{hec}");
    let (status, brute) = post(
        c,
        "/v1/alert-rules",
        json!({"name": "Brute force <&> @here", "tenant": "acme",
               "match": {"action": "user.login", "outcome": "failure"},
               "threshold": {"count": 5, "window": "10m", "group_by": "actor.id"},
               "severity": "critical",
               "destinations": [hook["id"], slack["id"], hec["id"]]}),
    )
    .await;
    assert_eq!(status, 201, "{brute}");
    let (status, promo) = post(
        c,
        "/v1/alert-rules",
        json!({"name": "promoted to admin", "tenant": "acme",
               "match": {"action": "user.role_change", "changes": {"field": "role", "to": "admin"}},
               "destinations": [hook["id"]]}),
    )
    .await;
    assert_eq!(status, 201, "{promo}");

    let mut events = Vec::new();
    // Seven failures by one actor: one firing (the 5th), not one per failure after it.
    for _ in 0..7 {
        events.push(
            json!({"tenant": "acme", "action": "user.login", "outcome": "failure",
                           "actor": {"id": "42"}}),
        );
    }
    // Five failures without an actor: grouped under "none", not ignored.
    for _ in 0..5 {
        events.push(json!({"tenant": "acme", "action": "user.login", "outcome": "failure"}));
    }
    // Successes do not count.
    events.push(json!({"tenant": "acme", "action": "user.login", "actor": {"id": "42"}}));
    events.push(json!({"tenant": "acme", "action": "user.role_change",
                       "changes": [{"field": "role", "old": "user", "new": "admin"}]}));
    events.push(json!({"tenant": "acme", "action": "user.role_change",
                       "changes": [{"field": "role", "old": "admin", "new": "user"}]}));
    let events: Vec<_> = events.into_iter().map(common::event).collect();
    c.send_batch(&events).await.unwrap();

    wait_for(
        "three firings delivered",
        Duration::from_secs(30),
        || async {
            let hook_events: usize = receiver
                .accepted("/hook")
                .await
                .iter()
                .map(|d| d["payload"]["events"].as_array().unwrap().len())
                .sum();
            let hec: usize = receiver
                .accepted("/hec")
                .await
                .iter()
                .map(|d| d["payload"].as_array().unwrap().len())
                .sum();
            let slack = receiver.accepted("/slack").await.len();
            if hook_events >= 3 && hec >= 2 && slack >= 1 {
                Ok(())
            } else {
                Err(format!("hook {hook_events}, hec {hec}, slack {slack}"))
            }
        },
    )
    .await;
    // Later passes add nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alerts = get(c, "/v1/alerts?tenant=acme").await;
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    let mut groups: Vec<(String, String, usize)> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a["action"], "bitacora.alert.fired");
            let m = &a["metadata"];
            (
                m["rule_name"].as_str().unwrap().to_owned(),
                m["group"].as_str().unwrap().to_owned(),
                m["seqs"].as_array().unwrap().len(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            ("Brute force <&> @here".into(), "42".into(), 5),
            ("Brute force <&> @here".into(), "none".into(), 5),
            ("promoted to admin".into(), "none".into(), 1),
        ]
    );
    // The firing names the events that fired it, by seq.
    let brute_42 = alerts
        .iter()
        .find(|a| a["metadata"]["group"] == "42")
        .unwrap();
    assert_eq!(brute_42["severity"], "critical");
    let seqs: Vec<u64> = brute_42["metadata"]["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let page = get(c, "/v1/events?tenant=acme&order=asc&limit=1000").await;
    for s in &seqs {
        let e = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["seq"] == *s)
            .unwrap();
        assert_eq!(e["actor"]["id"], "42");
        assert_eq!(e["outcome"], "failure");
    }
    // OCSF to the webhook: the firings as API Activity with their uid and sequence.
    let hook: Vec<Value> = receiver
        .accepted("/hook")
        .await
        .iter()
        .flat_map(|d| d["payload"]["events"].as_array().unwrap().clone())
        .collect();
    assert!(
        hook.iter()
            .all(|e| e["class_uid"] == 6003 && e["metadata"]["uid"].is_string())
    );
    // Slack text is escaped: no mention or link markup gets through.
    let slack_text: String = receiver
        .accepted("/slack")
        .await
        .iter()
        .map(|d| d["payload"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        slack_text.contains("Brute force &lt;&amp;&gt; @here"),
        "{slack_text}"
    );
    assert!(!slack_text.contains("<&>"));
    let metrics = c
        .request_without_key(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bitacora_alert_rule_fired_total"),
        "{metrics}"
    );
    let rules = get(c, "/v1/alert-rules").await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn destinations_are_checked_and_private_addresses_refused() {
    common::init_test_log();
    // The default configuration: private destinations are not allowed.
    let app = common::spawn_app().await;
    let c = &app.client;
    for url in [
        "http://127.0.0.1:1/hook",
        "http://localhost/hook",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "https://[::ffff:127.0.0.1]/",
    ] {
        let (status, body) = post(
            c,
            "/v1/destinations",
            json!({"name": "x", "kind": "webhook", "url": url, "stream": true}),
        )
        .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{url}: {body}");
        assert_eq!(body["error"]["code"], "forbidden_destination", "{url}");
    }
    for (body, field) in [
        (
            json!({"name": "x", "kind": "gopher", "url": "https://93.184.216.34/"}),
            Some("kind"),
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "https://93.184.216.34/"}),
            Some("url"),
        ),
        (
            json!({"name": "x", "kind": "nats", "url": "https://93.184.216.34/"}),
            Some("url"),
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "ftp://93.184.216.34/"}),
            Some("url"),
        ),
        (
            json!({"name": "", "kind": "webhook", "url": "https://93.184.216.34/"}),
            Some("name"),
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "https://93.184.216.34/",
                "filter": {"limit": "3"}}),
            Some("filter.limit"),
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "https://93.184.216.34/", "extra": 1}),
            None,
        ),
    ] {
        let (status, reply) = post(c, "/v1/destinations", body.clone()).await;
        assert_eq!(status, 422, "{body}: {reply}");
        if let Some(f) = field {
            assert_eq!(reply["error"]["field"], f, "{body}: {reply}");
        }
    }
    let (status, _) = post(c, "/v1/destinations", json!([1])).await;
    assert_eq!(status, 400);
    // A public address is accepted. (Not a stream: only alert firings would go there, and
    // this test makes none.)
    let (status, d) = post(
        c,
        "/v1/destinations",
        json!({"name": "public", "kind": "webhook", "url": "https://93.184.216.34/in"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let (status, reply) = post(
        c,
        "/v1/alert-rules",
        json!({"name": "r", "match": {}, "destinations": ["nope"]}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["field"].as_str()),
        (422, Some("destinations[0]"))
    );
    let (status, reply) = post(
        c,
        "/v1/alert-rules",
        json!({"name": "r", "threshold": {"count": 0, "window": "1m"}}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["field"].as_str()),
        (422, Some("threshold.count"))
    );
    // Only admins manage destinations; readers see alerts.
    let (status, token) = post(c, "/v1/viewer-tokens", json!({"tenant": "default"})).await;
    assert_eq!(status, 201);
    let reader = c.with_api_key(token["token"].as_str().unwrap());
    let r = reader
        .request(Method::GET, "/v1/destinations")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reader
        .request(Method::GET, "/v1/alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Deleting: 204, then 404; both audited.
    let path = format!("/v1/destinations/{}", d["id"].as_str().unwrap());
    let r = c.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let audit = get(c, "/v1/events?action=bitacora.destination.*").await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
}

/// NATS JetStream (the machine's server at 127.0.0.1:4222, a stream of this test's own): each
/// event is published once, in order, with its id as `Nats-Msg-Id`, so JetStream deduplicates
/// a redelivery.
#[tokio::test]
async fn a_nats_stream_publishes_every_event_with_its_id_as_message_id() {
    common::init_test_log();
    let nats = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS with JetStream at 127.0.0.1:4222 (the delivery tests need it)");
    let js = async_nats::jetstream::new(nats);
    let unique = format!("{}", std::process::id() as u64 * 1_000_000 + rand_suffix());
    // On a NATS server shared with others, `BITACORA_TEST_NATS_PREFIX` keeps the stream's
    // name and subject to a prefix of one's own.
    let (name, subject) = match std::env::var("BITACORA_TEST_NATS_PREFIX") {
        Ok(p) => (
            format!("{p}_DELIVERY_{unique}"),
            format!("{p}.{unique}.events"),
        ),
        Err(_) => (
            format!("BITACORA_DELIVERY_{unique}"),
            format!("bitacora_test.{unique}.events"),
        ),
    };
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (root, config) = setup();
    let app = spawn_binary_with(&data_folder(root.path()), &["--config", &config]).await;
    let (status, d) = post(
        &app.client,
        "/v1/destinations",
        json!({"name": "nats", "kind": "nats", "tenant": "acme", "stream": true,
               "url": format!("nats://127.0.0.1:4222/{subject}"), "filter": {"action": "item.*"}}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    assert!(d.get("secret").is_none());
    app.client
        .send_batch(&numbered("acme", "n", 30))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = stream.info().await.unwrap().state.messages;
        if n >= 30 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of 30 messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for seq in 1..=30u64 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap_or_else(|| panic!("no Nats-Msg-Id: {:?}", m.headers))
            .as_str()
            .to_owned();
        assert_eq!(id, format!("n-{}", seq - 1));
        let event: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(event["id"], id);
        assert_eq!(event["tenant"], "acme");
    }
    // A redelivery of the same event is dropped by JetStream.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "n-0");
    js.publish_with_headers(subject.clone(), headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 30);
    js.delete_stream(&name).await.unwrap();
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        % 1_000_000
}
