//! The integration tests: one binary (one link step), one module per area.

mod backfill_postgres;
mod backfill_run;
mod backfill_sample;
mod engine_contract;
mod lint_cli;
mod lint_example;
mod pre_commit_hook;
mod support;
