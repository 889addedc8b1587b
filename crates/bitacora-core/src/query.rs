//! Search filters and pagination, shared by `GET /v1/events`, `/v1/export` and
//! `bitacora export` (CONTRACT §3).
//!
//! [`EventQuery::parse`] turns the raw `name=value` parameters into a checked query; every
//! store answers the same [`EventQuery`], so the filters mean the same thing everywhere.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use ipnet::IpNet;

use crate::error::FieldError;
use crate::event::{Outcome, Severity, TenantName, normalize_ip, timestamp};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;
/// Longest accepted filter value, in characters.
pub const MAX_FILTER_CHARS: usize = 1024;

/// The query parameter names the search accepts; anything else is refused so that a typo
/// never silently widens an investigation.
pub const PARAMETERS: &[&str] = &[
    "tenant",
    "action",
    "category",
    "severity",
    "min_severity",
    "outcome",
    "actor_id",
    "actor",
    "target_type",
    "target_id",
    "ip",
    "source",
    "since",
    "until",
    "q",
    "order",
    "limit",
    "cursor",
    "page",
    "per_page",
];

/// One action pattern: an exact name, or a prefix written `user.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    Exact(String),
    Prefix(String),
}

impl ActionPattern {
    pub fn matches(&self, action: &str) -> bool {
        match self {
            ActionPattern::Exact(a) => a == action,
            ActionPattern::Prefix(p) => action.starts_with(p.as_str()),
        }
    }
}

/// Which events: every field optional, all combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Any of these actions (empty: any action).
    pub actions: Vec<ActionPattern>,
    /// Any of these categories (empty: any).
    pub categories: Vec<String>,
    /// Any of these severities (empty: any). `min_severity` is expanded into this set.
    pub severities: Vec<Severity>,
    pub outcome: Option<Outcome>,
    pub actor_id: Option<String>,
    /// Case-insensitive part of the actor's name or email.
    pub actor: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Events whose `context.ip` is in this block (an address is a /32 or /128).
    pub ip: Option<IpNet>,
    pub source: Option<String>,
    /// `occurred_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `occurred_at < until` (exclusive: an inclusive RFC 3339 bound or a whole day is
    /// turned into the first instant after it).
    pub until: Option<DateTime<Utc>>,
    /// Full-text terms, all required, over description, actor and target names, changes and
    /// metadata. Diacritics and case are folded.
    pub text: Vec<String>,
}

impl EventFilter {
    /// True when no filter narrows the tenant's log.
    pub fn is_empty(&self) -> bool {
        *self == EventFilter::default()
    }
}

/// Result order, by `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// Keyset pagination (`limit` + `cursor`) or numbered pages with an exact total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// The next `limit` events after the position `after` (exclusive) in the given order.
    Cursor { limit: u32, after: Option<u64> },
    /// Page `page` (1-based) of `per_page` events, with the total count.
    Numbered { page: u32, per_page: u32 },
}

/// A complete search: the tenant, the filter, the order and the page.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub tenant: TenantName,
    pub filter: EventFilter,
    pub order: Order,
    pub page: Pagination,
}

/// An opaque position in a tenant's log: the `seq` of the last event of a page and the
/// order it was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub order: Order,
}

impl Cursor {
    pub fn encode(self) -> String {
        let o = match self.order {
            Order::Desc => 'd',
            Order::Asc => 'a',
        };
        URL_SAFE_NO_PAD.encode(format!("v1{o}{}", self.seq))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
        let raw = std::str::from_utf8(&raw).ok()?;
        let rest = raw.strip_prefix("v1")?;
        let order = match rest.chars().next()? {
            'd' => Order::Desc,
            'a' => Order::Asc,
            _ => return None,
        };
        let seq = rest[1..].parse().ok()?;
        Some(Cursor { seq, order })
    }
}

