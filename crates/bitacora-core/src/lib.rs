//! bitacora's domain, free of I/O: what an audit event is and how it is validated
//! ([`event`]), its canonical form and leaf hash ([`canonical`]), the search filters
//! ([`query`]), the wire types shared by the server and the client SDK ([`api`]), and the
//! errors a caller can act on ([`error`]).
//!
//! Nothing here knows about HTTP, SQL or tokio; the server and the stores depend on this crate,
//! never the other way round.

pub mod api;
pub mod canonical;
pub mod checkpoint;
pub mod error;
pub mod event;
pub mod merkle;
pub mod query;
pub mod seal;
pub mod tlog;
pub mod witness;

pub use canonical::SealedEvent;
pub use error::FieldError;
pub use event::{
    Actor, ActorType, Change, Context, Event, EventInput, IngestContext, IngestPolicy, Outcome,
    Severity, Target, TenantName,
};
pub use query::{EventFilter, EventQuery, Order, Pagination};
