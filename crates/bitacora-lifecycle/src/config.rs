//! `[retention]` (CONTRACT §9): how long events are kept, where purged events are archived,
//! and how the purge paces itself.
//!
//! ```toml
//! [retention]
//! default = "400d"
//! check_interval = "1h"
//! archive_url = "file:///var/lib/bitacora/archive"
//! [[retention.rule]]
//! tenant = "acme"
//! category = "auth"
//! keep = "90d"
//! ```
//!
//! Rule resolution: a rule applies to an event when each of its `tenant`, `category` and
//! `action` (exact, or a prefix written `user.*`) matches; among those that apply, the most
//! specific wins — more of the three fields set, then an exact action over a prefix, then the
//! longer prefix, then the rule written first. No rule and no `default`: kept forever.

use std::fmt;
use std::str::FromStr;

use bitacora_core::TenantName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// An age or interval written `<n>s|m|h|d` (seconds, minutes, hours, days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Age {
    secs: u64,
    unit: char,
}

impl Age {
    pub const fn days(n: u64) -> Self {
        Self {
            secs: n * 86_400,
            unit: 'd',
        }
    }

    pub const fn hours(n: u64) -> Self {
        Self {
            secs: n * 3600,
            unit: 'h',
        }
    }

    pub fn as_secs(self) -> u64 {
        self.secs
    }

    pub fn as_micros(self) -> i64 {
        i64::try_from(self.secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000)
    }

    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }
}

impl FromStr for Age {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not a duration: write <n>s, <n>m, <n>h or <n>d (e.g. \"90d\")");
        let unit = s.chars().last().ok_or_else(bad)?;
        let factor = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        // Bounded so that an age in microseconds fits an i64 (about 292,000 years).
        let secs = n
            .checked_mul(factor)
            .filter(|s| *s <= 9_000_000_000_000)
            .ok_or_else(|| format!("`{s}` is too long a duration"))?;
        Ok(Self { secs, unit })
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.unit {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 1,
        };
        write!(f, "{}{}", self.secs / per, self.unit)
    }
}

