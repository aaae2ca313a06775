//! Safe schema migrations and resumable backfills, mounted as `cargo xtask` subcommands.
//!
//! - `migrate lint` finds backfills and long locks hidden in schema migrations ([`lint`]).
//! - `backfill sample` runs a data migration on fixtures (SQLite, or a private PostgreSQL
//!   cluster) through the production batch engine and snapshots the result ([`backfill`]).
//! - `backfill plan` / `run` execute an approved data migration on production, batch by batch.
//! - `migrate run` applies schema migrations with refinery, holding those that wait for a
//!   backfill (`backfill::deploy`, directives in [`markers`]).
//!
//! Mount it in another workspace's xtask with [`Command`] (a clap subcommand enum), or make a
//! thin binary whose `main` is [`cli::main`].
//!
//! Cargo features (both on by default; at least one is needed):
//! - `lint`: `migrate lint`, with the SQL front ends and output formats, and the checks of
//!   data-migration files. A workspace that only wants the linter enables just this one and
//!   compiles no database code.
//! - `backfill`: the `backfill` commands, with embedded SQLite, the PostgreSQL client and
//!   refinery; with `lint` too, `migrate lint --estimate` (which reads a PostgreSQL database).

#[cfg(not(any(feature = "lint", feature = "backfill")))]
compile_error!("xtask-migrate: enable the `lint` feature, the `backfill` feature, or both");

pub mod backfill;
pub mod cli;
pub mod config;
#[cfg(feature = "lint")]
pub mod lint;
pub mod markers;
pub mod secrets;
pub mod sql;

pub use cli::Command;

/// The README's examples (mounting the commands in another workspace's xtask) compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