impl EventQuery {
    /// A query for a whole tenant, newest first, first page of `limit`.
    pub fn tenant(tenant: TenantName) -> Self {
        Self {
            tenant,
            filter: EventFilter::default(),
            order: Order::Desc,
            page: Pagination::Cursor {
                limit: DEFAULT_LIMIT,
                after: None,
            },
        }
    }

    /// Parses query parameters into a query of `tenant`.
    ///
    /// The tenant is *given*, never taken from the parameters: on the server it is what the
    /// credential resolved (`auth::Principal`), so no parameter can make a query read another
    /// tenant than the one access was checked for. A `tenant` parameter is still accepted (the
    /// API documents it, and the server resolves it before calling this), but it must name
    /// `tenant` itself. A repeated parameter is an error (lists are comma-separated).
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        tenant: &TenantName,
    ) -> Result<Self, FieldError> {
        let mut map: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in params {
            if !PARAMETERS.contains(&k) {
                return Err(FieldError::new(
                    "unknown_parameter",
                    k,
                    format!("unknown query parameter `{k}`"),
                ));
            }
            if map.insert(k, v).is_some() {
                return Err(FieldError::new(
                    "invalid_query",
                    k,
                    "given more than once (use a comma-separated list)",
                ));
            }
            if v.chars().count() > MAX_FILTER_CHARS {
                return Err(FieldError::new(
                    "invalid_query",
                    k,
                    format!("longer than {MAX_FILTER_CHARS} characters"),
                ));
            }
            if v.contains('\0') {
                return Err(FieldError::new(
                    "invalid_query",
                    k,
                    "contains a NUL character",
                ));
            }
        }
        let get = |k: &str| map.get(k).copied().filter(|v| !v.trim().is_empty());
        let bad = |k: &str, m: String| FieldError::new("invalid_query", k, m);

        if let Some(t) = get("tenant") {
            let named = TenantName::parse(t.trim()).map_err(|m| bad("tenant", m))?;
            if named != *tenant {
                return Err(bad(
                    "tenant",
                    format!("`{named}`: this request reads tenant `{tenant}`"),
                ));
            }
        }
        let tenant = tenant.clone();

        let mut filter = EventFilter::default();
        if let Some(v) = get("action") {
            filter.actions = list(v)
                .map(|a| match a.strip_suffix('*') {
                    Some(prefix) => Ok(ActionPattern::Prefix(prefix.to_owned())),
                    None if a.contains('*') => Err(bad(
                        "action",
                        format!("`{a}`: `*` is allowed only at the end"),
                    )),
                    None => Ok(ActionPattern::Exact(a.to_owned())),
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("category") {
            filter.categories = list(v).map(str::to_owned).collect();
        }
        if let Some(v) = get("severity") {
            filter.severities = list(v)
                .map(|s| s.parse::<Severity>().map_err(|m| bad("severity", m)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("min_severity") {
            let min: Severity = v.trim().parse().map_err(|m| bad("min_severity", m))?;
            let at_least = Severity::ALL.iter().copied().filter(|s| *s >= min);
            filter.severities = if filter.severities.is_empty() {
                at_least.collect()
            } else {
                filter.severities.retain(|s| *s >= min);
                if filter.severities.is_empty() {
                    return Err(bad(
                        "min_severity",
                        "excludes every severity listed in `severity`".into(),
                    ));
                }
                filter.severities
            };
        }
        if let Some(v) = get("outcome") {
            filter.outcome = Some(v.trim().parse().map_err(|m| bad("outcome", m))?);
        }
        filter.actor_id = get("actor_id").map(str::to_owned);
        filter.actor = get("actor").map(|s| s.trim().to_owned());
        filter.target_type = get("target_type").map(str::to_owned);
        filter.target_id = get("target_id").map(str::to_owned);
        filter.source = get("source").map(str::to_owned);
        if let Some(v) = get("ip") {
            filter.ip = Some(parse_ip_filter(v.trim()).map_err(|m| bad("ip", m))?);
        }
        if let Some(v) = get("since") {
            filter.since = Some(parse_bound(v.trim(), Bound::Since).map_err(|m| bad("since", m))?);
        }
        if let Some(v) = get("until") {
            filter.until = Some(parse_bound(v.trim(), Bound::Until).map_err(|m| bad("until", m))?);
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(bad("until", "must be after `since`".into()));
        }
        if let Some(v) = get("q") {
            filter.text = text_terms(v);
        }

        let order = match get("order") {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(o) => return Err(bad("order", format!("`{o}`: expected `desc` or `asc`"))),
        };

        let number = |k: &str, max: u32| -> Result<Option<u32>, FieldError> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=max).contains(n))
                        .ok_or_else(|| bad(k, format!("`{v}`: expected a number from 1 to {max}")))
                })
                .transpose()
        };
        let limit = number("limit", MAX_LIMIT)?;
        let page_no = number("page", u32::MAX)?;
        let per_page = number("per_page", MAX_LIMIT)?;
        let cursor = get("cursor");

        let page = if page_no.is_some() || per_page.is_some() {
            if cursor.is_some() {
                return Err(bad("cursor", "cannot be combined with `page`".into()));
            }
            if limit.is_some() {
                return Err(bad("limit", "use `per_page` with `page`".into()));
            }
            Pagination::Numbered {
                page: page_no.unwrap_or(1),
                per_page: per_page.unwrap_or(DEFAULT_LIMIT),
            }
        } else {
            let after = match cursor {
                Some(c) => {
                    let c = Cursor::decode(c.trim()).ok_or_else(|| {
                        bad("cursor", "not a cursor returned by this server".into())
                    })?;
                    if c.order != order {
                        return Err(bad("cursor", "was issued for the other `order`".into()));
                    }
                    Some(c.seq)
                }
                None => None,
            };
            Pagination::Cursor {
                limit: limit.unwrap_or(DEFAULT_LIMIT),
                after,
            }
        };

        Ok(Self {
            tenant,
            filter,
            order,
            page,
        })
    }
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// An address (`10.1.2.3`) or a block (`10.0.0.0/8`); IPv4-mapped IPv6 is treated as IPv4.
pub fn parse_ip_filter(v: &str) -> Result<IpNet, String> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(IpNet::from(normalize_ip(ip)));
    }
    let net: IpNet = v
        .parse()
        .map_err(|_| format!("`{v}` is neither an IP address nor a CIDR block"))?;
    Ok(net.trunc())
}

