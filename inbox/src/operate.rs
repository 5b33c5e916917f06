//! Operating an inbox: list, show, replay, purge, prune, re-verify.

use std::collections::HashMap;
use std::time::Duration;

use mapping_webhooks::{Secrets, Verified};

use crate::db::on_pool;
use crate::delivery::{INFO_COLUMNS, info_from_row};
use crate::{DeliveryInfo, Inbox, InboxError, State, StoredDelivery};

/// How long done deliveries are kept by default before [`Inbox::prune`] deletes them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl Inbox {
    /// Up to `limit` deliveries in `state`, oldest first, with an id above `after` (0 for
    /// the first page; then the last id of the previous page).
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`].
    pub async fn list(
        &self,
        state: State,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryInfo>, InboxError> {
        let sql = format!(
            "SELECT {INFO_COLUMNS} FROM mapping_webhooks_inbox \
             WHERE namespace = $1 AND state = $2 AND id > $3 ORDER BY id LIMIT $4"
        );
        on_pool!(&self.shared.db, pool => {
            let rows = sqlx::query(&sql)
                .bind(&self.shared.namespace)
                .bind(state.as_str())
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|row| Ok(info_from_row!(row))).collect()
        })
    }

    /// How many deliveries are in each state (states with none are absent).
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`].
    pub async fn counts(&self) -> Result<HashMap<State, u64>, InboxError> {
        let sql = "SELECT state, COUNT(*) FROM mapping_webhooks_inbox \
                   WHERE namespace = $1 GROUP BY state";
        let rows: Vec<(String, i64)> = on_pool!(&self.shared.db, pool => {
            sqlx::query_as(sql).bind(&self.shared.namespace).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(state, n)| {
                let state = state
                    .parse()
                    .map_err(|e| InboxError::Database(sqlx::Error::Decode(Box::new(e))))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// One delivery, with its raw body, header and last error.
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`], [`InboxError::Database`].
    pub async fn show(&self, id: i64) -> Result<StoredDelivery, InboxError> {
        self.fetch(Key::Id(id))
            .await?
            .ok_or(InboxError::NotFound(id))
    }

    /// The delivery of `event_id`, if it was accepted: the first one stored, whatever
    /// its tenant (tenants may share an `eventId`; [`list`](Self::list) shows each
    /// row's [`tenant`](DeliveryInfo::tenant)).
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`].
    pub async fn find(&self, event_id: &str) -> Result<Option<StoredDelivery>, InboxError> {
        self.fetch(Key::Event(event_id)).await
    }

    async fn fetch(&self, key: Key<'_>) -> Result<Option<StoredDelivery>, InboxError> {
        let filter = match key {
            Key::Id(_) => "id = $2",
            Key::Event(_) => "event_id = $2",
        };
        let sql = format!(
            "SELECT {INFO_COLUMNS}, signature, body FROM mapping_webhooks_inbox \
             WHERE namespace = $1 AND {filter} ORDER BY id LIMIT 1"
        );
        on_pool!(&self.shared.db, pool => {
            let query = sqlx::query(&sql).bind(&self.shared.namespace);
            let query = match key {
                Key::Id(id) => query.bind(id),
                Key::Event(event_id) => query.bind(event_id),
            };
            let row = query.fetch_optional(pool).await?;
            match row {
                None => Ok(None),
                Some(row) => {
                    use sqlx::Row as _;
                    Ok(Some(StoredDelivery {
                        info: info_from_row!(&row),
                        signature: row.try_get("signature")?,
                        body: row.try_get("body")?,
                    }))
                }
            }
        })
    }

    /// Processes a delivery again from its first attempt, now: a dead one, or a done
    /// one whose effect you need again. Its attempts restart at zero.
    ///
    /// Returns `false` when it is running (a worker holds it).
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`], [`InboxError::Database`].
    pub async fn replay(&self, id: i64) -> Result<bool, InboxError> {
        let sql = "UPDATE mapping_webhooks_inbox \
                   SET state = 'pending', due_at = $1, attempts = 0, lease = NULL, finished_at = NULL \
                   WHERE namespace = $2 AND id = $3 AND state <> 'running'";
        let now = self.now_millis();
        let changed = on_pool!(&self.shared.db, pool => {
            sqlx::query(sql).bind(now).bind(&self.shared.namespace).bind(id)
                .execute(pool).await?.rows_affected()
        });
        if changed == 0 {
            // Tell "running" from "no such delivery".
            self.show(id).await?;
            return Ok(false);
        }
        self.shared.accepted.notify_one();
        Ok(true)
    }

    /// Replays every dead delivery; returns how many.
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`].
    pub async fn replay_dead(&self) -> Result<u64, InboxError> {
        let sql = "UPDATE mapping_webhooks_inbox \
                   SET state = 'pending', due_at = $1, attempts = 0, lease = NULL, finished_at = NULL \
                   WHERE namespace = $2 AND state = 'dead'";
        let now = self.now_millis();
        let n = on_pool!(&self.shared.db, pool => {
            sqlx::query(sql).bind(now).bind(&self.shared.namespace)
                .execute(pool).await?.rows_affected()
        });
        if n > 0 {
            self.shared.accepted.notify_one();
        }
        Ok(n)
    }

    /// Deletes one delivery for good. A later copy of its event is then accepted as new.
    /// Returns `false` when it is running.
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`], [`InboxError::Database`].
    pub async fn purge(&self, id: i64) -> Result<bool, InboxError> {
        let sql = "DELETE FROM mapping_webhooks_inbox \
                   WHERE namespace = $1 AND id = $2 AND state <> 'running'";
        let n = on_pool!(&self.shared.db, pool => {
            sqlx::query(sql).bind(&self.shared.namespace).bind(id)
                .execute(pool).await?.rows_affected()
        });
        if n == 0 {
            self.show(id).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Deletes every delivery in `state` (not `running`); returns how many.
    ///
    /// Deleting `pending` deliveries loses events: each was acknowledged to the sender
    /// (2xx) and never processed, and the sender will not send it again. The `inbox`
    /// tool of the example receiver asks for `--force` before it does.
    ///
    /// # Errors
    ///
    /// [`InboxError::Config`] for [`State::Running`], [`InboxError::Database`].
    pub async fn purge_state(&self, state: State) -> Result<u64, InboxError> {
        if state == State::Running {
            return Err(InboxError::config(
                "running deliveries cannot be purged: a worker holds them",
            ));
        }
        let sql = "DELETE FROM mapping_webhooks_inbox WHERE namespace = $1 AND state = $2";
        Ok(on_pool!(&self.shared.db, pool => {
            sqlx::query(sql).bind(&self.shared.namespace).bind(state.as_str())
                .execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes done deliveries that finished more than `retention` ago (the worker does
    /// this with [`DEFAULT_RETENTION`] unless told otherwise); returns how many. Dead
    /// deliveries are kept until replayed or purged.
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`].
    pub async fn prune(&self, retention: Duration) -> Result<u64, InboxError> {
        let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = self.now_millis().saturating_sub(retention);
        let sql = "DELETE FROM mapping_webhooks_inbox \
                   WHERE namespace = $1 AND state = 'done' AND finished_at < $2";
        Ok(on_pool!(&self.shared.db, pool => {
            sqlx::query(sql).bind(&self.shared.namespace).bind(cutoff)
                .execute(pool).await?.rows_affected()
        }))
    }

    /// Checks a stored delivery against its stored signed headers, by the scheme that
    /// verified it ([`Scheme::verify_stored`](mapping_webhooks::scheme::Scheme::verify_stored)),
    /// with `secrets` as they are now (pass the gate's,
    /// [`Gate::secrets`](mapping_webhooks::Gate::secrets), or, for a delivery of a
    /// tenant, that tenant's: a secret rotated out and removed, or expired, no longer
    /// verifies what it signed), whatever the delivery's age (the signature only, no
    /// timestamp window: the stored bytes are proven to be what the sender signed,
    /// however old), and that what was verified still names the stored event. The
    /// result carries the stored tenant.
    ///
    /// # Errors
    ///
    /// [`InboxError::Verify`] when it does not verify (a changed secret, an altered row),
    /// [`InboxError::NotFound`], [`InboxError::Database`].
    pub async fn reverify(&self, id: i64, secrets: &Secrets) -> Result<Verified, InboxError> {
        let stored = self.show(id).await?;
        // The handle's own clock still rules its secrets' expiry.
        let mut verified = stored
            .info
            .scheme
            .verify_stored(secrets, &stored.signature, &stored.body)
            .map_err(InboxError::Verify)?;
        if verified.event_id != stored.info.event_id
            || verified.event_type != stored.info.event_type
        {
            return Err(InboxError::Verify(
                mapping_webhooks::VerifyError::NotAnEnvelope(
                    "the signed request names another event than the stored row".into(),
                ),
            ));
        }
        verified.tenant = stored.info.tenant;
        Ok(verified)
    }
}

/// How [`Inbox::show`] and [`Inbox::find`] look a delivery up.
#[derive(Clone, Copy)]
enum Key<'a> {
    Id(i64),
    Event(&'a str),
}
