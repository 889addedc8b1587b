//! Monthly partitions of `events`, created ahead of need.
//!
//! `events` is partitioned by month of `received_at` (the server's clock). A partition must
//! exist before a row for its month arrives, so they are created: at open, for the previous
//! month through `months_ahead` months ahead; by a background task every hour, which keeps
//! that window moving while a server runs for months; and, as a last resort, by the writer
//! just before a commit whose events fall in a month no one created yet (an event received
//! under a skewed clock, or an import of sealed events). The SQL function
//! `bitacora_ensure_partition` is idempotent and serialized by an advisory lock, so several
//! servers doing this at once is harmless.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use bitacora_store::StoreResult;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;

use crate::pg_error;

/// Months this process knows to exist (year * 12 + month0), so the writer asks the database
/// only about a month it has not seen.
#[derive(Debug, Default)]
pub struct Partitions {
    known: Mutex<HashSet<i32>>,
}

fn month_key(t: DateTime<Utc>) -> i32 {
    t.year() * 12 + t.month0() as i32
}

fn month_start(key: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(
        key.div_euclid(12),
        key.rem_euclid(12) as u32 + 1,
        1,
        0,
        0,
        0,
    )
    .single()
    .expect("the first of a month at midnight UTC exists")
}

impl Partitions {
    /// Creates the partitions holding each of these instants, if missing.
    pub async fn ensure<C: GenericClient>(
        &self,
        client: &C,
        instants: impl IntoIterator<Item = DateTime<Utc>>,
    ) -> StoreResult<()> {
        let wanted: HashSet<i32> = instants.into_iter().map(month_key).collect();
        let missing: Vec<i32> = {
            let known = self.known.lock().expect("partitions lock");
            wanted.difference(&known).copied().collect()
        };
        for key in missing {
            let created: bool = client
                .query_one("SELECT bitacora_ensure_partition($1)", &[&month_start(key)])
                .await
                .map_err(pg_error)?
                .get(0);
            if created {
                tracing::info!(
                    month = %month_start(key).format("%Y-%m"),
                    "created an events partition"
                );
            }
            self.known.lock().expect("partitions lock").insert(key);
        }
        Ok(())
    }

    /// Forgets a month whose partition was dropped (retention), so a later write for it (an
    /// import of old sealed events) creates it again instead of failing.
    pub fn forget(&self, month: DateTime<Utc>) {
        self.known
            .lock()
            .expect("partitions lock")
            .remove(&month_key(month));
    }

    /// Creates the partitions from the month before `now` to `months_ahead` months after it.
    pub async fn ensure_ahead<C: GenericClient>(
        &self,
        client: &C,
        now: DateTime<Utc>,
        months_ahead: u32,
    ) -> StoreResult<()> {
        let this = month_key(now);
        let months = (this - 1..=this + months_ahead as i32).map(month_start);
        self.ensure(client, months).await
    }
}

/// Keeps the window of partitions ahead moving, hourly, until aborted. A failure (the
/// database is down) is logged and retried at the next tick: the writer creates a missing
/// partition itself anyway.
pub async fn maintain(pool: Pool, partitions: std::sync::Arc<Partitions>, months_ahead: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match pool.get().await {
            Ok(client) => {
                partitions
                    .ensure_ahead(&**client, Utc::now(), months_ahead)
                    .await
            }
            Err(e) => Err(crate::pool_error(e)),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not create the events partitions ahead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_keys_round_trip_across_years() {
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(
            month_start(month_key(t)),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month_start(month_key(t) + 1),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month_start(month_key(t) - 12),
            Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap()
        );
    }
}
