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
//! Cargo features (all on by default; `lint` or `backfill` is needed):
//! - `lint`: `migrate lint`, with the SQL front ends and output formats, and the checks of
//!   data-migration files. A workspace that only wants the linter enables just this one and
//!   compiles no database code.
//! - `backfill`: the `backfill` commands, with embedded SQLite, the PostgreSQL client and
//!   refinery; with `lint` too, `migrate lint --estimate` (which reads a PostgreSQL database).
//! - `mimalloc`: mimalloc as the binary's global allocator (the linter allocates a small tree
//!   node per syntax element, on several threads). Turn it off when your xtask binary declares
//!   its own `#[global_allocator]`.

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

/// The allocator of whatever binary mounts the commands: the linter's parse allocates and frees
/// a node per syntax element on several threads, where mimalloc is about 15% faster in all than
/// the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The README's examples (mounting the commands in another workspace's xtask) compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
