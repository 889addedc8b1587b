//! The delivery tables (migration `0006_delivery.sql`): destinations, stream positions,
//! alert rules, their evaluation state, and leases. Small tables written a few times a
//! second at most, so every call is one statement (or one short transaction).

use bitacora_core::TenantName;
use bitacora_store::{
    AlertRuleRecord, DeliveryPosition, DestinationRecord, StoreError, StoreResult,
};
use tokio_postgres::Row;

use crate::{PgStore, pg_error};

fn tenant_of(raw: Option<String>) -> StoreResult<Option<TenantName>> {
    raw.map(|t| {
        TenantName::parse(&t).map_err(|e| StoreError::Corrupt(format!("stored tenant `{t}`: {e}")))
    })
    .transpose()
}

fn destination_row(r: &Row) -> StoreResult<DestinationRecord> {
    Ok(DestinationRecord {
        id: r.get(0),
        name: r.get(1),
        tenant: tenant_of(r.get(2))?,
        spec: r.get(3),
        created_at: r.get(4),
        disabled: r.get(5),
    })
}

impl PgStore {
    pub(crate) async fn delivery_insert_destination(
        &self,
        d: &DestinationRecord,
    ) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO delivery_destinations (id, name, tenant, spec, created_at, disabled)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &d.id,
                    &d.name,
                    &d.tenant.as_ref().map(TenantName::as_str),
                    &d.spec,
                    &d.created_at,
                    &d.disabled,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(crate) async fn delivery_destinations(&self) -> StoreResult<Vec<DestinationRecord>> {
        self.client()
            .await?
            .query(
                "SELECT id, name, tenant, spec, created_at, disabled FROM delivery_destinations
                 ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(destination_row)
            .collect()
    }

    pub(crate) async fn delivery_delete_destination(&self, id: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "DELETE FROM delivery_positions WHERE destination_id = $1",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
        let n = tx
            .execute("DELETE FROM delivery_destinations WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(crate) async fn delivery_disable_destination(
        &self,
        id: &str,
        reason: &str,
    ) -> StoreResult<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE delivery_destinations SET disabled = $2 WHERE id = $1",
                &[&id, &reason],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    /// `table` is one of the two spec-holding tables, named by the caller (never user input).
    pub(crate) async fn delivery_update_spec(
        &self,
        table: &'static str,
        id: &str,
        spec: &str,
    ) -> StoreResult<bool> {
        let n = self
            .client()
            .await?
            .execute(
                &format!("UPDATE {table} SET spec = $2 WHERE id = $1"),
                &[&id, &spec],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(crate) async fn delivery_positions_of(
        &self,
        destination_id: &str,
    ) -> StoreResult<Vec<DeliveryPosition>> {
        self.client()
            .await?
            .query(
                "SELECT tenant, next_seq, last_success_at, last_error, last_error_at
                 FROM delivery_positions WHERE destination_id = $1 ORDER BY tenant",
                &[&destination_id],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| {
                Ok(DeliveryPosition {
                    destination_id: destination_id.to_owned(),
                    tenant: tenant_of(Some(r.get(0)))?.expect("some"),
                    next_seq: r.get::<_, i64>(1) as u64,
                    last_success_at: r.get(2),
                    last_error: r.get(3),
                    last_error_at: r.get(4),
                })
            })
            .collect()
    }

    pub(crate) async fn delivery_save_position(&self, p: &DeliveryPosition) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO delivery_positions
                     (destination_id, tenant, next_seq, last_success_at, last_error, last_error_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (destination_id, tenant) DO UPDATE SET
                     next_seq = GREATEST(delivery_positions.next_seq, excluded.next_seq),
                     last_success_at = excluded.last_success_at,
                     last_error = excluded.last_error,
                     last_error_at = excluded.last_error_at",
                &[
                    &p.destination_id,
                    &p.tenant.as_str(),
                    &(p.next_seq as i64),
                    &p.last_success_at,
                    &p.last_error,
                    &p.last_error_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(crate) async fn delivery_insert_rule(&self, r: &AlertRuleRecord) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO alert_rules (id, name, tenant, spec, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &r.id,
                    &r.name,
                    &r.tenant.as_ref().map(TenantName::as_str),
                    &r.spec,
                    &r.created_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(crate) async fn delivery_rules(&self) -> StoreResult<Vec<AlertRuleRecord>> {
        self.client()
            .await?
            .query(
                "SELECT id, name, tenant, spec, created_at FROM alert_rules ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| {
                Ok(AlertRuleRecord {
                    id: r.get(0),
                    name: r.get(1),
                    tenant: tenant_of(r.get(2))?,
                    spec: r.get(3),
                    created_at: r.get(4),
                })
            })
            .collect()
    }

    pub(crate) async fn delivery_delete_rule(&self, id: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("DELETE FROM alert_states WHERE rule_id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        let n = tx
            .execute("DELETE FROM alert_rules WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(crate) async fn delivery_rule_state(
        &self,
        rule_id: &str,
        tenant: &TenantName,
    ) -> StoreResult<Option<String>> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT state FROM alert_states WHERE rule_id = $1 AND tenant = $2",
                &[&rule_id, &tenant.as_str()],
            )
            .await
            .map_err(pg_error)?
            .map(|r| r.get(0)))
    }

    pub(crate) async fn delivery_save_rule_state(
        &self,
        rule_id: &str,
        tenant: &TenantName,
        state: &str,
    ) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO alert_states (rule_id, tenant, state) VALUES ($1, $2, $3)
                 ON CONFLICT (rule_id, tenant) DO UPDATE SET state = excluded.state",
                &[&rule_id, &tenant.as_str(), &state],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(crate) async fn delivery_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_micros: i64,
    ) -> StoreResult<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO delivery_leases (name, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE delivery_leases.holder = excluded.holder
                    OR delivery_leases.expires_at < $4",
                &[&name, &holder, &now.saturating_add(ttl_micros), &now],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }
}
