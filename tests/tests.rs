//! The integration tests: one binary (one link step), one module per area. Each area needs the
//! feature it tests; `cargo test` (default features) runs them all.

#[cfg(feature = "backfill")]
mod backfill_capture;
#[cfg(feature = "backfill")]
mod backfill_capture_sqlite;
#[cfg(feature = "backfill")]
mod backfill_health;
#[cfg(feature = "backfill")]
mod backfill_pg_cache;
#[cfg(feature = "backfill")]
mod backfill_pg_local;
#[cfg(feature = "backfill")]
mod backfill_postgres;
#[cfg(feature = "backfill")]
mod backfill_run;
#[cfg(feature = "backfill")]
mod backfill_sample;
#[cfg(feature = "backfill")]
mod backfill_verify;
mod consumer;
#[cfg(feature = "backfill")]
mod engine_contract;
#[cfg(feature = "lint")]
mod lint_cli;
#[cfg(all(feature = "lint", feature = "backfill"))]
mod lint_estimate;
#[cfg(feature = "lint")]
mod lint_example;
#[cfg(all(feature = "lint", feature = "backfill"))]
mod lint_fix;
#[cfg(feature = "backfill")]
mod migrate_run;
#[cfg(feature = "lint")]
mod pre_commit_hook;
mod support;
