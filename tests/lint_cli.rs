//! `migrate lint` as users run it: the real binary, real files, exit codes, config in a real
//! Cargo workspace, and hostile input.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{bin, write};

/// Runs `xtask-migrate migrate lint ARGS` in `dir`.
fn lint(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(["migrate", "lint"])
        .args(args)
        .env_remove("CI")
        .output()
        .expect("run xtask-migrate")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rules(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule").to_string())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A Cargo workspace in a temp dir with `metadata` as its `[workspace.metadata.xtask-migrate]`.
fn workspace(metadata: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Cargo.toml"),
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[workspace.metadata.xtask-migrate]\n{metadata}\n"
        ),
    );
    write(&dir.path().join("src/lib.rs"), "");
    dir
}

const BACKFILL: &str = "ALTER TABLE users ADD COLUMN n bigint;\nUPDATE users SET n = 1;\n";

#[test]
fn exit_1_with_findings_and_json_contract() {
    let ws = workspace("");
    write(&ws.path().join("migrations/V1__backfill.sql"), BACKFILL);
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["files"], 1);
    let finding = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "backfill-update")
        .expect("a backfill-update finding");
    assert_eq!(finding["path"], "migrations/V1__backfill.sql");
    assert_eq!(finding["line"], 2);
    assert_eq!(finding["column"], 1);
    assert_eq!(finding["end_line"], 2);
    assert_eq!(finding["end_column"], 23);
    assert_eq!(finding["category"], "backfill");
    assert_eq!(finding["severity"], "error");
    assert!(finding["message"].as_str().unwrap().contains("users"));
    assert!(
        finding["help"]
            .as_str()
            .unwrap()
            .contains("data-migrations/")
    );
}

#[test]
fn exit_0_when_clean() {
    let ws = workspace("");
    write(
        &ws.path().join("migrations/V1__users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn warnings_alone_exit_0() {
    let ws = workspace("[workspace.metadata.xtask-migrate.rules]\nbackfill-update = \"warning\"");
    write(&ws.path().join("migrations/V1__backfill.sql"), BACKFILL);
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json(&out);
    // `require-lock-timeout` (a warning too) also reports the ALTER TABLE before it.
    let finding = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "backfill-update")
        .expect("a backfill-update finding");
    assert_eq!(finding["severity"], "warning");
}

#[test]
fn config_small_tables_and_rule_off() {
    let ws = workspace("small-tables = [\"users\"]");
    write(&ws.path().join("migrations/V1__backfill.sql"), BACKFILL);
    let out = lint(ws.path(), &["--format", "json"]);
    assert!(!rules(&json(&out)).contains(&"backfill-update".to_string()));

    // A flag replaces the configured list.
    let out = lint(ws.path(), &["--format", "json", "--small-table", "roles"]);
    assert!(rules(&json(&out)).contains(&"backfill-update".to_string()));

    let out = lint(
        ws.path(),
        &["--format", "json", "--rule", "backfill-update=off"],
    );
    assert!(!rules(&json(&out)).contains(&"backfill-update".to_string()));
}

#[test]
fn config_baseline_skips_old_migrations_but_keeps_their_schema() {
    let ws = workspace("baseline = 1");
    write(&ws.path().join("migrations/V1__old.sql"), BACKFILL);
    write(
        &ws.path().join("migrations/V2__new.sql"),
        "UPDATE users SET n = 2;\n",
    );
    let out = lint(ws.path(), &["--format", "json"]);
    let doc = json(&out);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().all(|p| p.ends_with("V2__new.sql")),
        "{paths:?}"
    );
    assert!(!paths.is_empty());

    let out = lint(ws.path(), &["--format", "json", "--baseline", "0"]);
    assert!(
        json(&out)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("V1__old.sql"))
    );
}

