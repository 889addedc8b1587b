//! View models: what templates render, already shaped and formatted, so templates only loop
//! and print (and askama escapes every printed value).
//!
//! **Every viewer URL is built here**, by [`Url`]: a fixed `/ui/` path, percent-encoded path
//! segments and form-encoded query parameters. Nothing from an event is ever used as a whole
//! URL, so no `javascript:` (or off-site) link can come out of event content.

use std::fmt;

use bitacora_core::event::timestamp;
use bitacora_core::{Event, TenantName};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::assets;

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A viewer URL: always a path under `/ui`, with encoded segments and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    text: String,
    has_query: bool,
}

impl Url {
    /// A fixed viewer path (a literal of this crate, never data).
    pub fn new(path: &'static str) -> Self {
        debug_assert!(path.starts_with("/ui"), "{path}");
        Self {
            text: path.to_owned(),
            has_query: path.contains('?'),
        }
    }

    /// A fixed prefix followed by percent-encoded segments (`/ui/events/` + id).
    pub fn with_segments(prefix: &'static str, segments: &[&str]) -> Self {
        let mut url = Self::new(prefix);
        for (i, s) in segments.iter().enumerate() {
            if i > 0 || !url.text.ends_with('/') {
                url.text.push('/');
            }
            // `.` and `..` alone would be resolved by the browser as path steps.
            match *s {
                "." => url.text.push_str("%2E"),
                ".." => url.text.push_str("%2E%2E"),
                s => url.text.extend(utf8_percent_encode(s, SEGMENT)),
            }
        }
        url
    }

    /// Adds `name=value` (form-encoded).
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.text.push(if self.has_query { '&' } else { '?' });
        self.has_query = true;
        self.text
            .extend(form_urlencoded::byte_serialize(name.as_bytes()));
        self.text.push('=');
        self.text
            .extend(form_urlencoded::byte_serialize(value.as_bytes()));
        self
    }

    /// Adds every pair.
    pub fn params<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (k, v) in pairs {
            self = self.param(k, v);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `href` is one the viewer may emit or redirect to: a path on this server under
/// `/ui` (no scheme, no host, no protocol-relative `//`), written in visible ASCII only — what
/// a `Location` header can carry as is (a control character there used to make the redirect
/// after sign-in fail with a 500), and what every URL built by [`Url`] is, since it
/// percent-encodes the rest. A backslash is refused too: some browsers read it as `/`.
pub fn is_safe_href(href: &str) -> bool {
    href.starts_with("/ui")
        && !href.starts_with("//")
        && href.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

/// The page frame: title, navigation, tenant switcher, assets.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current: `events`, `dashboard`, `integrity`, `alerts`,
    /// `destinations` or empty.
    pub nav: &'static str,
    pub css: &'static str,
    pub js: &'static str,
    pub theme_js: &'static str,
    pub favicon: &'static str,
    pub signed_in: bool,
    pub tenant: String,
    pub pinned: bool,
    pub tenants: Vec<TenantOption>,
    /// Who is signed in, e.g. "read key 1a2b3c".
    pub credential: String,
    pub events_url: Url,
    pub dashboard_url: Url,
    pub integrity_url: Url,
    pub alerts_url: Url,
    /// Shown to admins only (destinations are an admin's business).
    pub destinations_url: Option<Url>,
    /// The current page's path (the tenant switcher's form submits to it).
    pub here: &'static str,
}

#[derive(Debug, Clone)]
pub struct TenantOption {
    pub name: String,
    pub selected: bool,
}

impl Layout {
    /// A frame without a session (login and error pages).
    pub fn bare(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            nav: "",
            css: assets::url("ui.css"),
            js: assets::url("ui.js"),
            theme_js: assets::url("theme.js"),
            favicon: assets::url("favicon.svg"),
            signed_in: false,
            tenant: String::new(),
            pinned: false,
            tenants: Vec::new(),
            credential: String::new(),
            events_url: Url::new("/ui/"),
            dashboard_url: Url::new("/ui/dashboard"),
            integrity_url: Url::new("/ui/integrity"),
            alerts_url: Url::new("/ui/alerts"),
            destinations_url: None,
            here: "/ui/",
        }
    }

    /// A frame for a signed-in viewer looking at `tenant`.
    pub fn new(
        title: impl Into<String>,
        nav: &'static str,
        here: &'static str,
        viewer: &super::session::Viewer,
    ) -> Self {
        let mut l = Self::bare("");
        l.title = title.into();
        l.nav = nav;
        l.here = here;
        l.signed_in = true;
        l.tenant = viewer.tenant.to_string();
        l.pinned = viewer.principal.pinned().is_some();
        l.tenants = viewer
            .tenants
            .iter()
            .map(|t| TenantOption {
                name: t.to_string(),
                selected: *t == viewer.tenant,
            })
            .collect();
        if !l.tenants.iter().any(|t| t.selected) {
            l.tenants.insert(
                0,
                TenantOption {
                    name: l.tenant.clone(),
                    selected: true,
                },
            );
        }
        l.credential = format!(
            "{} key {}",
            viewer.principal.scope.as_str(),
            viewer.principal.key_id
        );
        l.events_url = viewer.url("/ui/");
        l.dashboard_url = viewer.url("/ui/dashboard");
        l.integrity_url = viewer.url("/ui/integrity");
        l.alerts_url = viewer.url("/ui/alerts");
        l.destinations_url = (viewer.principal.scope == bitacora_store::Scope::Admin)
            .then(|| viewer.url("/ui/destinations"));
        l
    }
}

