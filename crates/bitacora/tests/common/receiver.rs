//! A webhook receiver for the delivery tests: `tests/blackbox/webhook_receiver.py`, which
//! verifies every signature with the reference Standard Webhooks library (PyPI
//! `standardwebhooks`) and fails on cue. Without `python3` and that library the tests that
//! use it fail (they never skip).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A receiver process, killed when dropped.
pub struct Receiver {
    child: Child,
    pub port: u16,
    http: reqwest::Client,
}

impl Receiver {
    pub fn start() -> Self {
        // Named from the crates folder, so the viewer's browser test (another crate) can
        // include this file too.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../bitacora/tests/blackbox/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "python3 runs (the delivery tests need python3 and `pip install standardwebhooks`)",
            );
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the receiver did not start (is `standardwebhooks` installed?): {line:?}")
        });
        Self {
            child,
            port,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn control(&self, cue: Value) {
        let r = self
            .http
            .post(self.url("/_control"))
            .json(&cue)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn received(&self) -> Value {
        self.http
            .get(self.url("/_received"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The accepted requests to `path`.
    pub async fn accepted(&self, path: &str) -> Vec<Value> {
        self.received().await["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["path"] == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every accepted webhook delivery, in arrival order, proves the stream has no gap and no
/// reordering: each starts at most one past what was covered before (a redelivery starts
/// earlier: duplicates are allowed, gaps are not) and its events are in `seq` order.
/// Returns the ids delivered, first occurrences only, in order.
pub fn check_in_order(deliveries: &[Value]) -> Vec<String> {
    let mut covered: Option<u64> = None;
    let mut ids = Vec::new();
    for d in deliveries {
        let p = &d["payload"];
        let (from, to) = (
            p["from_seq"].as_u64().unwrap(),
            p["to_seq"].as_u64().unwrap(),
        );
        if let Some(c) = covered {
            assert!(from <= c + 1, "a gap: delivery {from}..={to} after {c}");
        }
        let seqs: Vec<u64> = p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        assert!(
            seqs.iter().all(|s| (from..=to).contains(s)),
            "{seqs:?} outside {from}..={to}"
        );
        for e in p["events"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap().to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        covered = Some(covered.map_or(to, |c| c.max(to)));
    }
    ids
}

/// [`check_in_order`] for each tenant's deliveries on their own (a destination for every
/// tenant walks each tenant's log in its own `seq` order): the ids delivered per tenant.
pub fn check_in_order_per_tenant(
    deliveries: &[Value],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_tenant: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for d in deliveries {
        let tenant = d["payload"]["tenant"].as_str().unwrap().to_owned();
        by_tenant.entry(tenant).or_default().push(d.clone());
    }
    by_tenant
        .into_iter()
        .map(|(tenant, ds)| (tenant, check_in_order(&ds)))
        .collect()
}