impl Serialize for Age {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How long a rule keeps what it matches: an [`Age`], or `"forever"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    For(Age),
    Forever,
}

impl Serialize for Keep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Keep::For(a) => a.serialize(s),
            Keep::Forever => s.serialize_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "forever" {
            return Ok(Keep::Forever);
        }
        s.parse()
            .map(Keep::For)
            .map_err(|e| serde::de::Error::custom(format!("{e}, or \"forever\"")))
    }
}

/// One `[[retention.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// An exact action, or a prefix written `user.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub keep: Keep,
}

impl Rule {
    fn matches(&self, tenant: &TenantName, category: &str, action: &str) -> bool {
        self.tenant.as_ref().is_none_or(|t| t == tenant)
            && self.category.as_deref().is_none_or(|c| c == category)
            && self
                .action
                .as_deref()
                .is_none_or(|a| match a.strip_suffix('*') {
                    Some(prefix) => action.starts_with(prefix),
                    None => a == action,
                })
    }

    /// Orders rules by specificity (bigger wins).
    fn specificity(&self) -> (usize, bool, usize) {
        let fields = [
            self.tenant.is_some(),
            self.category.is_some(),
            self.action.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        let (exact, len) = match self.action.as_deref() {
            Some(a) => match a.strip_suffix('*') {
                Some(p) => (false, p.len()),
                None => (true, a.len()),
            },
            None => (false, 0),
        };
        (fields, exact, len)
    }

    /// Whether this rule could apply to some event of `tenant`.
    pub fn applies_to_tenant(&self, tenant: &TenantName) -> bool {
        self.tenant.as_ref().is_none_or(|t| t == tenant)
    }
}

/// The default `retention.partition_pause_percent`: the partition walk pauses this
/// percentage of each batch's own time after it. Measured at 1M events on two shared cores
/// (BENCHMARKS.md, "PostgreSQL partition drop paced"), ingest during the pass / alone and the
/// pass's time went 0.36× / 25 s (0) → 0.55× / 36 s (100) → 0.68× / 49 s (200); 300 gained
/// nothing more (0.59× against 200's 0.59× in the same conditions) for 54 s, too close to
/// the minute. 200 is the largest that kept the pass under a minute at that load.
pub const DEFAULT_PARTITION_PAUSE_PERCENT: u32 = 200;
/// The largest `retention.partition_pause_percent`: a walk ten times slower than it could be.
pub const MAX_PARTITION_PAUSE_PERCENT: u32 = 1000;

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Age (by `received_at`) past which an event no rule covers is purged; absent: kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Keep>,
    /// How often each server looks for expired events.
    pub check_interval: Age,
    /// Where purged events are archived first: `file:///path` (a folder the server can write)
    /// or `s3://bucket/prefix`. Absent: a folder beside the store (see the server's docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_url: Option<String>,
    /// An S3-compatible server for an `s3://` archive (`https://minio.internal:9000`; an
    /// `http://` URL is allowed). Absent: `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT`, else AWS.
    /// Credentials come only from the environment (docs/LIFECYCLE.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region for an `s3://` archive. Absent: `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// else `us-east-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// A rule set purges only this long after it was first seen (so a mistaken shortening can
    /// be undone before anything goes).
    pub min_delay: Age,
    /// Most events in one purge (one archive object, one announcement).
    pub batch_size: u32,
    /// Most events purged by one store transaction: whole purges of `batch_size` (at least
    /// one), announced by one append. Larger transactions cost less per event (the index
    /// pages their deletes touch are written once) but hold the write lock longer.
    pub transaction_size: u32,
    /// Pacing of a whole partition's archive walk (PostgreSQL month drops): after each batch
    /// is read, bundled, compressed and written, the walk pauses this percentage of the time
    /// that took before the next batch takes its place, so ingest keeps a share of the
    /// machine (on two cores, every CPU-second the walk uses is one ingest does not get).
    /// 0: no pause, as fast as possible. See [`DEFAULT_PARTITION_PAUSE_PERCENT`].
    pub partition_pause_percent: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<Rule>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default: None,
            check_interval: Age::hours(1),
            archive_url: None,
            s3_endpoint: None,
            s3_region: None,
            min_delay: Age::days(7),
            batch_size: 2000,
            transaction_size: 20_000,
            partition_pause_percent: DEFAULT_PARTITION_PAUSE_PERCENT,
            rule: Vec::new(),
        }
    }
}

impl RetentionConfig {
    /// Whether anything is ever purged.
    pub fn enabled(&self) -> bool {
        matches!(self.default, Some(Keep::For(_)))
            || self.rule.iter().any(|r| matches!(r.keep, Keep::For(_)))
    }

