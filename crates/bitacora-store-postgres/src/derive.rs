//! Values derived from an event for its row: the shared definitions of
//! [`bitacora_store::derive`], with what PostgreSQL's `text` type needs on top.

use bitacora_core::Event;

pub use bitacora_store::derive::{actor_search, ip_blob, ip_from_blob, ip_range, narrow_network};

/// The text `q=` searches ([`bitacora_store::derive::fts_text`]). PostgreSQL text cannot hold
/// NUL; it carries no searchable meaning anyway.
pub fn fts_text(event: &Event) -> String {
    let out = bitacora_store::derive::fts_text(event);
    if out.contains('\0') {
        out.replace('\0', " ")
    } else {
        out
    }
}
