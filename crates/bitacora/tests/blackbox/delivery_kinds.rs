//! Syslog and email destinations, webhook secret rotation, and alert rules tested against
//! past events, disabled and enabled (CONTRACT §10, issue 17) — against real receivers: a
//! strict RFC 5425 syslog listener (`common::syslog`, TCP and TLS), an SMTP sink (PyPI
//! `aiosmtpd`, `smtp_sink.py`), and the Standard Webhooks receiver. Without `python3`,
//! `aiosmtpd` and `standardwebhooks` these tests fail (they never skip).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitacora_client::Client;
use serde_json::{Value, json};

use super::delivery::{get, post, wait_for};
use crate::common::receiver::Receiver;
use crate::common::syslog::SyslogListener;
use crate::common::{self, TestApp, numbered, spawn_app_with};

/// An in-process server that allows local receivers and retries quickly.
async fn app(smtp_port: Option<u16>) -> TestApp {
    spawn_app_with(|c| {
        c.delivery.allow_private_destinations = true;
        c.delivery.poll_interval_ms = 50;
        c.delivery.timeout_secs = 2;
        c.delivery.max_backoff_secs = 1;
        c.delivery.max_batch = 40;
        c.delivery.smtp = smtp_port.map(|port| bitacora_delivery::email::SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            security: "none".into(),
            from: "bitacora <alerts@bitacora.test>".into(),
            ..Default::default()
        });
    })
    .await
}

/// The ids of the syslog messages in arrival order, first occurrences only, after checking
/// that first occurrences come in `seq` order (a redelivery may repeat, never skip ahead).
fn ids_in_order(listener: &SyslogListener) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut last_new_seq: Option<u64> = None;
    for m in listener.messages() {
        let id = m.param("bitacora@32473", "id").unwrap().to_owned();
        let seq: u64 = m.param("bitacora@32473", "seq").unwrap().parse().unwrap();
        if !ids.contains(&id) {
            assert!(
                last_new_seq.is_none_or(|l| seq > l),
                "{id} (seq {seq}) after seq {last_new_seq:?}"
            );
            last_new_seq = Some(seq);
            ids.push(id);
        }
    }
    ids
}

async fn wait_for_ids(listener: &SyslogListener, n: usize) {
    wait_for("syslog messages", Duration::from_secs(60), || async {
        assert!(listener.errors().is_empty(), "{:?}", listener.errors());
        let got = ids_in_order(listener).len();
        if got >= n {
            Ok(())
        } else {
            Err(format!("{got} of {n}"))
        }
    })
    .await;
}

