//! The delivery tables (migration `0008_delivery.sql`): destinations, stream positions,
//! alert rules, their evaluation state, and leases. Small tables written a few times a
//! second at most, so every call is one statement on a pooled connection.

use bitacora_core::TenantName;
use bitacora_store::{
    AlertRuleRecord, DeliveryPosition, DestinationRecord, StoreError, StoreResult,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sql_error;

fn tenant_of(raw: Option<String>) -> StoreResult<Option<TenantName>> {
    raw.map(|t| {
        TenantName::parse(&t).map_err(|e| StoreError::Corrupt(format!("stored tenant `{t}`: {e}")))
    })
    .transpose()
}

pub(crate) fn insert_destination(c: &mut Connection, d: &DestinationRecord) -> StoreResult<()> {
    c.execute(
        "INSERT INTO delivery_destinations (id, name, tenant, spec, created_at, disabled)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            d.id,
            d.name,
            d.tenant.as_ref().map(TenantName::as_str),
            d.spec,
            d.created_at,
            d.disabled
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn destinations(c: &mut Connection) -> StoreResult<Vec<DestinationRecord>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, name, tenant, spec, created_at, disabled FROM delivery_destinations
             ORDER BY created_at, id",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .map(|(id, name, tenant, spec, created_at, disabled)| {
            Ok(DestinationRecord {
                id,
                name,
                tenant: tenant_of(tenant)?,
                spec,
                created_at,
                disabled,
            })
        })
        .collect()
}

pub(crate) fn delete_destination(c: &mut Connection, id: &str) -> StoreResult<bool> {
    let tx = c.transaction().map_err(sql_error)?;
    tx.execute(
        "DELETE FROM delivery_positions WHERE destination_id = ?1",
        [id],
    )
    .map_err(sql_error)?;
    let n = tx
        .execute("DELETE FROM delivery_destinations WHERE id = ?1", [id])
        .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(n > 0)
}

pub(crate) fn disable_destination(c: &mut Connection, id: &str, reason: &str) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE delivery_destinations SET disabled = ?2 WHERE id = ?1",
            params![id, reason],
        )
        .map_err(sql_error)?;
    Ok(n > 0)
}

/// `table` is one of the two spec-holding tables, named by the caller (never user input).
pub(crate) fn update_spec(
    c: &mut Connection,
    table: &'static str,
    id: &str,
    spec: &str,
) -> StoreResult<bool> {
    let n = c
        .execute(
            &format!("UPDATE {table} SET spec = ?2 WHERE id = ?1"),
            params![id, spec],
        )
        .map_err(sql_error)?;
    Ok(n > 0)
}

pub(crate) fn delivery_positions(
    c: &mut Connection,
    destination_id: &str,
) -> StoreResult<Vec<DeliveryPosition>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT tenant, next_seq, last_success_at, last_error, last_error_at
             FROM delivery_positions WHERE destination_id = ?1 ORDER BY tenant",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([destination_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .map(
            |(tenant, next_seq, last_success_at, last_error, last_error_at)| {
                Ok(DeliveryPosition {
                    destination_id: destination_id.to_owned(),
                    tenant: tenant_of(Some(tenant))?.expect("some"),
                    next_seq: next_seq as u64,
                    last_success_at,
                    last_error,
                    last_error_at,
                })
            },
        )
        .collect()
}

pub(crate) fn save_delivery_position(c: &mut Connection, p: &DeliveryPosition) -> StoreResult<()> {
    c.execute(
        "INSERT INTO delivery_positions
             (destination_id, tenant, next_seq, last_success_at, last_error, last_error_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (destination_id, tenant) DO UPDATE SET
             next_seq = max(delivery_positions.next_seq, excluded.next_seq),
             last_success_at = excluded.last_success_at,
             last_error = excluded.last_error,
             last_error_at = excluded.last_error_at",
        params![
            p.destination_id,
            p.tenant.as_str(),
            p.next_seq as i64,
            p.last_success_at,
            p.last_error,
            p.last_error_at
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn insert_alert_rule(c: &mut Connection, r: &AlertRuleRecord) -> StoreResult<()> {
    c.execute(
        "INSERT INTO alert_rules (id, name, tenant, spec, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            r.id,
            r.name,
            r.tenant.as_ref().map(TenantName::as_str),
            r.spec,
            r.created_at
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn alert_rules(c: &mut Connection) -> StoreResult<Vec<AlertRuleRecord>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, name, tenant, spec, created_at FROM alert_rules ORDER BY created_at, id",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .map(|(id, name, tenant, spec, created_at)| {
            Ok(AlertRuleRecord {
                id,
                name,
                tenant: tenant_of(tenant)?,
                spec,
                created_at,
            })
        })
        .collect()
}

pub(crate) fn delete_alert_rule(c: &mut Connection, id: &str) -> StoreResult<bool> {
    let tx = c.transaction().map_err(sql_error)?;
    tx.execute("DELETE FROM alert_states WHERE rule_id = ?1", [id])
        .map_err(sql_error)?;
    let n = tx
        .execute("DELETE FROM alert_rules WHERE id = ?1", [id])
        .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(n > 0)
}

pub(crate) fn alert_state(
    c: &mut Connection,
    rule_id: &str,
    tenant: &TenantName,
) -> StoreResult<Option<String>> {
    c.query_row(
        "SELECT state FROM alert_states WHERE rule_id = ?1 AND tenant = ?2",
        params![rule_id, tenant.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_error)
}

pub(crate) fn save_alert_state(
    c: &mut Connection,
    rule_id: &str,
    tenant: &TenantName,
    state: &str,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO alert_states (rule_id, tenant, state) VALUES (?1, ?2, ?3)
         ON CONFLICT (rule_id, tenant) DO UPDATE SET state = excluded.state",
        params![rule_id, tenant.as_str(), state],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn save_alert_states(
    c: &mut Connection,
    tenant: &TenantName,
    states: &[(String, String)],
) -> StoreResult<()> {
    let tx = c.transaction().map_err(sql_error)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO alert_states (rule_id, tenant, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (rule_id, tenant) DO UPDATE SET state = excluded.state",
            )
            .map_err(sql_error)?;
        for (rule_id, state) in states {
            stmt.execute(params![rule_id, tenant.as_str(), state])
                .map_err(sql_error)?;
        }
    }
    tx.commit().map_err(sql_error)?;
    Ok(())
}

pub(crate) fn acquire_lease(
    c: &mut Connection,
    name: &str,
    holder: &str,
    now: i64,
    ttl_micros: i64,
) -> StoreResult<bool> {
    let n = c
        .execute(
            "INSERT INTO delivery_leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 expires_at = excluded.expires_at
             WHERE delivery_leases.holder = excluded.holder OR delivery_leases.expires_at < ?4",
            params![name, holder, now.saturating_add(ttl_micros), now],
        )
        .map_err(sql_error)?;
    Ok(n > 0)
}
