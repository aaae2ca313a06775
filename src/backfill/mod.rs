//! Data migrations: their file format, fixtures, the batch engine and `backfill sample`.
//!
//! A data migration (`data-migrations/V{n}__{name}.sql`, see [`mod@format`]) changes rows of one
//! table in key order, one batch per transaction. `backfill sample` runs it on a fresh database
//! loaded with [`fixtures`], through the same [`engine`] and [`backend`] trait that production
//! runs use, checks the result and snapshots it ([`snapshot`]); an accepted snapshot taken from
//! the current file is the data migration's approval.

pub mod backend;
pub mod cli;
pub mod engine;
pub mod error;
pub mod fixtures;
pub mod format;
pub mod postgres;
pub mod sample;
pub mod schema;
pub mod snapshot;
pub mod sqlite;

pub use error::{Error, ErrorKind, Result};
pub use format::DataMigration;
