//! The integrity page (`/ui/integrity`): each visible tenant's latest signed checkpoint (its
//! signature checked here with the server's trusted keys), the public key to check it with,
//! and the last full verification — which "Verify now" runs in the background
//! ([`bitacora_log::verify_tenant`], what `bitacora verify` runs), reporting progress to the
//! page (`/ui/integrity/progress`, polled by ui.js; a meta refresh without script).
//!
//! One verification runs at a time per server. Results are kept in memory: they say when
//! *this server* last re-checked the log (run `bitacora verify` for a record in your own
//! tooling).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use askama::Template;
use axum::Form;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Redirect, Response};
use bitacora_core::TenantName;
use bitacora_core::canonical::hex_hash;
use bitacora_core::checkpoint::open_log_checkpoint;
use bitacora_log::{VerifyOptions, verify_tenant};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::session::{Viewer, check_same_origin};
use super::view::{self, Layout, TimeView, Url};
use super::{UiError, UiState, render};
use crate::state::AppState;

/// The outcome of one tenant's last full verification.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub at: DateTime<Utc>,
    pub intact: bool,
    pub summary: String,
    pub millis: u128,
}

#[derive(Debug, Clone)]
struct Running {
    tenants: Vec<TenantName>,
    current: usize,
    done: u64,
    total: u64,
}

#[derive(Debug, Default)]
struct Jobs {
    running: Option<Running>,
    last: HashMap<TenantName, LastRun>,
}

/// Background verifications: the one running, and each tenant's last result.
#[derive(Debug, Default, Clone)]
pub struct VerifyJobs {
    inner: Arc<Mutex<Jobs>>,
}

impl VerifyJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn last(&self, tenant: &TenantName) -> Option<LastRun> {
        self.lock().last.get(tenant).cloned()
    }

    pub fn is_running(&self) -> bool {
        self.lock().running.is_some()
    }

    /// Starts verifying `tenants` in the background; false if a verification is running.
    pub fn start(&self, state: &AppState, tenants: Vec<TenantName>) -> bool {
        {
            let mut jobs = self.lock();
            if jobs.running.is_some() || tenants.is_empty() {
                return false;
            }
            jobs.running = Some(Running {
                tenants: tenants.clone(),
                current: 0,
                done: 0,
                total: 0,
            });
        }
        let jobs = self.clone();
        let store = state.store.clone();
        let verifiers = state.keys.verifiers();
        let options = VerifyOptions {
            commit_key: Some(state.keys.commit_key()),
            ..VerifyOptions::default()
        };
        tokio::spawn(async move {
            for (i, tenant) in tenants.iter().enumerate() {
                if let Some(r) = jobs.lock().running.as_mut() {
                    r.current = i;
                    r.done = 0;
                    r.total = 0;
                }
                let started = Instant::now();
                let progress_jobs = jobs.clone();
                let result =
                    verify_tenant(&*store, tenant, &verifiers, &options, move |done, total| {
                        if let Some(r) = progress_jobs.lock().running.as_mut() {
                            r.done = done;
                            r.total = total;
                        }
                    })
                    .await;
                let run = match result {
                    Ok(report) => LastRun {
                        at: Utc::now(),
                        intact: report.is_intact(),
                        summary: report.summary(),
                        millis: started.elapsed().as_millis(),
                    },
                    Err(e) => {
                        tracing::error!(tenant = %tenant, error = %e, "verification could not run");
                        LastRun {
                            at: Utc::now(),
                            intact: false,
                            summary: format!("tenant {tenant}: could not be verified: {e}"),
                            millis: started.elapsed().as_millis(),
                        }
                    }
                };
                if run.intact {
                    tracing::info!(tenant = %tenant, summary = %run.summary, "verification finished");
                } else {
                    tracing::warn!(tenant = %tenant, summary = %run.summary, "verification found a problem");
                }
                jobs.lock().last.insert(tenant.clone(), run);
            }
            jobs.lock().running = None;
        });
        true
    }
}

/// One tenant's panel.
#[derive(Debug, Clone)]
pub struct TenantPanel {
    pub name: String,
    pub size: u64,
    pub has_checkpoint: bool,
    pub cp_size: u64,
    pub cp_root: String,
    pub cp_time: Option<TimeView>,
    pub cp_note: String,
    pub cp_ok: bool,
    pub cp_detail: String,
    pub unsigned: u64,
    /// Events the server refuses to sign because no commit seal explains them.
    pub unexplained: Option<UnexplainedView>,
    pub last: Option<LastView>,
    pub list_url: Url,
    /// Events whose content retention purged (docs/LIFECYCLE.md).
    pub purged: u64,
    /// Legal holds in force.
    pub holds: Vec<HoldLine>,
    /// The witnesses (key names) whose cosignatures the latest checkpoint carries.
    pub cosigned_by: Vec<String>,
    /// The log's origin line (`<prefix>/<tenant>`, fixed when the log was first signed).
    pub origin: String,
    /// The log's verifier key, named by its origin: what a witness or a `tlog-policy` names
    /// the log by.
    pub verifier_key: String,
    /// The largest checkpoint size any witness cosigned, when it is not the latest.
    pub witnessed_size: Option<u64>,
}