/// FNV-1a: a stable, dependency-free hash for picking colours (not security).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Number of avatar colours (`av-0` .. `av-11` in ui.css).
pub const AVATAR_COLOURS: u64 = 12;
/// Number of category colours (`cat-0` .. `cat-9` in ui.css).
pub const CATEGORY_COLOURS: u64 = 10;

/// A coloured avatar: initials on a colour picked by a hash of the actor's name, so the same
/// person always gets the same colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    pub initials: String,
    pub class: String,
}

pub fn avatar(name: &str) -> Avatar {
    let key = name.trim().to_lowercase();
    let initials: String = name
        .split(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-' || c == '@')
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    Avatar {
        initials: if initials.is_empty() {
            "?".into()
        } else {
            initials
        },
        class: format!("av-{}", fnv(&key) % AVATAR_COLOURS),
    }
}

/// The colour class of a category (the same in badges and charts).
pub fn category_class(category: &str) -> String {
    format!("cat-{}", fnv(&category.to_lowercase()) % CATEGORY_COLOURS)
}

/// A time shown as UTC text and enhanced by ui.js to the reader's timezone (`datetime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeView {
    pub iso: String,
    pub text: String,
}

pub fn time(t: &DateTime<Utc>) -> TimeView {
    TimeView {
        iso: timestamp::format(t),
        text: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// One token of pretty-printed JSON, with its highlighting class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonToken {
    pub class: &'static str,
    pub text: String,
}

/// Pretty-prints a JSON value as highlighted tokens (keys, strings, numbers, literals,
/// punctuation, whitespace). The text of the tokens, joined, is the pretty JSON.
pub fn json_tokens(value: &Value) -> Vec<JsonToken> {
    fn push(out: &mut Vec<JsonToken>, class: &'static str, text: impl Into<String>) {
        out.push(JsonToken {
            class,
            text: text.into(),
        });
    }
    fn string(s: &str) -> String {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
    }
    fn walk(out: &mut Vec<JsonToken>, v: &Value, depth: usize) {
        let pad = |d: usize| format!("\n{}", "  ".repeat(d));
        match v {
            Value::Null => push(out, "j-lit", "null"),
            Value::Bool(b) => push(out, "j-lit", b.to_string()),
            Value::Number(n) => push(out, "j-num", n.to_string()),
            Value::String(s) => push(out, "j-str", string(s)),
            Value::Array(items) if items.is_empty() => push(out, "j-punct", "[]"),
            Value::Object(map) if map.is_empty() => push(out, "j-punct", "{}"),
            Value::Array(items) => {
                push(out, "j-punct", "[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        push(out, "j-punct", ",");
                    }
                    push(out, "j-ws", pad(depth + 1));
                    walk(out, item, depth + 1);
                }
                push(out, "j-ws", pad(depth));
                push(out, "j-punct", "]");
            }
            Value::Object(map) => {
                push(out, "j-punct", "{");
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        push(out, "j-punct", ",");
                    }
                    push(out, "j-ws", pad(depth + 1));
                    push(out, "j-key", string(k));
                    push(out, "j-punct", ": ");
                    walk(out, item, depth + 1);
                }
                push(out, "j-ws", pad(depth));
                push(out, "j-punct", "}");
            }
        }
    }
    let mut out = Vec::new();
    walk(&mut out, value, 0);
    out
}

/// One side of a change: absent (not applicable), null, a text, or other JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueView {
    /// `absent`, `null`, `text` or `json`.
    pub kind: &'static str,
    pub text: String,
}

pub fn value(v: Option<&Value>) -> ValueView {
    match v {
        None => ValueView {
            kind: "absent",
            text: String::new(),
        },
        Some(Value::Null) => ValueView {
            kind: "null",
            text: "null".into(),
        },
        Some(Value::String(s)) => ValueView {
            kind: "text",
            text: s.clone(),
        },
        Some(other) => ValueView {
            kind: "json",
            text: if other.is_object() || other.is_array() {
                serde_json::to_string_pretty(other).unwrap_or_default()
            } else {
                other.to_string()
            },
        },
    }
}

/// A field-level change, as a before/after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeView {
    /// The label when there is one, else the field.
    pub label: String,
    /// The field's name, shown under a label that differs from it.
    pub field: String,
    pub show_field: bool,
    pub old: ValueView,
    pub new: ValueView,
}

pub fn changes(e: &Event) -> Vec<ChangeView> {
    e.changes
        .iter()
        .map(|c| {
            let label = c.label.clone().unwrap_or_else(|| c.field.clone());
            ChangeView {
                show_field: label != c.field,
                label,
                field: c.field.clone(),
                old: value(c.old.as_ref()),
                new: value(c.new.as_ref()),
            }
        })
        .collect()
}