async fn destination_health(client: &Client, id: &Value) -> Value {
    let list = get(client, "/v1/destinations").await;
    list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == *id)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_syslog_stream_survives_a_listener_outage_in_order() {
    let mut listener = SyslogListener::start(false).await;
    let app = app(None).await;
    let (status, d) = post(
        &app.client,
        "/v1/destinations",
        json!({"name": "rsyslog", "kind": "syslog", "tenant": "acme", "url": listener.url(),
               "stream": true, "filter": {"action": "item.*"}}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["kind"], "syslog");
    assert!(d.get("secret").is_none());

    app.client
        .send_batch(&numbered("acme", "a", 60))
        .await
        .unwrap();
    wait_for_ids(&listener, 60).await;

    // The receiver goes down; events keep coming; deliveries fail and are retried.
    listener.stop().await;
    app.client
        .send_batch(&numbered("acme", "b", 70))
        .await
        .unwrap();
    wait_for(
        "the outage in the health",
        Duration::from_secs(20),
        || async {
            let h = destination_health(&app.client, &d["id"]).await;
            let h = &h["health"][0];
            if h["last_error"].is_string() && h["lag"].as_u64().unwrap() > 0 {
                Ok(())
            } else {
                Err(h.to_string())
            }
        },
    )
    .await;
    listener.restart().await;
    app.client
        .send_batch(&numbered("acme", "c", 30))
        .await
        .unwrap();
    wait_for_ids(&listener, 160).await;

    let expected: Vec<String> = (0..60)
        .map(|i| format!("a-{i}"))
        .chain((0..70).map(|i| format!("b-{i}")))
        .chain((0..30).map(|i| format!("c-{i}")))
        .collect();
    assert_eq!(ids_in_order(&listener), expected);
    assert!(listener.errors().is_empty(), "{:?}", listener.errors());
    assert!(listener.connections() >= 2, "it reconnected");

    // Each message: facility 13 (log audit), the event's severity (low → 6), its action as
    // MSGID, tenant/seq/id in the structured data, the event (bitacora format) as MSG.
    let m = &listener.messages()[0];
    assert_eq!((m.facility, m.severity), (13, 6));
    assert_eq!(m.app_name, "bitacora");
    assert_eq!(m.msgid, "item.touch");
    assert_eq!(m.param("bitacora@32473", "tenant"), Some("acme"));
    assert_eq!(m.body["id"], "a-0");
    assert_eq!(m.body["tenant"], "acme");
    assert!(m.body["leaf_hash"].is_string());
    assert_eq!(
        m.param("bitacora@32473", "seq").unwrap(),
        m.body["seq"].to_string()
    );
    let h = destination_health(&app.client, &d["id"]).await;
    assert_eq!(h["health"][0]["lag"], 0, "{h}");
}

#[tokio::test]
async fn a_syslogs_stream_checks_the_receivers_certificate() {
    let listener = SyslogListener::start(true).await;
    let app = app(None).await;
    // Without the self-signed certificate trusted, nothing is delivered and the health says
    // why.
    let (status, untrusted) = post(
        &app.client,
        "/v1/destinations",
        json!({"name": "untrusted", "kind": "syslog", "tenant": "acme", "url": listener.url(),
               "stream": true, "format": "ocsf"}),
    )
    .await;
    assert_eq!(status, 201, "{untrusted}");
    let (status, d) = post(
        &app.client,
        "/v1/destinations",
        json!({"name": "siem", "kind": "syslog", "tenant": "acme", "url": listener.url(),
               "stream": true, "format": "ocsf", "facility": 10,
               "ca_pem": listener.ca_pem.clone().unwrap(), "filter": {"action": "item.*"}}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    app.client
        .send_batch(&numbered("acme", "t", 25))
        .await
        .unwrap();
    wait_for_ids(&listener, 25).await;
    let ids = ids_in_order(&listener);
    assert_eq!(ids[0], "t-0");
    assert_eq!(ids[24], "t-24");
    // OCSF in the MSG; facility 10 (authpriv) as asked.
    let m = &listener.messages()[0];
    assert_eq!(m.facility, 10);
    assert_eq!(m.body["metadata"]["uid"], "t-0");
    assert!(m.body["class_uid"].is_u64());
    // The listener sees the untrusting client give up on its certificate (its worker may
    // try after the trusted one has delivered: wait for it rather than race it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !listener
        .handshake_failures()
        .iter()
        .any(|e| e.contains("UnknownCA"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no UnknownCA handshake failure: {:?}",
            listener.handshake_failures()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(
        "the TLS failure in the health",
        Duration::from_secs(20),
        || async {
            let h = destination_health(&app.client, &untrusted["id"]).await;
            let error = h["health"][0]["last_error"].as_str().unwrap_or_default();
            if error.contains("TLS") || error.contains("certificate") {
                Ok(())
            } else {
                Err(h.to_string())
            }
        },
    )
    .await;

    // What an admin may not ask for.
    for (body, field) in [
        (
            json!({"name": "x", "kind": "syslog", "url": "https://siem.example.com/"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslog://siem.example.com/path"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslog://siem.example.com",
                   "ca_pem": listener.ca_pem.clone().unwrap()}),
            "ca_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "ca_pem": "not a certificate"}),
            "ca_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslog://siem.example.com",
                   "facility": 24}),
            "facility",
        ),
    ] {
        let (status, error) = post(&app.client, "/v1/destinations", body.clone()).await;
        assert_eq!(status, 422, "{body} → {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
}

/// Mutual TLS: a receiver that requires a client certificate gets the stream from a
/// destination presenting one its CA signed; a destination with none, or with a certificate
/// of another CA, delivers nothing and its health says the handshake failed. The key is never
/// shown back, and what cannot work is refused at creation.
#[tokio::test]
async fn a_syslogs_stream_presents_a_client_certificate() {
    let listener = SyslogListener::start_mutual().await;
    let (cert, key) = listener.client_identity.clone().unwrap();
    let ca = listener.ca_pem.clone().unwrap();
    let app = app(None).await;
    let create = |name: &str, identity: Option<(String, String)>| {
        let mut body = json!({"name": name, "kind": "syslog", "tenant": "acme", "stream": true,
                              "url": listener.url(), "ca_pem": ca, "filter": {"action": "item.*"}});
        if let Some((cert, key)) = identity {
            body["client_cert_pem"] = json!(cert);
            body["client_key_pem"] = json!(key);
        }
        body
    };
    let (status, anonymous) =
        post(&app.client, "/v1/destinations", create("anonymous", None)).await;
    assert_eq!(status, 201, "{anonymous}");
    let (status, foreign) = post(
        &app.client,
        "/v1/destinations",
        create("foreign", Some(SyslogListener::foreign_identity())),
    )
    .await;
    assert_eq!(status, 201, "{foreign}");
    let (status, d) = post(
        &app.client,
        "/v1/destinations",
        create("siem", Some((cert.clone(), key.clone()))),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let listed = get(&app.client, "/v1/destinations").await.to_string();
    assert!(
        !listed.contains("PRIVATE KEY"),
        "the key was shown: {listed}"
    );
    app.client
        .send_batch(&numbered("acme", "m", 20))
        .await
        .unwrap();
    wait_for_ids(&listener, 20).await;
    let ids = ids_in_order(&listener);
    assert_eq!(
        ids.len(),
        20,
        "only the certified destination delivers: {ids:?}"
    );
    assert_eq!(ids[0], "m-0");
    assert_eq!(ids[19], "m-19");
    assert!(listener.errors().is_empty(), "{:?}", listener.errors());
    // The other two were refused in the handshake, and say so.
    for refused in [&anonymous, &foreign] {
        wait_for(
            "the handshake failure in the health",
            Duration::from_secs(20),
            || async {
                let h = destination_health(&app.client, &refused["id"]).await;
                let error = h["health"][0]["last_error"].as_str().unwrap_or_default();
                if error.contains("TLS") && h["health"][0]["last_delivered_seq"].is_null() {
                    Ok(())
                } else {
                    Err(h.to_string())
                }
            },
        )
        .await;
    }
    assert!(
        listener.handshake_failures().len() >= 2,
        "{:?}",
        listener.handshake_failures()
    );

    // What cannot work is refused at creation, naming the field.
    let (other_cert, other_key) = SyslogListener::foreign_identity();
    for (body, field) in [
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "client_cert_pem": cert}),
            "client_key_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "client_key_pem": key}),
            "client_cert_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslog://siem.example.com",
                   "client_cert_pem": cert, "client_key_pem": key}),
            "client_cert_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "client_cert_pem": "not a certificate", "client_key_pem": key}),
            "client_cert_pem",
        ),
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "client_cert_pem": cert, "client_key_pem": "not a key"}),
            "client_key_pem",
        ),
        // A key that is not the certificate's.
        (
            json!({"name": "x", "kind": "syslog", "url": "syslogs://siem.example.com",
                   "client_cert_pem": other_cert, "client_key_pem": key}),
            "client_key_pem",
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "https://siem.example.com/",
                   "client_cert_pem": cert, "client_key_pem": other_key}),
            "client_cert_pem",
        ),
    ] {
        let (status, error) = post(&app.client, "/v1/destinations", body.clone()).await;
        assert_eq!(status, 422, "{body} → {error}");
        assert_eq!(error["error"]["field"], field, "{body} → {error}");
    }
}

