//! `migrate lint --fix`: the counter caches of this repository's example, filled inline in the
//! schema migration that adds them (the mistake the product exists for), become a data migration
//! that samples, passes its check and snapshots; `migrate lint` is then clean.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{bin, write};

fn xtask(dir: &Path, args: &[&str], insta_update: Option<&str>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .args(args)
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .env_remove("DATABASE_URL");
    if let Some(value) = insta_update {
        cmd.env("INSTA_UPDATE", value);
    }
    cmd.output().expect("run xtask-migrate")
}

fn stdout(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const V4_INLINE: &str = "-- Counter caches for profile pages.\n\
SET lock_timeout = '2s';\n\
\n\
ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0;\n\
UPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id);\n";

/// The example's schema and fixtures, with V4 filling its counter inline and no data migration.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    write(
        &root.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n\
         [workspace.metadata.xtask-migrate]\nsample-engine = \"sqlite\"\n",
    );
    write(&root.join("src/lib.rs"), "");
    for name in [
        "V1__create_users.sql",
        "V2__create_follows.sql",
        "V3__create_posts.sql",
    ] {
        std::fs::create_dir_all(root.join("migrations")).unwrap();
        std::fs::copy(
            repo.join("migrations").join(name),
            root.join("migrations").join(name),
        )
        .unwrap();
    }
    write(
        &root.join("migrations/V4__add_counter_caches.sql"),
        V4_INLINE,
    );
    for name in ["users.csv", "follows.csv", "posts.csv"] {
        std::fs::create_dir_all(root.join("fixtures")).unwrap();
        std::fs::copy(
            repo.join("fixtures").join(name),
            root.join("fixtures").join(name),
        )
        .unwrap();
    }
    dir
}

#[test]
fn the_inline_counter_cache_backfill_moves_into_a_data_migration_that_samples() {
    let ws = workspace();
    let root = ws.path();
    let v4 = root.join("migrations/V4__add_counter_caches.sql");
    let created = root.join("data-migrations/V1__backfill_users_followers_count.sql");

    let out = xtask(root, &["migrate", "lint", "--color", "never"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("backfill-update"), "{}", stdout(&out));

    // The dry run shows the change and writes nothing.
    let out = xtask(root, &["migrate", "lint", "--fix"], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("--- a/migrations/V4__add_counter_caches.sql\n"),
        "{text}"
    );
    assert!(
        text.contains("-UPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id);\n"),
        "{text}"
    );
    assert!(
        text.contains("+-- Moved to data-migrations/V1__backfill_users_followers_count.sql: it runs there in batches, after this migration.\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "--- /dev/null\n+++ b/data-migrations/V1__backfill_users_followers_count.sql\n"
        ),
        "{text}"
    );
    assert!(text.contains("+-- @requires 4\n"), "{text}");
    assert!(
        text.ends_with("1 statement can move into data migrations; nothing was written: run `cargo xtask migrate lint --fix --write` to make the change\n"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&v4).unwrap(), V4_INLINE);
    assert!(!created.exists());

    let out = xtask(root, &["migrate", "lint", "--fix", "--write"], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.ends_with("moved 1 statement into V1__backfill_users_followers_count; next: `cargo xtask backfill sample V1__backfill_users_followers_count`, review its check and snapshot, and accept the snapshot\n"),
        "{text}"
    );
    let schema = std::fs::read_to_string(&v4).unwrap();
    assert!(!schema.contains("UPDATE"), "{schema}");
    assert!(
        schema.contains("ALTER TABLE users ADD COLUMN followers_count"),
        "{schema}"
    );
    assert!(created.is_file());

    // Nothing inline is left, and the new data migration passes the data-migration checks.
    let out = xtask(root, &["migrate", "lint", "--color", "never"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = xtask(root, &["migrate", "lint", "--fix"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("no inline backfill to move\n"),
        "{}",
        stdout(&out)
    );

    // It samples on the fixtures: the batches run, the derived check passes, the snapshot is new.
    let out = xtask(root, &["backfill", "sample"], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("NEW"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    let out = xtask(root, &["backfill", "sample"], Some("always"));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = xtask(root, &["backfill", "sample", "--check"], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("rows match, approved"), "{text}");
    let snapshot = std::fs::read_to_string(
        root.join("data-migrations/snapshots/V1__backfill_users_followers_count.snap"),
    )
    .unwrap();
    assert!(snapshot.contains("followers_count"), "{snapshot}");
}

#[test]
fn what_cannot_move_is_named_and_nothing_is_written() {
    let ws = workspace();
    let root = ws.path();
    let v4 = root.join("migrations/V4__add_counter_caches.sql");
    let text = "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN seen timestamp;\n\
                UPDATE users SET seen = now();\n";
    write(&v4, text);
    let out = xtask(root, &["migrate", "lint", "--fix", "--write"], None);
    let shown = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(
        shown,
        "migrations/V4__add_counter_caches.sql:3: backfill-update: not moved: `now` is not deterministic: each batch would compute another value than the single statement did; write this data migration by hand\n"
    );
    assert_eq!(std::fs::read_to_string(&v4).unwrap(), text);
    assert!(!root.join("data-migrations").exists());
}
