//! The integration tests: one binary (one link step), one module per area.

mod lint_cli;
mod lint_example;
mod pre_commit_hook;
mod support;