    /// Checks what serde cannot: a usable batch size and interval, valid rule fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err("retention.batch_size must be between 1 and 100000".into());
        }
        if self.transaction_size == 0 || self.transaction_size > 1_000_000 {
            return Err("retention.transaction_size must be between 1 and 1000000".into());
        }
        if self.partition_pause_percent > MAX_PARTITION_PAUSE_PERCENT {
            return Err(format!(
                "retention.partition_pause_percent must be between 0 and {MAX_PARTITION_PAUSE_PERCENT}"
            ));
        }
        if self.check_interval.as_secs() == 0 {
            return Err("retention.check_interval must be at least 1s".into());
        }
        for (i, r) in self.rule.iter().enumerate() {
            if let Some(a) = &r.action {
                let name = a.strip_suffix('*').unwrap_or(a);
                if name.contains('*')
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
                {
                    return Err(format!(
                        "retention.rule[{i}].action `{a}`: an action name, or a prefix ending in *"
                    ));
                }
            }
            if r.category.as_deref().is_some_and(str::is_empty) {
                return Err(format!("retention.rule[{i}].category is empty"));
            }
        }
        if let Some(url) = &self.archive_url {
            crate::archive::check_url(url).map_err(|e| format!("retention.archive_url: {e}"))?;
        }
        if let Some(endpoint) = &self.s3_endpoint {
            crate::archive::check_endpoint(endpoint)
                .map_err(|e| format!("retention.s3_endpoint: {e}"))?;
        }
        if self.s3_region.as_deref().is_some_and(|r| {
            r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            return Err("retention.s3_region: a region name such as `eu-west-1`".into());
        }
        Ok(())
    }

    /// The S3 settings of the archive.
    pub fn archive_options(&self) -> crate::archive::ArchiveOptions {
        crate::archive::ArchiveOptions {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
        }
    }

    /// How long an event of `tenant` with this category and action is kept.
    pub fn keep_for(&self, tenant: &TenantName, category: &str, action: &str) -> Keep {
        let mut best: Option<&Rule> = None;
        for r in self
            .rule
            .iter()
            .filter(|r| r.matches(tenant, category, action))
        {
            if best.is_none_or(|b| r.specificity() > b.specificity()) {
                best = Some(r);
            }
        }
        best.map(|r| r.keep)
            .or(self.default)
            .unwrap_or(Keep::Forever)
    }

    /// The shortest age any event of `tenant` can be kept for, if anything of it expires.
    pub fn shortest_for(&self, tenant: &TenantName) -> Option<Age> {
        self.rule
            .iter()
            .filter(|r| r.applies_to_tenant(tenant))
            .map(|r| r.keep)
            .chain(self.default)
            .filter_map(|k| match k {
                Keep::For(a) => Some(a),
                Keep::Forever => None,
            })
            .min()
    }

    /// The shortest age any event of any tenant can be kept for, if anything expires.
    pub fn shortest(&self) -> Option<Age> {
        self.rule
            .iter()
            .map(|r| r.keep)
            .chain(self.default)
            .filter_map(|k| match k {
                Keep::For(a) => Some(a),
                Keep::Forever => None,
            })
            .min()
    }

    /// The rules that can apply to `tenant`, most specific first.
    pub fn rules_for(&self, tenant: &TenantName) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self
            .rule
            .iter()
            .filter(|r| r.applies_to_tenant(tenant))
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        rules
    }

    /// A fingerprint of what decides what is purged (the default and the rules), so a change
    /// is noticed by every server sharing the store.
    pub fn fingerprint(&self) -> String {
        let v = serde_json::json!({"default": self.default, "rule": self.rule});
        hex::encode(Sha256::digest(v.to_string().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TenantName {
        TenantName::parse(name).unwrap()
    }

    fn parse(toml_text: &str) -> Result<RetentionConfig, String> {
        let v: RetentionConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        v.validate()?;
        Ok(v)
    }

    #[test]
    fn durations_parse_and_print() {
        for (s, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("2h", 7200),
            ("400d", 400 * 86_400),
        ] {
            let a: Age = s.parse().unwrap();
            assert_eq!(a.as_secs(), secs);
            assert_eq!(a.to_string(), s);
        }
        for bad in [
            "",
            "d",
            "10",
            "10w",
            "-1d",
            "1.5d",
            " 1d",
            "1d ",
            "99999999999999999d",
        ] {
            assert!(bad.parse::<Age>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn bad_durations_and_unknown_fields_are_clear_errors() {
        let e = parse("default = \"90 days\"").unwrap_err();
        assert!(e.contains("is not a duration"), "{e}");
        let e = parse("[[rule]]\ncategory = \"auth\"\nkeep = \"1y\"").unwrap_err();
        assert!(e.contains("`1y` is not a duration"), "{e}");
        let e = parse("[[rule]]\ncategory = \"auth\"\nkeep = \"1d\"\nkept = \"2d\"").unwrap_err();
        assert!(e.contains("unknown field `kept`"), "{e}");
        let e = parse("defualt = \"1d\"").unwrap_err();
        assert!(e.contains("unknown field `defualt`"), "{e}");
        let e = parse("[[rule]]\naction = \"us*er\"\nkeep = \"1d\"").unwrap_err();
        assert!(e.contains("prefix ending in *"), "{e}");
        let e = parse("archive_url = \"ftp://x/y\"").unwrap_err();
        assert!(e.contains("archive_url"), "{e}");
        let e = parse("archive_url = \"s3:///prefix\"").unwrap_err();
        assert!(e.contains("name the bucket"), "{e}");
        let e = parse("archive_url = \"gs://b/p\"").unwrap_err();
        assert!(e.contains("not built in"), "{e}");
        let e = parse("archive_url = \"s3://b/p\"\ns3_endpoint = \"minio:9000\"").unwrap_err();
        assert!(e.contains("retention.s3_endpoint"), "{e}");
        let e = parse("s3_region = \"eu west\"").unwrap_err();
        assert!(e.contains("retention.s3_region"), "{e}");
        let e = parse("s3_endpont = \"http://x\"").unwrap_err();
        assert!(e.contains("unknown field `s3_endpont`"), "{e}");
        let ok = parse(
            "archive_url = \"s3://audit-archive/bitacora/prod\"\n\
             s3_endpoint = \"http://10.0.0.5:9000\"\ns3_region = \"eu-west-1\"",
        )
        .unwrap();
        assert_eq!(
            ok.archive_options().s3_endpoint.as_deref(),
            Some("http://10.0.0.5:9000")
        );
        assert!(parse("batch_size = 0").is_err());
        assert!(parse("transaction_size = 0").is_err());
        assert!(parse("transaction_size = 1000001").is_err());
        assert_eq!(
            parse("transaction_size = 5000").unwrap().transaction_size,
            5000
        );
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let c = parse(
            r#"
            default = "400d"
            [[rule]]
            category = "auth"
            keep = "90d"
            [[rule]]
            tenant = "acme"
            category = "auth"
            keep = "30d"
            [[rule]]
            tenant = "acme"
            category = "auth"
            action = "auth.*"
            keep = "10d"
            [[rule]]
            tenant = "acme"
            category = "auth"
            action = "auth.login.*"
            keep = "5d"
            [[rule]]
            tenant = "acme"
            category = "auth"
            action = "auth.login.failed"
            keep = "forever"
            [[rule]]
            tenant = "acme"
            keep = "200d"
            "#,
        )
        .unwrap();
        let keep =
            |tenant: &str, category: &str, action: &str| c.keep_for(&t(tenant), category, action);
        assert_eq!(
            keep("other", "users", "user.create"),
            Keep::For(Age::days(400))
        );
        assert_eq!(
            keep("other", "auth", "auth.login"),
            Keep::For(Age::days(90))
        );
        assert_eq!(
            keep("acme", "users", "user.create"),
            Keep::For(Age::days(200))
        );
        assert_eq!(
            keep("acme", "auth", "session.start"),
            Keep::For(Age::days(30))
        );
        assert_eq!(
            keep("acme", "auth", "auth.logout"),
            Keep::For(Age::days(10))
        );
        assert_eq!(
            keep("acme", "auth", "auth.login.ok"),
            Keep::For(Age::days(5))
        );
        assert_eq!(keep("acme", "auth", "auth.login.failed"), Keep::Forever);
        assert_eq!(c.shortest_for(&t("acme")), Some(Age::days(5)));
        assert_eq!(c.shortest_for(&t("other")), Some(Age::days(90)));
        assert_eq!(c.rules_for(&t("other")).len(), 1);
    }

    #[test]
    fn no_rules_keeps_everything_and_fingerprints_follow_the_rules() {
        let none = RetentionConfig::default();
        assert!(!none.enabled());
        assert_eq!(none.keep_for(&t("a"), "c", "a"), Keep::Forever);
        let one = parse("default = \"30d\"").unwrap();
        assert!(one.enabled());
        let other = parse("default = \"30d\"\ncheck_interval = \"5m\"").unwrap();
        assert_eq!(one.fingerprint(), other.fingerprint());
        let shorter = parse("default = \"20d\"").unwrap();
        assert_ne!(one.fingerprint(), shorter.fingerprint());
    }

    #[test]
    fn the_partition_walk_pause_is_a_bounded_percentage() {
        assert_eq!(
            parse("").unwrap().partition_pause_percent,
            DEFAULT_PARTITION_PAUSE_PERCENT
        );
        assert_eq!(
            parse("partition_pause_percent = 0")
                .unwrap()
                .partition_pause_percent,
            0
        );
        let e = parse("partition_pause_percent = 1001").unwrap_err();
        assert!(e.contains("retention.partition_pause_percent"), "{e}");
        // Pacing is not a rule: changing it does not restart `min_delay`.
        let paced = parse("default = \"30d\"\npartition_pause_percent = 300").unwrap();
        assert_eq!(
            paced.fingerprint(),
            parse("default = \"30d\"").unwrap().fingerprint()
        );
    }
}