/// A short one-line summary of a value for lists ("user", "null", `{…}`), at most `max` chars.
pub fn short(v: Option<&Value>, max: usize) -> String {
    let text = match v {
        None => "—".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(_)) => "{…}".to_owned(),
        Some(Value::Array(_)) => "[…]".to_owned(),
        Some(other) => other.to_string(),
    };
    truncate(&text, max)
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The badge and link data of an event's classification.
#[derive(Debug, Clone)]
pub struct Badges {
    pub category: String,
    pub category_class: String,
    pub severity: &'static str,
    pub failed: bool,
}

pub fn badges(e: &Event) -> Badges {
    Badges {
        category_class: category_class(&e.category),
        category: e.category.clone(),
        severity: e.severity.as_str(),
        failed: e.outcome.as_str() == "failure",
    }
}

/// Who acted, ready to show.
#[derive(Debug, Clone)]
pub struct ActorView {
    pub label: String,
    /// The email (or id) under the name.
    pub detail: String,
    pub id: Option<String>,
    pub kind: &'static str,
    pub avatar: Avatar,
}

pub fn actor(e: &Event) -> Option<ActorView> {
    let a = e.actor.as_ref()?;
    let label = a
        .name
        .clone()
        .or_else(|| a.email.clone())
        .or_else(|| a.id.clone())
        .unwrap_or_else(|| a.kind.as_str().to_owned());
    let detail = match (&a.name, &a.email, &a.id) {
        (Some(_), Some(email), _) => email.clone(),
        (_, _, Some(id)) if *id != label => format!("id {id}"),
        _ => String::new(),
    };
    Some(ActorView {
        avatar: avatar(&label),
        label,
        detail,
        id: a.id.clone(),
        kind: a.kind.as_str(),
    })
}

/// The record acted on, ready to show.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub kind: String,
    pub id: Option<String>,
    pub label: String,
}

pub fn target(e: &Event) -> Option<TargetView> {
    let t = e.target.as_ref()?;
    let label = match (&t.name, &t.id) {
        (Some(name), _) => name.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => t.kind.clone(),
    };
    Some(TargetView {
        kind: t.kind.clone(),
        id: t.id.clone(),
        label,
    })
}

/// Tenant names are safe URL text, but go through [`Url`] like everything else.
pub fn tenant_param(t: &TenantName) -> (&'static str, String) {
    ("tenant", t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_parameters() {
        let u = Url::with_segments("/ui/targets/", &["user", "a/b ?#&\"<>"])
            .param("tenant", "acme")
            .param("q", "x&y=z <script>");
        assert_eq!(
            u.as_str(),
            "/ui/targets/user/a%2Fb%20%3F%23%26%22%3C%3E?tenant=acme&q=x%26y%3Dz+%3Cscript%3E"
        );
        assert!(is_safe_href(u.as_str()));
        let dots = Url::with_segments("/ui/events/", &[".."]);
        assert_eq!(dots.as_str(), "/ui/events/%2E%2E");
        // Whatever an id holds, the link stays a /ui path.
        for hostile in [
            "javascript:alert(1)",
            "//evil.example/x",
            "https://evil.example",
            "\\\\evil",
        ] {
            let u = Url::with_segments("/ui/events/", &[hostile]).param("ip", hostile);
            assert!(is_safe_href(u.as_str()), "{u}");
            assert!(u.as_str().starts_with("/ui/events/"), "{u}");
            assert!(!u.as_str().contains("//"), "{u}");
        }
        assert!(!is_safe_href("javascript:alert(1)"));
        assert!(!is_safe_href("//evil.example/ui"));
    }

    #[test]
    fn avatars_are_stable_and_initialled() {
        let a = avatar("Ana Torres");
        assert_eq!(a.initials, "AT");
        assert_eq!(a, avatar("Ana Torres"));
        assert_eq!(a.class, avatar("ana torres").class);
        assert_eq!(avatar("admin@example.com").initials, "AE");
        assert_eq!(avatar("  ").initials, "?");
        assert_eq!(avatar("Ñandú").initials, "Ñ");
        let classes: std::collections::HashSet<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|n| avatar(n).class)
            .collect();
        assert!(classes.len() > 2, "hash spreads colours: {classes:?}");
    }

    #[test]
    fn json_tokens_join_to_pretty_json() {
        let v = serde_json::json!({"a": [1, "x<y", null, true], "b": {}, "c": {"d": 2.5}});
        let text: String = json_tokens(&v).into_iter().map(|t| t.text).collect();
        assert_eq!(text, serde_json::to_string_pretty(&v).unwrap());
    }

    #[test]
    fn values_and_truncation() {
        assert_eq!(value(None).kind, "absent");
        assert_eq!(value(Some(&Value::Null)).kind, "null");
        assert_eq!(value(Some(&serde_json::json!("admin"))).text, "admin");
        assert_eq!(value(Some(&serde_json::json!(3))).text, "3");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(short(Some(&serde_json::json!({"a":1})), 10), "{…}");
    }
}
