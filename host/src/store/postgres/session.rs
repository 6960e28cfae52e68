//! A connection of the PostgreSQL store, reopened when it breaks, with its prepared
//! statements.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::super::StoreError;
use super::super::sql::{INSERT_DEAD_LETTER, MARK_JOURNALED, SELECT_RECORD};
use super::statements::{claim_sql, count_uncounted_sql, on_database_clock, settle_sql};

/// One connection, reopened when it breaks, with its prepared statements.
pub(super) struct Session {
    pub(super) config: Config,
    /// Whether its commits must be synced: checked on the live connection, since a
    /// pooler between the host and the server may drop the startup options that ask
    /// for it.
    pub(super) synced: bool,
    pub(super) open: Mutex<Option<Arc<Prepared>>>,
}

pub(super) struct Prepared {
    pub(super) client: Client,
    pub(super) claim: Statement,
    pub(super) count_uncounted: Statement,
    pub(super) settle: Statement,
    pub(super) journal: Statement,
    pub(super) record: Statement,
}

impl Session {
    /// The open connection, or a new one when there is none or it broke.
    pub(super) async fn get(&self) -> Result<Arc<Prepared>, StoreError> {
        let mut open = self.open.lock().await;
        if let Some(prepared) = open.as_ref()
            && !prepared.client.is_closed()
        {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(self.connect().await?);
        *open = Some(prepared.clone());
        Ok(prepared)
    }

    async fn connect(&self) -> Result<Prepared, StoreError> {
        let client = connect(&self.config).await?;
        if self.synced {
            let row = client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .map_err(|err| StoreError::new("reading synchronous_commit", err))?;
            let setting: String = row.get(0);
            if setting == "off" {
                return Err(StoreError(
                    "the journal's connection has synchronous_commit=off (a pooler between \
                     the host and PostgreSQL may drop the options the host sets): journal \
                     writes, the receipt of every 2xx for a dead letter, would not be synced"
                        .into(),
                ));
            }
        }
        let prepare = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|err| StoreError::new("preparing statements", err))
            }
        };
        Ok(Prepared {
            claim: prepare(claim_sql()).await?,
            count_uncounted: prepare(count_uncounted_sql()).await?,
            settle: prepare(settle_sql()).await?,
            journal: prepare(on_database_clock(
                &format!(
                    "WITH entry AS ({INSERT_DEAD_LETTER}), marked AS ({MARK_JOURNALED}) \
                     SELECT id FROM entry"
                ),
                8,
            ))
            .await?,
            record: prepare(SELECT_RECORD.to_owned()).await?,
            client,
        })
    }
}

/// A new connection, driven by its own task until it closes.
pub(super) async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| StoreError::new("connecting to PostgreSQL", err))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {err}");
        }
    });
    Ok(client)
}
