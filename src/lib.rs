//! Safe schema migrations and resumable backfills, mounted as `cargo xtask` subcommands.
//!
//! - `migrate lint` finds backfills and long locks hidden in schema migrations ([`lint`]).
//! - `backfill sample` runs a data migration on fixtures in SQLite and snapshots the result
//!   ([`backfill`]).
//! - `backfill plan` / `run` execute an approved data migration on production, batch by batch.
//!
//! Mount it in another workspace's xtask with [`Command`] (a clap subcommand enum), or make a
//! thin binary whose `main` is [`cli::main`].

pub mod backfill;
pub mod cli;
pub mod config;
pub mod lint;
pub mod secrets;
pub mod sql;
#[cfg(unix)]
#[doc(hidden)]
pub mod testing;

pub use cli::Command;

/// The README's examples (mounting the commands in another workspace's xtask) compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
