//! The tables, made once per database, and the version mark that lets a host starting
//! beside serving ones skip every DDL statement: `CREATE INDEX IF NOT EXISTS` and
//! `ADD COLUMN IF NOT EXISTS` lock their tables even when there is nothing to make, and
//! against other hosts' claims on those tables that stalled, or deadlocked, a start.
//!
//! - a database with the mark at this version or later: nothing is run;
//! - a database whose tables are all there but unmarked (made by a host from before
//!   the mark, perhaps still serving during a rolling upgrade): only the mark is made;
//! - anything else (a new database, or one made in part): the whole schema, under an
//!   advisory lock so that hosts starting at once make it once.

use tokio_postgres::{Client, GenericClient, IsolationLevel};

use super::super::StoreError;
use super::super::sql::{ADD_ROUTE_COLUMN, SCHEMA};

/// Serializes schema creation between hosts starting at once (any fixed number).
const SCHEMA_LOCK: i64 = 0x636d_715f_7374_6f72;

/// The schema's version, kept in `cmq_schema`: raise it with any change to the tables
/// (and make [`made_unmarked`] ask for what the change adds).
const SCHEMA_VERSION: i64 = 1;

/// Every table and index [`SCHEMA`] makes.
const OBJECTS: [&str; 7] = [
    "cmq_messages",
    "cmq_messages_updated",
    "cmq_uncounted",
    "cmq_notes",
    "cmq_notes_untaken",
    "cmq_notes_updated",
    "cmq_dead_letters",
];

/// Makes what the database lacks of the schema, and marks it.
pub(super) async fn make(client: &mut Client) -> Result<(), StoreError> {
    if is_current(client).await? {
        return Ok(());
    }
    let failed = |err| StoreError::new("creating the tables", err);
    // Read committed, whatever the role's default: after waiting for the lock, the
    // checks must see what the host that held it committed.
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(failed)?;
    transaction
        .batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
        .await
        .map_err(failed)?;
    // Another host may have made it while this one waited for the lock.
    if !is_current(&transaction).await? {
        if !made_unmarked(&transaction).await? {
            let schema = SCHEMA
                .replace("{id}", "BIGSERIAL PRIMARY KEY")
                .replace("{int}", "BIGINT")
                .replace("{bytes}", "BYTEA");
            let add_route = ADD_ROUTE_COLUMN.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS");
            transaction
                .batch_execute(&format!("{schema} {add_route};"))
                .await
                .map_err(failed)?;
        }
        transaction
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS cmq_schema (version BIGINT NOT NULL); \
                 DELETE FROM cmq_schema; \
                 INSERT INTO cmq_schema (version) VALUES ({SCHEMA_VERSION});"
            ))
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)
}

/// Whether the database's schema is marked at [`SCHEMA_VERSION`] (or a later host's),
/// read without a lock.
async fn is_current(client: &impl GenericClient) -> Result<bool, StoreError> {
    let failed = |err| StoreError::new("reading the schema's version", err);
    let marked: bool = client
        .query_one("SELECT to_regclass('cmq_schema') IS NOT NULL", &[])
        .await
        .map_err(failed)?
        .try_get(0)
        .map_err(failed)?;
    if !marked {
        return Ok(false);
    }
    let version: Option<i64> = client
        .query_one("SELECT max(version) FROM cmq_schema", &[])
        .await
        .map_err(failed)?
        .try_get(0)
        .map_err(failed)?;
    Ok(version.is_some_and(|version| version >= SCHEMA_VERSION))
}

/// Whether every table, index and column of the schema is there already (a database
/// made before the mark), read from the catalog without locking the tables.
async fn made_unmarked(client: &impl GenericClient) -> Result<bool, StoreError> {
    let failed = |err| StoreError::new("reading the schema", err);
    let objects: Vec<String> = OBJECTS.iter().map(|name| (*name).to_owned()).collect();
    client
        .query_one(
            "SELECT (SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest($1::text[]) AS name) \
             AND EXISTS (SELECT 1 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'cmq_dead_letters' \
                 AND column_name = 'route')",
            &[&objects],
        )
        .await
        .map_err(failed)?
        .try_get(0)
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_and_index_of_the_schema_is_looked_for() {
        let made: Vec<&str> = SCHEMA
            .split("IF NOT EXISTS ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        let mut sorted = made.clone();
        sorted.sort_unstable();
        let mut objects = OBJECTS.to_vec();
        objects.sort_unstable();
        assert_eq!(sorted, objects, "{made:?}");
    }
}
