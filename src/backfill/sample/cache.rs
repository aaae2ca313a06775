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
/// (another conversion of a value, another order, statistics or not, the batch engine's tracking
/// tables, room left on the pages, ...): a cache made by a loader that worked otherwise is then
/// never used, even by a build of the same version.
pub const LOADER_VERSION: u32 = 3;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            (
                "migrations/V1__users.sql",
                "CREATE TABLE users (id int PRIMARY KEY);\n",
            ),
            (
                "migrations/V2__posts.sql",
                "CREATE TABLE posts (id int PRIMARY KEY);\n",
            ),
            (
                "migrations/V3__later.sql",
                "CREATE TABLE later (id int PRIMARY KEY);\n",
            ),
            ("fixtures/users.csv", "id\n1\n2\n"),
            (
                "data-migrations/V1__fill.sql",
                "-- @requires 2\n-- @table users\n-- @key id\n-- @batch\nUPDATE users SET id = id WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM users ORDER BY id;\n",
            ),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = Config::defaults(root);
        (dir, config)
    }

    fn key_of(config: &Config) -> String {
        let inputs = Inputs::load(config).unwrap();
        let migration = crate::backfill::migration::find(&config.data_migrations, "V1").unwrap();
        key(config, &inputs, &migration)
    }

    fn write(config: &Config, path: &str, text: &str) {
        std::fs::write(config.root.join(path), text).unwrap();
    }

    #[test]
    fn the_key_follows_every_input_of_the_load_and_nothing_else() {
        let (_dir, config) = workspace();
        let first = key_of(&config);
        assert_eq!(first.len(), 16);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
        assert_eq!(key_of(&config), first, "the same inputs, the same key");

        // A migration after the required version, or the data migration's batch: not loaded.
        write(
            &config,
            "migrations/V3__later.sql",
            "CREATE TABLE later2 (id int);\n",
        );
        write(
            &config,
            "data-migrations/V1__fill.sql",
            "-- @requires 2\n-- @table users\n-- @key id\n-- @batch\nUPDATE users SET id = id + 0 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM users ORDER BY id;\n",
        );
        assert_eq!(key_of(&config), first);

        let mut seen = vec![first];
        let mut changed = |path: &str, text: &str| {
            write(&config, path, text);
            let key = key_of(&config);
            assert!(!seen.contains(&key), "{path}: {key} was seen");
            seen.push(key);
        };
        changed("fixtures/users.csv", "id\n1\n3\n");
        changed("fixtures/posts.csv", "id\n1\n");
        changed(
            "migrations/V2__posts.sql",
            "CREATE TABLE posts (id bigint PRIMARY KEY);\n",
        );
        changed(
            "fixtures/manifest.json",
            r#"{"format": 1, "schema_version": 2, "captured_at": "x", "source": {"dialect": "postgres", "database": "d"}, "settings": {}, "tables": {}}"#,
        );
        // Loaded at V1 now: the manifest's version is older than the required one.
        changed(
            "fixtures/manifest.json",
            r#"{"format": 1, "schema_version": 1, "captured_at": "x", "source": {"dialect": "postgres", "database": "d"}, "settings": {}, "tables": {}}"#,
        );
    }
}
