//! The wire types of the HTTP API (CONTRACT §3), shared by the server and `bitacora-client`
//! so that both sides compile against one definition.

use serde::{Deserialize, Serialize};

use crate::canonical::Hash;
use crate::event::{Event, Severity};

/// Acknowledgement of one stored (or already stored) event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ack {
    pub id: String,
    pub seq: u64,
    /// Lowercase hex SHA-256 Merkle leaf hash.
    pub leaf_hash: String,
    /// True when an identical event with this `id` was already stored; nothing was written.
    pub duplicate: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Machine-readable kind, e.g. `invalid_field`, `conflict`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// The field or parameter at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<crate::FieldError> for ErrorDetail {
    fn from(e: crate::FieldError) -> Self {
        Self {
            code: e.code.to_owned(),
            message: e.message,
            field: e.field,
        }
    }
}

/// One entry of a batch response: an acknowledgement, or the error of the event at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum BatchItem {
    Stored(Ack),
    Rejected { index: usize, error: ErrorDetail },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResponse {
    /// One per submitted event, in order.
    pub results: Vec<BatchItem>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Numbered pagination only: the number of matching events — exact unless
    /// `total_exact` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Numbered pagination only: false when counting every match would have taken longer
    /// than the server's budget (`store.total_budget_ms`), so `total` (and `total_pages`) is
    /// an estimate from samples of the log; the page's events are exact either way, and the
    /// last page always knows the exact total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_exact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionSummary {
    pub action: String,
    pub category: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionList {
    pub actions: Vec<ActionSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorSummary {
    pub id: String,
    /// The most recent name and email seen for this actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub count: u64,
    /// The latest `occurred_at` of this actor's events.
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorList {
    pub actors: Vec<ActorSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC) of `occurred_at`.
    pub day: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeverityCount {
    pub severity: Severity,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorCount {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub count: u64,
}

/// Activity in a `since`/`until` window (on `occurred_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub tenant: String,
    pub since: String,
    /// Exclusive.
    pub until: String,
    pub total: u64,
    pub per_day: Vec<DayCount>,
    pub per_category: Vec<KeyCount>,
    pub per_severity: Vec<SeverityCount>,
    pub per_outcome: Vec<KeyCount>,
    pub top_actors: Vec<ActorCount>,
    pub top_ips: Vec<KeyCount>,
    /// Events with no `actor.id` (anonymous or out-of-band changes).
    pub without_actor: u64,
}

/// Every event on one record, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct History {
    pub events: Vec<Event>,
}

/// `GET /v1/log/proof/inclusion`: `{"leaf_index","tree_size","hashes":[hex...]}`, the RFC
/// 6962/9162 inclusion proof (feed it to `merkle::verify_inclusion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Lowercase hex SHA-256 hashes, leaf to root.
    #[serde(with = "hex_hashes")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub hashes: Vec<Hash>,
}

/// `GET /v1/log/proof/consistency`: `{"first","second","hashes":[hex...]}`, the RFC
/// 6962/9162 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    /// Lowercase hex SHA-256 hashes.
    #[serde(with = "hex_hashes")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub hashes: Vec<Hash>,
}

/// Where an event stands with respect to the latest signed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InclusionState {
    /// The checkpoint's signature verifies and the event's inclusion proof leads to its root.
    Verified,
    /// The event is newer than the latest checkpoint (signed within about a second), or the
    /// log has no checkpoint yet.
    Pending,
    /// Something does not verify: see `detail`.
    Failed,
}

impl InclusionState {
    pub fn as_str(self) -> &'static str {
        match self {
            InclusionState::Verified => "verified",
            InclusionState::Pending => "pending",
            InclusionState::Failed => "failed",
        }
    }
}

impl PartialEq<&str> for InclusionState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `GET /v1/events/{id}/inclusion`: is this event provably in the signed log? (What the
/// viewer shows on an event page.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionStatus {
    pub seq: u64,
    /// The leaf hash recomputed from the stored event (not copied from the stored column).
    pub leaf_hash: String,
    /// The latest signed checkpoint (signed-note text), if any.
    pub checkpoint: Option<String>,
    /// Its tree size.
    pub tree_size: Option<u64>,
    /// The event's inclusion proof in that tree, when the event is in it.
    pub proof: Option<InclusionProof>,
    pub state: InclusionState,
    /// True exactly when `state` is `verified`.
    pub verified: bool,
    /// One human sentence saying why.
    pub detail: String,
}

/// Hashes as a JSON array of lowercase hex strings.
pub mod hex_hashes {
    use crate::canonical::{Hash, hex_hash, parse_hex_hash};
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hashes.len()))?;
        for h in hashes {
            seq.serialize_element(&hex_hash(h))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| {
                parse_hex_hash(s).ok_or_else(|| {
                    serde::de::Error::custom(format!("`{s}` is not a hex SHA-256 hash"))
                })
            })
            .collect()
    }
}