#[derive(Clone, Copy)]
enum Bound {
    Since,
    Until,
}

/// RFC 3339 or `YYYY-MM-DD` (UTC). `until` is returned exclusive: a bare date includes
/// the whole day, a timestamp includes that instant.
fn parse_bound(v: &str, bound: Bound) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(match bound {
            Bound::Since => start,
            Bound::Until => start + Duration::days(1),
        });
    }
    let t = timestamp::parse(v).map_err(|_| {
        format!("`{v}` is neither RFC 3339 (2026-01-20T10:30:00Z) nor a date (2026-01-20)")
    })?;
    Ok(match bound {
        Bound::Since => t,
        Bound::Until => t + Duration::microseconds(1),
    })
}

/// Splits full-text input into plain terms. Operators and punctuation carry no meaning:
/// a term is a run of letters and digits, so no input can be misread as query syntax.
pub fn text_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(32)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<EventQuery, FieldError> {
        parse_for(q, "default")
    }

    fn parse_for(q: &str, tenant: &str) -> Result<EventQuery, FieldError> {
        let pairs: Vec<(&str, &str)> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        EventQuery::parse(pairs, &TenantName::parse(tenant).unwrap())
    }

    #[test]
    fn the_tenant_is_given_never_taken_from_the_parameters() {
        assert_eq!(parse_for("", "acme").unwrap().tenant.as_str(), "acme");
        assert_eq!(
            parse_for("tenant=acme", "acme").unwrap().tenant.as_str(),
            "acme"
        );
        assert_eq!(
            parse_for("tenant=", "acme").unwrap().tenant.as_str(),
            "acme"
        );
        for q in [
            "tenant=globex",
            "tenant=%20globex",
            "tenant=acme&tenant=globex",
        ] {
            let err = parse_for(q, "acme").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("tenant"), "{q}: {err}");
        }
    }

    #[test]
    fn empty_query_is_newest_first_page() {
        let q = parse("").unwrap();
        assert_eq!(q.tenant.as_str(), "default");
        assert!(q.filter.is_empty());
        assert_eq!(q.order, Order::Desc);
        assert_eq!(
            q.page,
            Pagination::Cursor {
                limit: 50,
                after: None
            }
        );
    }

    #[test]
    fn filters_are_parsed() {
        let q = parse_for(
            "tenant=acme&action=user.*,LOGIN&severity=high,critical&outcome=failure&ip=10.0.0.0/8\
             &since=2026-01-01&until=2026-01-31&q=auditoría+rol&order=asc&limit=10",
            "acme",
        )
        .unwrap();
        assert_eq!(q.tenant.as_str(), "acme");
        assert_eq!(
            q.filter.actions,
            vec![
                ActionPattern::Prefix("user.".into()),
                ActionPattern::Exact("LOGIN".into())
            ]
        );
        assert_eq!(
            q.filter.severities,
            vec![Severity::High, Severity::Critical]
        );
        assert_eq!(q.filter.outcome, Some(Outcome::Failure));
        assert_eq!(q.filter.ip.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            timestamp::format(&q.filter.since.unwrap()),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            timestamp::format(&q.filter.until.unwrap()),
            "2026-02-01T00:00:00Z"
        );
        assert_eq!(q.filter.text, vec!["auditoría", "rol"]);
        assert_eq!(q.order, Order::Asc);
    }

    #[test]
    fn min_severity_expands_and_intersects() {
        let q = parse("min_severity=high").unwrap();
        assert_eq!(
            q.filter.severities,
            vec![Severity::High, Severity::Critical]
        );
        let q = parse("severity=low,critical&min_severity=medium").unwrap();
        assert_eq!(q.filter.severities, vec![Severity::Critical]);
        assert!(parse("severity=low&min_severity=high").is_err());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (q, field) in [
            ("severity=urgent", "severity"),
            ("ip=10.0.0.300", "ip"),
            ("ip=10.0.0.0/33", "ip"),
            ("since=yesterday", "since"),
            ("until=2026-13-01", "until"),
            ("since=2026-02-01&until=2026-01-01", "until"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("per_page=5000", "per_page"),
            ("cursor=garbage", "cursor"),
            ("page=2&cursor=djFkMTA", "cursor"),
            ("order=sideways", "order"),
            ("action=us*er", "action"),
            ("tenant=../etc", "tenant"),
            ("acton=x", "acton"),
        ] {
            let err = parse(q).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{q}: {err}");
        }
    }

    #[test]
    fn cursor_round_trips_and_checks_order() {
        let c = Cursor {
            seq: 12345,
            order: Order::Desc,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        let q = parse(&format!("cursor={}", c.encode())).unwrap();
        assert_eq!(
            q.page,
            Pagination::Cursor {
                limit: 50,
                after: Some(12345)
            }
        );
        assert!(parse(&format!("order=asc&cursor={}", c.encode())).is_err());
    }

    #[test]
    fn ip_filter_normalizes_mapped_addresses() {
        assert_eq!(
            parse_ip_filter("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_ip_filter("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn text_terms_drop_query_syntax() {
        assert_eq!(
            text_terms(r#"role" OR 1=1 -- NEAR(x*"#),
            vec!["role", "OR", "1", "1", "NEAR", "x"]
        );
        assert!(text_terms("\"*()").is_empty());
    }
}