/// An SMTP sink process (`smtp_sink.py`, PyPI `aiosmtpd`), killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    out: tempfile::NamedTempFile,
}

impl SmtpSink {
    fn start(fail_first: u32) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/smtp_sink.py");
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("python3")
            .arg(script)
            .arg(out.path())
            .args(["--fail-first", &fail_first.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the email tests need python3 and `pip install aiosmtpd`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the SMTP sink did not start (is `aiosmtpd` installed?): {line:?}")
        });
        Self { child, port, out }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(self.out.path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn email_alerts_reach_an_smtp_relay_after_transient_failures() {
    // The relay refuses the first two attempts with 451: the firing is retried, not lost.
    let sink = SmtpSink::start(2);
    let app = app(Some(sink.port)).await;
    let c = &app.client;
    let (status, mail) = post(
        c,
        "/v1/destinations",
        json!({"name": "soc mail", "kind": "email",
               "url": "mailto:soc@example.com,oncall@example.com"}),
    )
    .await;
    assert_eq!(status, 201, "{mail}");
    let (status, rule) = post(
        c,
        "/v1/alert-rules",
        json!({"name": "Brute force", "tenant": "acme",
               "match": {"action": "user.login", "outcome": "failure"},
               "threshold": {"count": 3, "window": "10m", "group_by": "context.ip"},
               "severity": "critical", "destinations": [mail["id"]]}),
    )
    .await;
    assert_eq!(status, 201, "{rule}");
    // Let the evaluator pick the rule up before the events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failures: Vec<_> = (0..3)
        .map(|_| {
            common::event(
                json!({"tenant": "acme", "action": "user.login", "outcome": "failure",
                                 "context": {"ip": "203.0.113.9"}}),
            )
        })
        .collect();
    c.send_batch(&failures).await.unwrap();
    wait_for("the alert mailed", Duration::from_secs(30), || async {
        match sink.messages().len() {
            0 => Err("no message yet".into()),
            _ => Ok(()),
        }
    })
    .await;
    // Nothing more arrives: one firing, one message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["mail_from"], "alerts@bitacora.test");
    assert_eq!(
        m["rcpt_tos"],
        json!(["soc@example.com", "oncall@example.com"])
    );
    assert_eq!(
        m["subject"],
        "[bitacora] critical alert: Brute force (acme, group 203.0.113.9)"
    );
    assert!(
        m["message_id"].as_str().unwrap().starts_with("<msg_"),
        "{m}"
    );
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("Group: context.ip = 203.0.113.9"), "{body}");
    assert!(body.contains("Events that fired it (3): seq"), "{body}");
    assert!(
        body.contains("\"action\": \"bitacora.alert.fired\""),
        "{body}"
    );
    // The health shows the relay's refusals, then the success.
    let h = destination_health(c, &mail["id"]).await;
    let acme = h["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap()
        .clone();
    assert!(
        acme["last_error"].as_str().unwrap().contains("451"),
        "{acme}"
    );
    assert!(acme["last_success_at"].is_string(), "{acme}");

    // Email carries alerts only; its address list is checked.
    for (body, field) in [
        (
            json!({"name": "x", "kind": "email", "url": "mailto:a@example.com", "stream": true}),
            "stream",
        ),
        (
            json!({"name": "x", "kind": "email", "url": "mailto:not-an-address"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "email", "url": "smtp://relay.example.com"}),
            "url",
        ),
    ] {
        let (status, error) = post(c, "/v1/destinations", body.clone()).await;
        assert_eq!(status, 422, "{body} → {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    // A server without [delivery.smtp] refuses email destinations.
    let bare = app_without_smtp().await;
    let (status, error) = post(
        &bare.client,
        "/v1/destinations",
        json!({"name": "x", "kind": "email", "url": "mailto:a@example.com"}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[delivery.smtp]")
    );
}

async fn app_without_smtp() -> TestApp {
    app(None).await
}

#[tokio::test]
async fn a_rotated_webhook_secret_signs_beside_the_old_one_until_retired() {
    let receiver = Receiver::start();
    let app = app(None).await;
    let c = &app.client;
    let (status, d) = post(
        c,
        "/v1/destinations",
        json!({"name": "siem", "kind": "webhook", "tenant": "acme",
               "url": receiver.url("/hook"), "stream": true, "filter": {"action": "item.*"}}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let old = d["secret"].as_str().unwrap().to_owned();
    receiver.control(json!({"secret": old})).await;
    c.send_batch(&numbered("acme", "before", 5)).await.unwrap();
    let delivered = |n: usize| {
        let receiver = &receiver;
        move || async move {
            let got: usize = receiver
                .accepted("/hook")
                .await
                .iter()
                .map(|a| a["payload"]["events"].as_array().unwrap().len())
                .sum();
            if got >= n {
                Ok(())
            } else {
                Err(format!("{got} of {n}"))
            }
        }
    };
    wait_for(
        "deliveries with the first secret",
        Duration::from_secs(20),
        delivered(5),
    )
    .await;

    // Rotate: the new secret is returned once; both sign until the old one is retired.
    let (status, rotated) = post(
        c,
        &format!(
            "/v1/destinations/{}/rotate-secret",
            d["id"].as_str().unwrap()
        ),
        json!({"previous_expires_in": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(rotated["signing_secrets"], 2);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let listed = destination_health(c, &d["id"]).await;
    assert!(listed.get("secret").is_none(), "{listed}");
    assert_eq!(listed["signing_secrets"], 2);
    // The receiver now accepts only what verifies with the old secret AND with the new one.
    receiver.control(json!({"secrets": [old, new]})).await;
    c.send_batch(&numbered("acme", "during", 5)).await.unwrap();
    wait_for(
        "deliveries signed by both",
        Duration::from_secs(20),
        delivered(10),
    )
    .await;
    let last = receiver.accepted("/hook").await.last().unwrap().clone();
    assert_eq!(last["signatures"], 2, "{last}");

    // Retire the old one: only the new secret signs.
    let (status, retired) = post(
        c,
        &format!(
            "/v1/destinations/{}/retire-secret",
            d["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!(retired["signing_secrets"], 1);
    receiver.control(json!({"secrets": [new]})).await;
    // The worker picks the change up within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send_batch(&numbered("acme", "after", 5)).await.unwrap();
    wait_for(
        "deliveries with the new secret",
        Duration::from_secs(20),
        delivered(15),
    )
    .await;
    let last = receiver.accepted("/hook").await.last().unwrap().clone();
    assert_eq!(last["signatures"], 1, "{last}");
    let ids = crate::common::receiver::check_in_order(&receiver.accepted("/hook").await);
    assert_eq!(ids.len(), 15);

    // Only webhooks have secrets; unknown destinations are 404.
    let (_, slack) = post(
        c,
        "/v1/destinations",
        json!({"name": "chat", "kind": "slack", "url": receiver.url("/slack")}),
    )
    .await;
    let (status, error) = post(
        c,
        &format!(
            "/v1/destinations/{}/rotate-secret",
            slack["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (422, json!("kind"))
    );
    let (status, _) = post(c, "/v1/destinations/nope/rotate-secret", json!({})).await;
    assert_eq!(status, 404);
    let (status, error) = post(
        c,
        &format!(
            "/v1/destinations/{}/rotate-secret",
            d["id"].as_str().unwrap()
        ),
        json!({"previous_expires_in": "soon"}),
    )
    .await;
    assert_eq!(status, 422, "{error}");

    // "Send test" reaches the receiver, signed, marked as a test.
    let (status, tested) = post(
        c,
        &format!("/v1/destinations/{}/test", d["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivered"], true, "{tested}");
    let last = receiver.accepted("/hook").await.last().unwrap().clone();
    assert_eq!(last["payload"]["type"], "bitacora.test");
    assert_eq!(
        last["payload"]["events"][0]["action"],
        "bitacora.destination.test"
    );
}

#[tokio::test]
async fn rules_are_tested_against_past_events_and_disabled_and_enabled() {
    let app = app(None).await;
    let c = &app.client;
    let mut events = Vec::new();
    // Seven failures by actor 42, five without an actor, three successes.
    for _ in 0..7 {
        events.push(common::event(
            json!({"tenant": "acme", "action": "user.login", "outcome": "failure",
                   "actor": {"id": "42"}}),
        ));
    }
    for _ in 0..5 {
        events.push(common::event(
            json!({"tenant": "acme", "action": "user.login", "outcome": "failure"}),
        ));
    }
    for _ in 0..3 {
        events.push(common::event(
            json!({"tenant": "acme", "action": "user.login", "outcome": "success",
                   "actor": {"id": "42"}}),
        ));
    }
    c.send_batch(&events).await.unwrap();

    // A rule not yet created: once per crossing, group "none" counted.
    let rule = json!({"name": "brute force", "tenant": "acme",
                      "match": {"action": "user.login", "outcome": "failure"},
                      "threshold": {"count": 5, "window": "10m", "group_by": "actor.id"}});
    let (status, tested) = post(c, "/v1/alert-rules/test", rule.clone()).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["tenant"], "acme");
    assert_eq!(tested["matched"], 12, "{tested}");
    assert_eq!(tested["firings"], 2, "{tested}");
    let groups: Vec<&str> = tested["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["42", "none"]);
    assert_eq!(tested["examples"][0]["seqs"].as_array().unwrap().len(), 5);
    // Without a threshold every match fires; a lookback before the events finds nothing.
    let (_, every) = post(
        c,
        "/v1/alert-rules/test",
        json!({"tenant": "acme", "match": {"action": "user.login", "outcome": "failure"}}),
    )
    .await;
    assert_eq!(every["firings"], 12, "{every}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, none) = post(
        c,
        "/v1/alert-rules/test",
        json!({"tenant": "acme", "lookback": "1s", "match": {"action": "user.login"}}),
    )
    .await;
    assert_eq!(
        (none["matched"].clone(), none["firings"].clone()),
        (json!(0), json!(0)),
        "{none}"
    );
    let (status, error) = post(
        c,
        "/v1/alert-rules/test",
        json!({"match": {"severity": "huge"}}),
    )
    .await;
    assert_eq!(status, 422, "{error}");

    // A stored rule, by id; then disabled and enabled again.
    let (status, stored) = post(c, "/v1/alert-rules", rule).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["disabled"], false);
    let id = stored["id"].as_str().unwrap().to_owned();
    let (_, by_id) = post(c, "/v1/alert-rules/test", json!({"rule_id": id})).await;
    assert_eq!(by_id["firings"], 2, "{by_id}");
    let (status, disabled) = post(c, &format!("/v1/alert-rules/{id}/disable"), json!({})).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["disabled"], true);
    // While disabled, a crossing fires nothing.
    let five: Vec<_> = (0..5)
        .map(|_| {
            common::event(
                json!({"tenant": "acme", "action": "user.login", "outcome": "failure",
                                 "actor": {"id": "7"}}),
            )
        })
        .collect();
    c.send_batch(&five).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let alerts = get(c, "/v1/alerts?tenant=acme").await;
    assert_eq!(alerts["alerts"], json!([]), "{alerts}");
    // Enabled again: only what arrives from then on counts.
    let (status, enabled) = post(c, &format!("/v1/alert-rules/{id}/enable"), json!({})).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["disabled"], false);
    let listed = get(c, "/v1/alert-rules").await;
    assert_eq!(listed["rules"][0]["disabled"], false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send_batch(&five).await.unwrap();
    wait_for(
        "one firing after enabling",
        Duration::from_secs(20),
        || async {
            let alerts = get(c, "/v1/alerts?tenant=acme").await;
            match alerts["alerts"].as_array().unwrap().len() {
                1 => Ok(()),
                n => Err(format!("{n} firings: {alerts}")),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alerts = get(c, "/v1/alerts?tenant=acme").await;
    let firing = &alerts["alerts"][0];
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(firing["metadata"]["group"], "7");
    // The five events sent after enabling, not the five sent while disabled.
    let seqs = firing["metadata"]["seqs"].as_array().unwrap();
    assert_eq!(seqs.len(), 5);
    assert!(seqs[0].as_u64().unwrap() >= 20, "{firing}");
    let (status, _) = post(c, "/v1/alert-rules/nope/disable", json!({})).await;
    assert_eq!(status, 404);
}
