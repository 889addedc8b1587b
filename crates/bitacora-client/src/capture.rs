//! Telling database change capture who is acting (features `tokio-postgres` and `sqlx`).
//!
//! `bitacora capture install` puts triggers on an application's tables; they read who acts
//! from transaction-local settings (`bitacora.actor_id`, `bitacora.ip`, ... CONTRACT §5).
//! [`set_context`] sets them all with one statement, inside the transaction that then makes
//! the changes: they vanish at commit or rollback, so a pooled connection never carries one
//! request's user into the next.
//!
//! ```no_run
//! use bitacora_client::capture::{CaptureContext, set_context};
//!
//! # async fn demo(db: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
//! let tx = db.transaction().await?;
//! set_context(
//!     &tx,
//!     &CaptureContext::new()
//!         .actor_id("42")
//!         .actor_name("ana")
//!         .ip("192.168.1.100")
//!         .request_id("r-1"),
//! )
//! .await?;
//! tx.execute("UPDATE users SET role = 'admin' WHERE id = 456", &[]).await?;
//! tx.commit().await?; // the change and its audit record commit together
//! # Ok(())
//! # }
//! ```
//!
//! With sqlx (feature `sqlx`), [`set_context_sqlx`] on the transaction's connection:
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! set_context_sqlx(&mut tx, &CaptureContext::new().actor_id("42")).await?;
//! sqlx::query("UPDATE users SET role = 'admin' WHERE id = 456").execute(&mut *tx).await?;
//! tx.commit().await?;
//! ```
//!
//! Outside a transaction block the settings would last for one statement only: always call
//! these inside a transaction.

/// The one statement that sets every setting (`$1`..`$7` in [`CaptureContext::values`] order).
const SET_CONTEXT: &str = "SELECT set_config('bitacora.actor_id', $1, true), \
                                  set_config('bitacora.actor_name', $2, true), \
                                  set_config('bitacora.actor_email', $3, true), \
                                  set_config('bitacora.actor_type', $4, true), \
                                  set_config('bitacora.ip', $5, true), \
                                  set_config('bitacora.user_agent', $6, true), \
                                  set_config('bitacora.request_id', $7, true)";

/// Who acts, and from where. Unset fields are recorded as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureContext {
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
    /// `user` (the default when any actor field is set), `service`, `system` or `anonymous`.
    pub actor_type: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl CaptureContext {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn actor_id(mut self, v: impl Into<String>) -> Self {
        self.actor_id = Some(v.into());
        self
    }

    pub fn actor_name(mut self, v: impl Into<String>) -> Self {
        self.actor_name = Some(v.into());
        self
    }

    pub fn actor_email(mut self, v: impl Into<String>) -> Self {
        self.actor_email = Some(v.into());
        self
    }

    pub fn actor_type(mut self, v: impl Into<String>) -> Self {
        self.actor_type = Some(v.into());
        self
    }

    pub fn ip(mut self, v: impl Into<String>) -> Self {
        self.ip = Some(v.into());
        self
    }

    pub fn user_agent(mut self, v: impl Into<String>) -> Self {
        self.user_agent = Some(v.into());
        self
    }

    pub fn request_id(mut self, v: impl Into<String>) -> Self {
        self.request_id = Some(v.into());
        self
    }
}

impl CaptureContext {
    /// The settings' values in statement order; unset fields are the empty string, which the
    /// triggers read as "absent" (and which overwrites a value set earlier in the same
    /// transaction).
    fn values(&self) -> [String; 7] {
        [
            &self.actor_id,
            &self.actor_name,
            &self.actor_email,
            &self.actor_type,
            &self.ip,
            &self.user_agent,
            &self.request_id,
        ]
        .map(|v| v.clone().unwrap_or_default())
    }
}

/// Sets `bitacora.*` for the rest of the current transaction, in one round trip.
#[cfg(feature = "tokio-postgres")]
pub async fn set_context<C: tokio_postgres::GenericClient>(
    client: &C,
    context: &CaptureContext,
) -> Result<(), tokio_postgres::Error> {
    let v = context.values();
    client
        .execute(
            SET_CONTEXT,
            &[&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]],
        )
        .await?;
    Ok(())
}

/// [`set_context`] for sqlx: pass the transaction (`&mut tx`) or its connection.
#[cfg(feature = "sqlx")]
pub async fn set_context_sqlx(
    conn: &mut sqlx::PgConnection,
    context: &CaptureContext,
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(SET_CONTEXT);
    for value in context.values() {
        query = query.bind(value);
    }
    query.execute(conn).await?;
    Ok(())
}
