//! Snapshot tests of the PostgreSQL front end.
