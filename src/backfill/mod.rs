//! Data migrations: their file format, the databases they run on, the sample stage and the
//! production run.
//!
//! A data migration (`data-migrations/V{n}__{name}.sql`, see [`migration`]) changes rows of one
//! table in key order, one batch per transaction. `backfill sample` ([`sample`]) runs it on a
//! fresh database loaded with fixtures, through the same batch engine production runs use
//! ([`run`]), checks the result and snapshots it; an accepted snapshot taken from the current
//! file is the data migration's approval. `migrate run` ([`deploy`]) applies the schema
//! migrations and holds those that wait for a backfill.
//!
//! Dependencies point one way: `deploy` → `sample`/`status` → `run` → `db`, `migration` →
//! `error`. `run` knows nothing of fixtures and snapshots; `db` and `migration` know nothing of
//! runs.

// The file format and its errors need no database: the linter checks data-migration files with
// them, so they are built with either feature. The rest runs data migrations.
#[cfg(feature = "backfill")]
pub mod capture;
#[cfg(feature = "backfill")]
pub mod db;
#[cfg(feature = "backfill")]
pub mod deploy;
#[cfg(feature = "backfill")]
pub mod display;
pub mod error;
pub mod migration;
#[cfg(feature = "backfill")]
pub mod run;
#[cfg(feature = "backfill")]
pub mod sample;
#[cfg(feature = "backfill")]
pub mod status;
#[cfg(feature = "backfill")]
pub mod verify;

pub use error::{Error, ErrorKind, Result, Retry};
pub use migration::DataMigration;
