//! refinery's history on a database, read-only: how far its schema is, for the commands that
//! must not run a data migration on a schema behind its `@requires`.

use crate::backfill::db::postgres::PgBackend;
use crate::backfill::db::sqlite::SqliteBackend;
use crate::backfill::db::target::Target;
use crate::backfill::error::{ErrorKind, Result};

/// The newest schema version refinery's history records on `target`, `None` when it has no
/// history table or no row (read-only).
pub fn schema_version(target: &Target) -> Result<Option<u64>> {
    let sql = "SELECT max(version) FROM refinery_schema_history";
    match target {
        Target::Postgres { url } => {
            let mut db = PgBackend::connect(url)?;
            pg_schema_version(db.client())
        }
        Target::Sqlite { path } => {
            let mut db = SqliteBackend::open(path)?;
            let conn = db.connection();
            let exists: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'",
                    [],
                    |r| r.get(0),
                )
                .map_err(crate::backfill::db::sqlite::db_error)?;
            if !exists {
                return Ok(None);
            }
            let version: Option<i64> = conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(crate::backfill::db::sqlite::db_error)?;
            Ok(version.and_then(|v| u64::try_from(v).ok()))
        }
    }
}

/// [`schema_version`] on an open PostgreSQL connection or transaction (a capture reads it in its
/// snapshot).
pub fn pg_schema_version(client: &mut impl postgres::GenericClient) -> Result<Option<u64>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .map(|r| r.get(0))
        .map_err(|e| crate::backfill::db::postgres::pg_error(e, ErrorKind::Database))?;
    if !exists {
        return Ok(None);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .map(|r| r.get(0))
        .map_err(|e| crate::backfill::db::postgres::pg_error(e, ErrorKind::Database))?;
    Ok(version.and_then(|v| u64::try_from(v).ok()))
}