/// A witness of the policy, as the integrity page shows it.
#[derive(Debug, Clone)]
pub struct WitnessLine {
    pub name: String,
    pub url: String,
    pub state: String,
    pub ok: bool,
    /// `tenant: size` for the tenants this viewer sees.
    pub cosigned: Vec<String>,
    pub last_success: Option<TimeView>,
    /// The last failure, when it concerns a tenant this viewer sees.
    pub last_error: Option<String>,
    pub last_error_at: Option<TimeView>,
    pub failures: u64,
}

/// A legal hold in force, as the integrity page lists it.
#[derive(Debug, Clone)]
pub struct HoldLine {
    pub name: String,
    pub reason: String,
    pub filter: String,
    pub since: Option<TimeView>,
}

#[derive(Debug, Clone)]
pub struct UnexplainedView {
    pub first_seq: u64,
    pub log_size: u64,
    pub events: u64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct LastView {
    pub time: TimeView,
    pub intact: bool,
    pub summary: String,
    pub duration: String,
}

#[derive(Template)]
#[template(path = "ui/integrity.html")]
struct IntegrityTemplate {
    layout: Layout,
    panels: Vec<TenantPanel>,
    public_keys: Vec<String>,
    running: bool,
    /// What the "verify" form sends: one tenant (pinned) or all visible.
    form_tenant: String,
    scope_text: String,
    /// The witnesses of `integrity.witness_policy_file` (empty without one).
    witnesses: Vec<WitnessLine>,
}

/// The tenants this viewer may see.
fn visible(viewer: &Viewer) -> Vec<TenantName> {
    match viewer.principal.pinned() {
        Some(t) => vec![t.clone()],
        None if viewer.tenants.is_empty() => vec![viewer.tenant.clone()],
        None => viewer.tenants.clone(),
    }
}

/// `GET /ui/integrity`.
pub async fn page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<UiState>>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let verifiers = state.keys.verifiers();
    let mut panels = Vec::new();
    for tenant in visible(&viewer) {
        let size = state.store.log_size(&tenant).await?;
        let cp = state.store.latest_checkpoint(&tenant).await?;
        let mut panel = TenantPanel {
            name: tenant.to_string(),
            size,
            has_checkpoint: cp.is_some(),
            cp_size: 0,
            cp_root: String::new(),
            cp_time: None,
            cp_note: String::new(),
            cp_ok: false,
            cp_detail: String::new(),
            unsigned: size,
            unexplained: state.tails.tenant(&tenant).map(|t| UnexplainedView {
                first_seq: t.first_seq,
                log_size: t.log_size,
                events: t.log_size.saturating_sub(t.first_seq),
                reason: t.reason,
            }),
            last: ui.verify.last(&tenant).map(|r| LastView {
                time: view::time(&r.at),
                intact: r.intact,
                summary: r.summary,
                duration: format!("{:.1} s", r.millis as f64 / 1000.0),
            }),
            list_url: if viewer.needs_tenant_param() {
                Url::new("/ui/").param("tenant", tenant.as_str())
            } else {
                Url::new("/ui/")
            },
            purged: state
                .store
                .purges(&tenant)
                .await?
                .iter()
                .map(|p| p.count)
                .sum(),
            holds: state
                .store
                .legal_holds(Some(&tenant), false)
                .await?
                .into_iter()
                .map(|h| HoldLine {
                    name: h.name,
                    reason: h.reason,
                    filter: h.filter,
                    since: DateTime::from_timestamp_micros(h.created_at).map(|t| view::time(&t)),
                })
                .collect(),
            cosigned_by: Vec::new(),
            witnessed_size: None,
            origin: String::new(),
            verifier_key: String::new(),
        };
        if let Some(cp) = cp {
            let cosignatures = state.store.cosignatures(&tenant, cp.size).await?;
            panel.cosigned_by = cosignatures.iter().map(|c| c.witness.clone()).collect();
            panel.witnessed_size = state
                .store
                .latest_cosignatures(&tenant)
                .await?
                .iter()
                .map(|c| c.size)
                .max()
                .filter(|&s| s < cp.size);
            let cp = bitacora_store::StoredCheckpoint {
                note: crate::integrity::cosigned_note(&*state.store, &tenant, &cp).await?,
                ..cp
            };
            panel.cp_size = cp.size;
            panel.unsigned = size.saturating_sub(cp.size);
            panel.cp_root = hex_hash(&cp.root);
            panel.cp_time = DateTime::from_timestamp_micros(cp.created_at).map(|t| view::time(&t));
            panel.origin = bitacora_log::log_origin(&*state.store, &tenant).await?;
            panel.verifier_key = state
                .keys
                .verifier_for(&panel.origin)
                .map(|k| k.to_string())
                .unwrap_or_default();
            match open_log_checkpoint(&cp.note, &panel.origin, &verifiers) {
                Ok((signed, _)) if signed.size == cp.size && signed.root == cp.root => {
                    panel.cp_ok = true;
                    panel.cp_detail = "Signature verified with the server's key.".into();
                }
                Ok(_) => {
                    panel.cp_detail =
                        "The signed note does not match the stored size and root.".into();
                }
                Err(e) => panel.cp_detail = format!("The signature does not verify: {e}"),
            }
            panel.cp_note = cp.note;
        }
        panels.push(panel);
    }
    let pinned = viewer.principal.pinned().is_some();
    let seen = visible(&viewer);
    let seen: Vec<&str> = seen.iter().map(TenantName::as_str).collect();
    let witnesses = state
        .witnesses
        .snapshot()
        .into_iter()
        .map(|w| {
            let time = |t: Option<i64>| {
                t.and_then(DateTime::from_timestamp_micros)
                    .map(|t| view::time(&t))
            };
            // An error names its tenant first (`<tenant>: ...`): shown only to its viewers.
            let error_visible = w
                .last_error
                .as_deref()
                .is_some_and(|e| e.split_once(": ").is_some_and(|(t, _)| seen.contains(&t)));
            WitnessLine {
                ok: w.state == "ok",
                cosigned: w
                    .cosigned
                    .iter()
                    .filter(|(t, _)| seen.contains(&t.as_str()))
                    .map(|(t, size)| format!("{t}: {size}"))
                    .collect(),
                last_success: time(w.last_success_at),
                last_error: if error_visible { w.last_error } else { None },
                last_error_at: if error_visible {
                    time(w.last_error_at)
                } else {
                    None
                },
                url: w.url.unwrap_or_default(),
                name: w.name,
                state: w.state,
                failures: w.failures,
            }
        })
        .collect();
    let page = IntegrityTemplate {
        witnesses,
        layout: Layout::new("Integrity", "integrity", "/ui/integrity", &viewer),
        public_keys: crate::integrity::public_key_text(&state.keys)
            .lines()
            .map(str::to_owned)
            .collect(),
        running: ui.verify.is_running(),
        form_tenant: if pinned {
            viewer.tenant.to_string()
        } else {
            String::new()
        },
        scope_text: if pinned || panels.len() == 1 {
            format!("tenant {}", viewer.tenant)
        } else {
            format!("all {} tenants", panels.len())
        },
        panels,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    tenant: String,
}

/// `POST /ui/integrity/verify`: starts a verification of one tenant (`tenant`) or of every
/// tenant the viewer sees, then back to the page.
pub async fn start(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<UiState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<VerifyForm>,
) -> Result<Response, UiError> {
    check_same_origin(&headers)?;
    let visible = visible(&viewer);
    let tenants = if form.tenant.trim().is_empty() {
        visible
    } else {
        let t = viewer.principal.resolve_tenant(Some(&form.tenant))?;
        if !visible.contains(&t) {
            return Err(UiError::not_found(format!("tenant “{t}” has no log")));
        }
        vec![t]
    };
    ui.verify.start(&state, tenants);
    Ok(Redirect::to(viewer.url("/ui/integrity").as_str()).into_response())
}

#[derive(Serialize)]
pub struct Progress {
    running: bool,
    /// The tenant being verified (omitted when the viewer may not see it).
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    step: usize,
    steps: usize,
    done: u64,
    total: u64,
}

/// `GET /ui/integrity/progress`: the running verification, as JSON for ui.js.
pub async fn progress(Extension(ui): Extension<Arc<UiState>>, viewer: Viewer) -> Json<Progress> {
    let visible = visible(&viewer);
    let jobs = ui.verify.lock();
    let p = match &jobs.running {
        Some(r) => {
            let tenant = r.tenants.get(r.current).filter(|t| visible.contains(t));
            Progress {
                running: true,
                tenant: tenant.map(|t| t.to_string()),
                step: r.current + 1,
                steps: r.tenants.len(),
                done: if tenant.is_some() { r.done } else { 0 },
                total: if tenant.is_some() { r.total } else { 0 },
            }
        }
        None => Progress {
            running: false,
            tenant: None,
            step: 0,
            steps: 0,
            done: 0,
            total: 0,
        },
    };
    Json(p)
}
