//! The integration tests: one binary, one module per area.

mod pre_commit_hook;