#[test]
fn config_dialect_and_flag_override() {
    let ws = workspace("dialect = \"sqlite\"");
    // SQLite's INSERT OR REPLACE is not PostgreSQL.
    write(
        &ws.path().join("migrations/V1__x.sql"),
        "CREATE TABLE t (id integer);\nINSERT OR REPLACE INTO t VALUES (1);\n",
    );
    let out = lint(ws.path(), &["--format", "json"]);
    assert!(!rules(&json(&out)).contains(&"syntax-error".to_string()));
    let out = lint(ws.path(), &["--format", "json", "--dialect", "postgres"]);
    assert!(rules(&json(&out)).contains(&"syntax-error".to_string()));
}

#[test]
fn invalid_config_is_exit_2_naming_the_manifest() {
    let ws = workspace("small-table = [\"users\"]");
    write(&ws.path().join("migrations/V1__x.sql"), "SELECT 1;\n");
    let out = lint(ws.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("Cargo.toml") && err.contains("small-table"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_path_is_exit_2_with_the_path() {
    let ws = workspace("");
    let out = lint(ws.path(), &["no/such/file.sql"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no/such/file.sql"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn unknown_flag_is_exit_2() {
    let ws = workspace("");
    assert_eq!(lint(ws.path(), &["--frobnicate"]).status.code(), Some(2));
    assert_eq!(
        lint(ws.path(), &["--rule", "nope=off"]).status.code(),
        Some(2)
    );
}

#[test]
fn list_rules_names_every_rule() {
    let ws = workspace("");
    let out = lint(ws.path(), &["--list-rules"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for rule in xtask_migrate::lint::RuleId::ALL {
        assert!(
            text.contains(rule.as_str()),
            "{rule} missing from --list-rules"
        );
    }
}

/// `--explain RULE` prints the rule's documentation, built into the binary, for every rule.
#[test]
fn explain_prints_a_rule_s_documentation() {
    let dir = tempfile::tempdir().unwrap();
    for rule in xtask_migrate::lint::RuleId::ALL {
        let out = lint(dir.path(), &["--explain", rule.as_str()]);
        assert_eq!(out.status.code(), Some(0), "{rule}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        for part in [
            "What it catches:",
            "Why it matters:",
            "What to do instead:",
            "Example:",
        ] {
            assert!(text.contains(part), "{rule}: no `{part}`:\n{text}");
        }
    }
    let explain = |rule: &str| {
        let out = lint(dir.path(), &["--explain", rule]);
        String::from_utf8(out.stdout).unwrap()
    };
    // The data-migration file format, for workspaces that have no copy of it.
    insta::assert_snapshot!(
        "explain_data_migration_invalid",
        explain("data-migration-invalid")
    );
    insta::assert_snapshot!(
        "explain_concurrently_in_transaction",
        explain("concurrently-in-transaction")
    );
}

#[test]
fn explain_of_an_unknown_rule_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = lint(dir.path(), &["--explain", "set-not-nul"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "error: `set-not-nul` is not a rule id; did you mean `set-not-null`? (`cargo xtask migrate lint --list-rules` lists them)\n"
    );
    let out = lint(dir.path(), &["--explain", "zzz"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// A finding's help is one line that fits a terminal, with the details one command away.
#[test]
fn concurrently_in_transaction_help_is_one_line() {
    let ws = workspace("");
    write(
        &ws.path().join("migrations/V1__index.sql"),
        "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);\n",
    );
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    let finding = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "concurrently-in-transaction")
        .expect("a concurrently-in-transaction finding");
    assert_eq!(
        finding["help"],
        "put it in its own migration marked `-- migrate: no-transaction`, applied by `cargo xtask migrate run`; see `cargo xtask migrate lint --explain concurrently-in-transaction`"
    );
    let out = lint(ws.path(), &["--color", "never"]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human
            .ends_with("`cargo xtask migrate lint --explain RULE` prints a rule's documentation\n"),
        "{human}"
    );
}

#[test]
fn works_outside_a_cargo_workspace() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("m.sql"), BACKFILL);
    let out = lint(dir.path(), &["--format", "json", "m.sql"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(rules(&json(&out)).contains(&"backfill-update".to_string()));
}

// Hostile input: a finding or a one-line error, exit 1 or 2, never a crash or a hang.

fn lint_bytes(name: &str, bytes: &[u8]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let out = lint(dir.path(), &["--format", "json", name]);
    (out, dir)
}

#[test]
fn empty_file_is_clean() {
    let (out, _dir) = lint_bytes("empty.sql", b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn binary_and_invalid_utf8_are_findings_with_the_path() {
    let mut junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    junk.extend_from_slice(&[0xff, 0xfe, 0x00]);
    for (name, bytes) in [
        ("junk.sql", junk.clone()),
        ("latin1.sql", b"SELECT 'caf\xe9';\n".to_vec()),
    ] {
        let (out, _dir) = lint_bytes(name, &bytes);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let doc = json(&out);
        assert_eq!(doc["findings"][0]["rule"], "syntax-error", "{name}");
        assert_eq!(doc["findings"][0]["path"], name);
    }
}

#[test]
fn nul_bytes_in_utf8_text_are_a_finding() {
    let (out, _dir) = lint_bytes("nul.sql", b"SELECT 1;\n\0\0\0 UPDATE\0;\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(rules(&json(&out)).contains(&"syntax-error".to_string()));
}

#[test]
fn unterminated_dollar_quote_is_a_finding_and_earlier_statements_are_linted() {
    let sql = "UPDATE users SET n = 1;\nDO $$ BEGIN UPDATE users SET n = 2;\n";
    let (out, _dir) = lint_bytes("dollar.sql", sql.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = rules(&json(&out));
    assert!(found.contains(&"syntax-error".to_string()), "{found:?}");
    assert!(found.contains(&"backfill-update".to_string()), "{found:?}");
}

#[test]
fn ten_thousand_nested_parentheses_do_not_overflow() {
    for dialect in ["postgres", "sqlite"] {
        let sql = format!(
            "SELECT {}1{};\nUPDATE users SET n = 1;\n",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("deep.sql"), &sql);
        let out = lint(
            dir.path(),
            &["--format", "json", "--dialect", dialect, "deep.sql"],
        );
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{dialect}: {:?} {}",
            out.status,
            stderr(&out)
        );
        assert!(
            rules(&json(&out)).contains(&"backfill-update".to_string()),
            "{dialect}"
        );
    }
}

#[test]
fn fifty_megabyte_file() {
    let mut sql = String::with_capacity(52 * 1024 * 1024);
    sql.push_str("CREATE TABLE seed (id bigint, name text);\n");
    let mut i = 0u64;
    while sql.len() < 50 * 1024 * 1024 {
        sql.push_str(&format!(
            "INSERT INTO seed VALUES ({i}, 'row number {i} of the seed data');\n"
        ));
        i += 1;
    }
    sql.push_str("UPDATE users SET n = 1;\n");
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("big.sql"), &sql);
    let out = lint(dir.path(), &["--format", "json", "big.sql"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(rules(&doc), vec!["backfill-update".to_string()]);
}

#[test]
fn directory_of_ten_thousand_files() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("many");
    std::fs::create_dir(&migrations).unwrap();
    for i in 1..=10_000 {
        std::fs::write(
            migrations.join(format!("V{i}__t{i}.sql")),
            format!("CREATE TABLE t{i} (id bigint PRIMARY KEY);\n"),
        )
        .unwrap();
    }
    std::fs::write(
        migrations.join("V10001__backfill.sql"),
        "UPDATE t1 SET id = id + 1;\n",
    )
    .unwrap();
    let out = lint(dir.path(), &["--format", "json", "many"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["files"], 10_001);
    assert_eq!(rules(&doc), vec!["backfill-update".to_string()]);
}

#[test]
fn naming_rules_apply_to_the_configured_migrations_directory() {
    let ws = workspace("");
    write(
        &ws.path().join("migrations/V1__create-users.sql"),
        "CREATE TABLE users (id bigint);\n",
    );
    write(
        &ws.path().join("migrations/V2__a.sql"),
        "CREATE TABLE a (id bigint);\n",
    );
    write(
        &ws.path().join("migrations/V02__b.sql"),
        "CREATE TABLE b (id bigint);\n",
    );
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    let found: Vec<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().into(),
                f["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        found.contains(&(
            "migration-name-skipped".into(),
            "migrations/V1__create-users.sql".into()
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(rule, _)| rule == "duplicate-migration-version"),
        "{found:?}"
    );

    // The same files outside the migrations directory follow no naming convention.
    let elsewhere = tempfile::tempdir().unwrap();
    write(
        &elsewhere.path().join("V1__create-users.sql"),
        "CREATE TABLE users (id bigint);\n",
    );
    let out = lint(elsewhere.path(), &["--format", "json", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// This repository's example data migration, as a known-good data migration.
fn example_data_migration() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data-migrations/V1__backfill_counter_caches.sql"),
    )
    .unwrap()
}

/// The verification sections (`-- @expected`, `-- @actual`) are part of the format the linter
/// checks: the example's pass, and a mistake in one is a finding at its line.
#[test]
fn the_verification_sections_are_checked_too() {
    let ws = workspace("");
    write(
        &ws.path().join("migrations/V1__users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    let good = example_data_migration();
    assert!(good.contains("-- @expected") && good.contains("-- @actual"));
    let broken = good.replace(
        "FROM users\nWHERE id > :lower AND id <= :upper;\n",
        "FROM users\nWHERE id > :lower;\n",
    );
    assert_ne!(broken, good);
    write(&ws.path().join("data-migrations/V1__fill.sql"), &broken);
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    let finding = &doc["findings"][0];
    assert_eq!(finding["rule"], "data-migration-invalid");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains("the `-- @actual` query never uses `:upper`"),
        "{message}"
    );
    let line = finding["line"].as_u64().unwrap() as usize;
    assert!(
        broken
            .lines()
            .nth(line - 1)
            .unwrap()
            .starts_with("SELECT id, followers_count"),
        "line {line}"
    );
}

#[test]
fn data_migrations_get_data_migration_checks_not_backfill_rules() {
    let ws = workspace("");
    write(
        &ws.path().join("migrations/V1__users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    write(
        &ws.path().join("data-migrations/V1__fill.sql"),
        &example_data_migration(),
    );

    // By default both directories are linted, and a good data migration is clean (its UPDATE is
    // the point of it, not a backfill hidden in a schema migration).
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["files"], 2);

    // Passed explicitly, too.
    let out = lint(
        ws.path(),
        &["--format", "json", "data-migrations/V1__fill.sql"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["files"], 1);

    // The batch statement no longer bounded by the key: a finding on the batch statement's line.
    let broken =
        example_data_migration().replace("WHERE id > :lower AND id <= :upper;", "WHERE true;");
    write(&ws.path().join("data-migrations/V1__fill.sql"), &broken);
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    let finding = &doc["findings"][0];
    assert_eq!(finding["rule"], "data-migration-invalid");
    assert_eq!(finding["category"], "data-migration");
    assert_eq!(finding["path"], "data-migrations/V1__fill.sql");
    // The help works in any workspace: it points to the built-in documentation, not to a file.
    let help = finding["help"].as_str().unwrap();
    assert!(
        help.contains("cargo xtask migrate lint --explain data-migration-invalid"),
        "{help}"
    );
    assert!(!help.contains("README"), "{help}");
    let line = finding["line"].as_u64().unwrap() as usize;
    let text_line = broken.lines().nth(line - 1).unwrap();
    assert!(
        broken
            .lines()
            .skip(line - 1)
            .take(6)
            .any(|l| l.contains("WHERE true")),
        "finding at line {line} ({text_line:?}) is not on the batch statement: {finding}"
    );
}

#[test]
fn every_output_format_from_the_command_line() {
    let ws = workspace("");
    write(&ws.path().join("migrations/V1__backfill.sql"), BACKFILL);

    let out = lint(ws.path(), &["--format", "human", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("error[backfill-update]: UPDATE of `users`"),
        "{human}"
    );
    assert!(
        human.contains("--> migrations/V1__backfill.sql:2:1"),
        "{human}"
    );
    assert!(human.contains("2 | UPDATE users SET n = 1;"), "{human}");
    assert!(human.contains("^^^^^^^^^^^^^^^^^^^^^^"), "{human}");
    assert!(
        human.contains("= help: move it to `data-migrations/`"),
        "{human}"
    );
    assert!(
        !human.contains('\u{1b}'),
        "no escape codes with --color never"
    );

    let out = lint(ws.path(), &["--format", "github"]);
    assert_eq!(out.status.code(), Some(1));
    let github = String::from_utf8_lossy(&out.stdout);
    assert!(
        github.lines().any(|l| l.starts_with(
            "::error file=migrations/V1__backfill.sql,line=2,col=1,endLine=2,endColumn=23,title=backfill-update::"
        )),
        "{github}"
    );

    let out = lint(ws.path(), &["--format", "sarif"]);
    assert_eq!(out.status.code(), Some(1));
    let sarif = json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let result = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "backfill-update")
        .expect("a backfill-update result");
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 2);
    assert_eq!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "migrations/V1__backfill.sql"
    );
}

/// `(path, rule)` of every error-severity finding in a JSON report.
fn path_rules(doc: &Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A sqlx workspace: simple and reversible migrations, timestamp versions, a `-- no-transaction`
/// index build. Read with refinery's rules every file is skipped; with `migration-layout =
/// "sqlx"` only the real findings are left, the down migration is linted too, and the
/// `-- no-transaction` file may build its index concurrently.
#[test]
fn sqlx_layout() {
    let sqlx_files = |ws: &tempfile::TempDir| {
        let m = ws.path().join("migrations");
        write(
            &m.join("20240101000000_users.sql"),
            "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
        );
        write(
            &m.join("20240102000000_flag.up.sql"),
            "ALTER TABLE users ADD COLUMN flag boolean;\nUPDATE users SET flag = false;\n",
        );
        write(
            &m.join("20240102000000_flag.down.sql"),
            "DELETE FROM users WHERE flag;\nALTER TABLE users DROP COLUMN flag;\n",
        );
        write(
            &m.join("20240103000000_email_idx.sql"),
            "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
        );
    };
    let ws = workspace("");
    sqlx_files(&ws);
    let doc = json(&lint(ws.path(), &["--format", "json"]));
    let skipped = path_rules(&doc)
        .iter()
        .filter(|(_, r)| r == "migration-name-skipped")
        .count();
    assert_eq!(skipped, 4, "{doc}");

    let ws = workspace("migration-layout = \"sqlx\"");
    sqlx_files(&ws);
    let out = lint(ws.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        path_rules(&json(&out)),
        vec![
            (
                "migrations/20240102000000_flag.up.sql".to_string(),
                "backfill-update".to_string()
            ),
            (
                "migrations/20240102000000_flag.down.sql".to_string(),
                "backfill-delete".to_string()
            ),
        ]
    );
    // The baseline compares sqlx versions.
    let out = lint(
        ws.path(),
        &["--format", "json", "--baseline", "20240102000000"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The flag says the same as the configuration.
    let ws = workspace("");
    sqlx_files(&ws);
    let out = lint(
        ws.path(),
        &["--format", "json", "--migration-layout", "sqlx"],
    );
    assert_eq!(path_rules(&json(&out)).len(), 2);
    // A sqlx file that fails sqlx's loading, and two files with one version.
    write(&ws.path().join("migrations/v4_x.sql"), "SELECT 1;\n");
    write(
        &ws.path().join("migrations/20240101000000_again.sql"),
        "SELECT 1;\n",
    );
    let doc = json(&lint(
        ws.path(),
        &["--format", "json", "--migration-layout", "sqlx"],
    ));
    let naming: Vec<(String, String)> = path_rules(&doc)
        .into_iter()
        .filter(|(_, r)| r != "backfill-update" && r != "backfill-delete")
        .collect();
    assert_eq!(
        naming,
        vec![
            (
                "migrations/20240101000000_users.sql".to_string(),
                "duplicate-migration-version".to_string()
            ),
            (
                "migrations/v4_x.sql".to_string(),
                "migration-name-skipped".to_string()
            ),
        ],
        "{doc}"
    );
}

/// A diesel workspace: a directory per migration with `up.sql` and `down.sql`, versions from the
/// directory names, `metadata.toml` to run outside a transaction.
#[test]
fn diesel_layout() {
    let ws = workspace("migration-layout = \"diesel\"");
    let m = ws.path().join("migrations");
    write(
        &m.join("2024-01-01-000000_users/up.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
    );
    write(
        &m.join("2024-01-01-000000_users/down.sql"),
        "DROP TABLE users;\n",
    );
    write(
        &m.join("2024-01-02-000000_email_idx/up.sql"),
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    );
    write(
        &m.join("2024-01-02-000000_email_idx/down.sql"),
        "DROP INDEX CONCURRENTLY users_email_idx;\n",
    );
    write(
        &m.join("2024-01-03-000000_backfill/up.sql"),
        "ALTER TABLE users ADD COLUMN n int;\nUPDATE users SET n = 0;\n",
    );
    write(
        &m.join("2024-01-03-000000_backfill/down.sql"),
        "ALTER TABLE users DROP COLUMN n;\n",
    );
    write(&m.join("seed.sql"), "SELECT 1;\n");

    // Without metadata.toml diesel wraps the index build in a transaction, which PostgreSQL
    // refuses.
    let doc = json(&lint(ws.path(), &["--format", "json"]));
    let found = path_rules(&doc);
    assert!(
        found.contains(&(
            "migrations/2024-01-02-000000_email_idx/up.sql".to_string(),
            "concurrently-in-transaction".to_string()
        )),
        "{doc}"
    );
    write(
        &m.join("2024-01-02-000000_email_idx/metadata.toml"),
        "run_in_transaction = false\n",
    );
    let doc = json(&lint(ws.path(), &["--format", "json"]));
    assert_eq!(
        path_rules(&doc),
        vec![
            (
                "migrations/2024-01-03-000000_backfill/up.sql".to_string(),
                "backfill-update".to_string()
            ),
            (
                "migrations/seed.sql".to_string(),
                "migration-name-skipped".to_string()
            ),
        ],
        "{doc}"
    );
}

/// `backfill sample` replays refinery migrations only: another layout is a one-line error.
#[cfg(feature = "backfill")]
#[test]
fn sample_refuses_another_layout_in_one_line() {
    let ws = workspace("migration-layout = \"sqlx\"");
    write(
        &ws.path().join("migrations/20240101000000_users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, n int);\n",
    );
    write(
        &ws.path().join("data-migrations/V1__fill_n.sql"),
        "-- @requires 20240101000000\n-- @table users\n-- @key id\n\n-- @batch\n\
         UPDATE users SET n = 1 WHERE id > :lower AND id <= :upper;\n\n\
         -- @snapshot\nSELECT count(*) AS users FROM users;\n",
    );
    let out = Command::new(bin())
        .current_dir(ws.path())
        .args(["backfill", "sample", "--engine", "sqlite"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "migration-layout = \"sqlx\": `backfill sample` applies schema migrations with refinery"
        ),
        "{err}"
    );
}
