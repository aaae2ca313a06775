//! The key of a loaded database kept on the kept-alive PostgreSQL cluster: a digest of
//! everything that decides what the database holds once the schema migrations have run and the
//! fixtures are loaded, so that a later sample of the same inputs copies that database instead
//! of building it again ([`super::engine::LocalCluster`] keeps and copies it).
//!
//! What the key covers:
//! - this tool's version and [`LOADER_VERSION`];
//! - the version the fixtures load at and the version the data migration requires (the schema
//!   migrations between the two run after the load, and are part of the kept state);
//! - each schema migration up to the required version: its version, name and full SQL;
//! - every fixture file's name and the SHA-256 of its bytes, and the fixtures' manifest's;
//! - the configuration that changes how the schema is built: the migration layout and whether
//!   schema migrations run in a transaction.
//!
//! Anything not in the key must not change the loaded database: the data migration itself (its
//! batches, checks and snapshot run on a copy, after the kept state) does not.

use sha2::{Digest, Sha256};

use crate::backfill::migration::DataMigration;
use crate::backfill::sample::Inputs;
use crate::config::Config;

/// Bumped whenever the schema replay or the fixture load changes what a loaded database holds
/// (another conversion of a value, another order, statistics or not, ...): a cache made by a
/// loader that worked otherwise is then never used, even by a build of the same version.
pub const LOADER_VERSION: u32 = 1;

/// The schema version the fixtures load at for `migration`: their manifest's when it is older
/// than the one the data migration requires, else the required one.
pub fn load_version(inputs: &Inputs, migration: &DataMigration) -> u64 {
    let required = migration.requires.value;
    inputs
        .fixtures_version
        .filter(|v| *v < required)
        .unwrap_or(required)
}

/// The key of the database `migration`'s sample builds from `inputs`: 16 hex digits.
pub fn key(config: &Config, inputs: &Inputs, migration: &DataMigration) -> String {
    let required = migration.requires.value;
    let mut digest = Sha256::new();
    // Every variable-length part is prefixed with its length, so no two inputs run together.
    let mut part = |bytes: &[u8]| {
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    };
    part(b"xtask-migrate loaded fixtures");
    part(env!("CARGO_PKG_VERSION").as_bytes());
    part(&LOADER_VERSION.to_le_bytes());
    part(&load_version(inputs, migration).to_le_bytes());
    part(&required.to_le_bytes());
    part(format!("{:?}", config.migration_layout).as_bytes());
    part(&[u8::from(config.transactional_migrations)]);
    for m in &inputs.migrations {
        if u64::try_from(m.version()).is_ok_and(|v| v <= required) {
            part(&m.version().to_le_bytes());
            part(m.name().as_bytes());
            part(m.sql().unwrap_or("").as_bytes());
        }
    }
    part(&(inputs.fixtures.len() as u64).to_le_bytes());
    for f in &inputs.fixtures {
        let name = f.path.file_name().map(|n| n.as_encoded_bytes());
        part(name.unwrap_or_default());
        part(&f.sha256);
    }
    match &inputs.manifest_sha256 {
        Some(sha) => part(sha),
        None => part(b"no manifest"),
    }
    let digest = digest.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
