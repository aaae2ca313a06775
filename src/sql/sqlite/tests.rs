//! Tests of the SQLite front end: snapshots of the neutral view for representative SQLite SQL
//! (rendered compactly, one statement per block, with the text each span covers), invariants on
//! hostile input, and a cross-check against SQLite itself.

use std::fmt::Write as _;

use super::parse;
use crate::sql::{
    AlterAction, ColumnDef, Constraint, ConstraintKind, Expr, Filter, InsertSource, Name,
    ParsedFile, Query, StmtKind,
};

// ---------------------------------------------------------------------------------------------
// Rendering for snapshots

fn names(ns: &[Name]) -> String {
    let ns: Vec<String> = ns.iter().map(Name::to_string).collect();
    format!("[{}]", ns.join(", "))
}

fn query(q: &Query) -> String {
    format!(
        "reads {} sources {} calls [{}]",
        names(&q.reads),
        names(&q.sources),
        q.calls.join(", ")
    )
}

fn expr(e: &Expr) -> String {
    format!(
        "{:?} calls [{}] reads {}",
        e.text,
        e.calls.join(", "),
        names(&e.reads)
    )
}

fn constraint(c: &Constraint) -> String {
    let kind = match &c.kind {
        ConstraintKind::ForeignKey { references } => format!("foreign key -> {references}"),
        ConstraintKind::Check => "check".into(),
        ConstraintKind::Unique { using_index } => format!("unique using_index={using_index}"),
        ConstraintKind::PrimaryKey { using_index } => {
            format!("primary key using_index={using_index}")
        }
        ConstraintKind::Exclude => "exclude".into(),
        ConstraintKind::NotNull => "not null".into(),
    };
    let name = c
        .name
        .as_ref()
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    let not_valid = if c.not_valid { " not valid" } else { "" };
    format!("{name}{kind}{not_valid}")
}

fn column(c: &ColumnDef) -> String {
    let mut s = format!("{} type={:?}", c.name, c.data_type.to_string());
    if c.not_null {
        s.push_str(" not_null");
    }
    if let Some(d) = &c.default {
        write!(s, " default={}", expr(d)).unwrap();
    }
    if let Some(g) = &c.generated {
        write!(s, " generated={g:?}").unwrap();
    }
    for k in &c.constraints {
        write!(s, " [{}]", constraint(k)).unwrap();
    }
    s
}

fn filter(f: &Option<Filter>) -> String {
    match f {
        Some(f) => format!("where {:?} point_lookup={}", f.text, f.point_lookup),
        None => "no where".into(),
    }
}

fn kind(k: &StmtKind) -> String {
    match k {
        StmtKind::CreateTable {
            table,
            columns,
            constraints,
            as_query,
            with_no_data,
            temporary,
            if_not_exists,
        } => {
            let mut s = format!("CreateTable {table} temporary={temporary}");
            if *with_no_data {
                s.push_str(" with_no_data");
            }
            if *if_not_exists {
                s.push_str(" if_not_exists");
            }
            for c in columns {
                write!(s, "\n    column {}", column(c)).unwrap();
            }
            for c in constraints {
                write!(s, "\n    constraint {}", constraint(c)).unwrap();
            }
            if let Some(q) = as_query {
                write!(s, "\n    as {}", query(q)).unwrap();
            }
            s
        }
        StmtKind::SelectInto { table, query: q } => format!("SelectInto {table} {}", query(q)),
        StmtKind::CreateView {
            name,
            materialized,
            query: q,
            ..
        } => format!("CreateView {name} materialized={materialized} {}", query(q)),
        StmtKind::Insert {
            table,
            source,
            replace,
        } => {
            let source = match source {
                InsertSource::Values { rows, reads } => {
                    format!("values rows={rows} reads {}", names(reads))
                }
                InsertSource::Query(q) => format!("query {}", query(q)),
                InsertSource::DefaultValues => "default values".into(),
            };
            format!("Insert {table} replace={replace} {source}")
        }
        StmtKind::Update {
            table,
            reads,
            filter: f,
        } => format!("Update {table} reads {} {}", names(reads), filter(f)),
        StmtKind::Delete {
            table,
            reads,
            filter: f,
        } => format!("Delete {table} reads {} {}", names(reads), filter(f)),
        StmtKind::AlterTable { table, actions } => {
            let mut s = format!("AlterTable {table}");
            for a in actions {
                let a = match a {
                    AlterAction::AddColumn { column: c } => format!("add column {}", column(c)),
                    other => format!("{other:?}"),
                };
                write!(s, "\n    {a}").unwrap();
            }
            s
        }
        StmtKind::DropTable { tables } => format!("DropTable {}", names(tables)),
        StmtKind::CreateIndex {
            name,
            table,
            concurrently,
            unique,
        } => format!(
            "CreateIndex {} on {table} unique={unique} concurrently={concurrently}",
            name.as_ref().map_or("-".to_string(), Name::to_string)
        ),
        StmtKind::DropIndex {
            names: n,
            concurrently,
        } => format!("DropIndex {} concurrently={concurrently}", names(n)),
        StmtKind::CreateTrigger { name, table } => format!("CreateTrigger {name} on {table}"),
        StmtKind::Select { query: q } => format!("Select {}", query(q)),
        StmtKind::Merge { table, source, .. } => format!("Merge {table} {}", query(source)),
        StmtKind::Call { name } => format!("Call {name}"),
        other => format!("{other:?}"),
    }
}

/// Every statement, issue and comment, with the text its span covers.
fn render(sql: &str) -> String {
    render_parsed(sql, &parse(sql))
}

fn render_parsed(sql: &str, p: &ParsedFile) -> String {
    let mut out = String::new();
    for s in &p.statements {
        let origin = format!("{:?}", s.origin);
        writeln!(out, "{origin} {:?} {:?}", s.span, &sql[s.span.clone()]).unwrap();
        if s.anchor != s.span {
            writeln!(out, "  anchor {:?}", s.anchor).unwrap();
        }
        writeln!(out, "  {}", kind(&s.kind)).unwrap();
    }
    for e in &p.syntax_errors {
        writeln!(
            out,
            "issue {:?} {:?}: {}",
            e.span,
            &sql[e.span.clone()],
            e.message
        )
        .unwrap();
    }
    for c in &p.comments {
        writeln!(out, "comment {:?} {:?}", c.span, c.text).unwrap();
    }
    out
}

/// Parses and checks the invariants every result must keep, whatever the input.
#[track_caller]
fn parse_checked(sql: &str) -> ParsedFile {
    let p = parse(sql);
    let spans = p
        .statements
        .iter()
        .flat_map(|s| [&s.span, &s.anchor])
        .chain(p.syntax_errors.iter().map(|e| &e.span))
        .chain(p.comments.iter().map(|c| &c.span));
    for span in spans {
        assert!(
            span.start <= span.end && span.end <= sql.len(),
            "span {span:?} out of range"
        );
        assert!(
            sql.is_char_boundary(span.start) && sql.is_char_boundary(span.end),
            "span {span:?} not on char boundaries"
        );
    }
    for w in p.statements.windows(2) {
        assert!(
            w[0].anchor.start <= w[1].anchor.start,
            "statements out of order"
        );
    }
    for s in &p.statements {
        assert!(
            s.anchor.start <= s.span.start && s.span.end <= s.anchor.end,
            "span outside its anchor"
        );
        let text = &sql[s.span.clone()];
        assert!(
            !text.ends_with(';') && text.trim() == text,
            "span {text:?} not trimmed"
        );
    }
    for e in &p.syntax_errors {
        let first = e.message.chars().next().expect("empty issue message");
        assert!(
            !first.is_uppercase(),
            "issue starts upper-case: {}",
            e.message
        );
        assert!(
            !e.message.ends_with('.'),
            "issue ends with a period: {}",
            e.message
        );
        assert!(
            !e.message.contains('\n'),
            "issue on several lines: {}",
            e.message
        );
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The neutral view, statement kind by statement kind

#[test]
fn create_table() {
    let sql = r#"
CREATE TEMP TABLE IF NOT EXISTS main."Users" (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    "Email" TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name VARCHAR(255) NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    token TEXT DEFAULT (lower(hex(randomblob(16)))),
    score NUMERIC(10, 2) CHECK (score >= 0),
    team_id INT CONSTRAINT fk_team REFERENCES teams (id) ON DELETE CASCADE,
    doubled INT GENERATED ALWAYS AS (score * 2) STORED,
    tripled AS (score * 3),
    big UNSIGNED BIG INT,
    anything,
    CONSTRAINT one_email UNIQUE ("Email") ON CONFLICT REPLACE,
    FOREIGN KEY (team_id, id) REFERENCES main.memberships (team_id, user_id),
    CHECK (id > 0)
) WITHOUT ROWID, STRICT;
CREATE TABLE copy AS SELECT id, upper(name) FROM users WHERE score > (SELECT avg(score) FROM stats);
"#;
    insta::assert_snapshot!(render(sql));
}

#[test]
fn insert() {
    let sql = "
INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y');
INSERT INTO t (a) VALUES ((SELECT max(a) FROM u));
INSERT INTO t (a) SELECT a FROM u JOIN v ON u.id = v.id WHERE v.ok;
INSERT OR REPLACE INTO t (a) VALUES (1);
REPLACE INTO main.t VALUES (X'00ff');
INSERT OR IGNORE INTO t DEFAULT VALUES;
INSERT INTO t AS old (id, a) VALUES (1, 2)
    ON CONFLICT (id) DO UPDATE SET a = excluded.a + (SELECT count(*) FROM audit) WHERE old.a < 10;
INSERT INTO t (a) VALUES (now()) RETURNING id;
";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn update_and_delete() {
    let sql = "
UPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id);
UPDATE users SET role = 'admin' WHERE id = 1 AND email IN ('a@x', 'b@x');
UPDATE users SET flag = 1 WHERE (id = -5);
UPDATE users SET flag = 1 WHERE id = ?;
UPDATE users SET flag = 1 WHERE deleted_at IS NULL;
UPDATE users SET flag = 1 WHERE id = 1 OR id = 2;
UPDATE OR IGNORE t SET (a, b) = (u.a, u.b) FROM u WHERE t.id = u.id RETURNING t.id;
UPDATE t SET a = 1 WHERE id IN (SELECT id FROM u) AND t.a IN w;
DELETE FROM sessions;
DELETE FROM sessions WHERE user_id = 42;
DELETE FROM t WHERE rowid NOT IN (SELECT min(rowid) FROM t GROUP BY a);
DELETE FROM main.t AS x WHERE x.id = 1 RETURNING *;
";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn schema_changes() {
    let sql = r#"
CREATE INDEX idx_a ON t (a);
CREATE UNIQUE INDEX IF NOT EXISTS "Idx_B" ON t (b COLLATE NOCASE DESC) WHERE b IS NOT NULL;
CREATE INDEX main.idx_c ON t (lower(c));
DROP INDEX idx_a;
DROP INDEX IF EXISTS main.idx_b;
ALTER TABLE t ADD COLUMN c INTEGER NOT NULL DEFAULT 0;
ALTER TABLE t ADD d TEXT REFERENCES u (id);
ALTER TABLE t ADD COLUMN e UNSIGNED BIG INT;
ALTER TABLE t DROP COLUMN c;
ALTER TABLE t DROP d;
ALTER TABLE t RENAME TO t2;
ALTER TABLE main.t2 RENAME COLUMN a TO a2;
ALTER TABLE t2 RENAME b TO b2;
DROP TABLE t2;
DROP TABLE IF EXISTS main.old;
CREATE VIEW IF NOT EXISTS v (x) AS SELECT a FROM t UNION ALL SELECT b FROM u;
CREATE TEMP VIEW w AS SELECT count(*) FROM t;
DROP VIEW IF EXISTS v;
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(title, body, tokenize = 'porter unicode61');
"#;
    insta::assert_snapshot!(render(sql));
}

#[test]
fn transactions_and_other_statements() {
    let sql = "
BEGIN;
BEGIN IMMEDIATE TRANSACTION;
COMMIT;
END TRANSACTION;
ROLLBACK;
SAVEPOINT s1;
RELEASE SAVEPOINT s1;
ROLLBACK TO s1;
PRAGMA foreign_keys = OFF;
PRAGMA main.journal_mode = WAL;
PRAGMA table_info(t);
PRAGMA cache_size = -2000;
PRAGMA foreign_key_check;
VACUUM;
VACUUM INTO 'backup.db';
ANALYZE t;
REINDEX main.idx;
ATTACH DATABASE 'other.db' AS other;
DETACH other;
EXPLAIN QUERY PLAN SELECT * FROM t;
DROP TRIGGER IF EXISTS trg;
";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn queries() {
    let sql = "
SELECT a.x, (SELECT max(y) FROM b WHERE b.id = a.id), count(*)
FROM a LEFT JOIN c ON c.id = a.id, (SELECT * FROM d) AS dd
WHERE a.z IN (SELECT z FROM e) AND EXISTS (SELECT 1 FROM f) AND a.w = coalesce(a.w, 0)
GROUP BY a.x HAVING count(*) > (SELECT 1 FROM g)
ORDER BY upper(a.x);
SELECT 1 FROM one UNION SELECT 2 FROM two EXCEPT SELECT 3 FROM three INTERSECT SELECT 4 FROM one;
WITH recent AS (SELECT * FROM events WHERE ts > 0), top AS (SELECT * FROM recent LIMIT 5)
SELECT * FROM top JOIN recent USING (id);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT i FROM n;
SELECT value FROM json_each('[1]') JOIN items ON items.id = json_each.value;
SELECT setval_like(1), datetime('now'), DATETIME('now');
VALUES (1, 2), ((SELECT 3 FROM h));
SELECT a FROM t WHERE a IS NOT b AND b IS 1 AND c ISNULL AND d NOTNULL AND e NOT GLOB 'x*' AND (f << 2) > 0;
SELECT * FROM t INDEXED BY idx_a WHERE a = 1;
WITH c AS MATERIALIZED (SELECT 1 FROM m) SELECT * FROM c;
";
    insta::assert_snapshot!(render(sql));
}

/// The reads and sources of the query in the first statement of `sql`, as text.
fn reads_and_sources(sql: &str) -> (Vec<String>, Vec<String>) {
    let p = parse_checked(sql);
    assert!(p.syntax_errors.is_empty(), "{sql}: {:?}", p.syntax_errors);
    let Some(first) = p.statements.first() else {
        panic!("no statement in {sql}");
    };
    let query = match &first.kind {
        StmtKind::Insert {
            source: InsertSource::Query(q),
            ..
        }
        | StmtKind::Select { query: q }
        | StmtKind::CreateView { query: q, .. }
        | StmtKind::CreateTable {
            as_query: Some(q), ..
        } => q,
        other => panic!("no query in {other:?} of {sql}"),
    };
    let text = |ns: &[Name]| ns.iter().map(Name::to_string).collect();
    (text(&query.reads), text(&query.sources))
}

#[test]
fn sources_are_the_tables_rows_come_from() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        // The guarded seed insert of kratos, harbor and synapse: one constant row at most.
        (
            "INSERT INTO settings (key, value) SELECT 'theme', 'dark' WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'theme')",
            &["settings"],
            &[],
        ),
        // A scalar subquery in the select list: one value per row, not rows.
        (
            "INSERT INTO t SELECT (SELECT max(id) FROM users) + 1",
            &["users"],
            &[],
        ),
        (
            "INSERT INTO t SELECT id FROM main.users",
            &["main.users"],
            &["main.users"],
        ),
        (
            "INSERT INTO t SELECT 1 UNION ALL SELECT id FROM users EXCEPT SELECT id FROM bans",
            &["users", "bans"],
            &["users", "bans"],
        ),
        (
            "INSERT INTO t SELECT * FROM (SELECT id FROM users WHERE EXISTS (SELECT 1 FROM bans)) AS d",
            &["users", "bans"],
            &["users"],
        ),
        (
            "WITH src AS (SELECT id FROM users), unused AS (SELECT 1 FROM logs) INSERT INTO t SELECT id FROM src",
            &["users", "logs"],
            &["users"],
        ),
        (
            "WITH a AS (SELECT * FROM users), b AS (SELECT * FROM a WHERE id > (SELECT 1 FROM x)) SELECT * FROM b",
            &["users", "x"],
            &["users"],
        ),
        (
            "WITH RECURSIVE r(id) AS (SELECT id FROM nodes UNION ALL SELECT n.id FROM nodes n JOIN r ON n.parent = r.id) SELECT * FROM r",
            &["nodes"],
            &["nodes"],
        ),
        // A CTE referenced twice gives its sources once.
        (
            "WITH c AS (SELECT id FROM a UNION SELECT id FROM b) SELECT * FROM c JOIN c AS c2 USING (id) WHERE id IN (SELECT id FROM c)",
            &["a", "b"],
            &["a", "b"],
        ),
        // `users` in FROM is the table; the CTE of that name is only visible in the subquery.
        (
            "SELECT * FROM users WHERE id IN (WITH users AS (SELECT 1 AS id FROM admins) SELECT id FROM users)",
            &["users", "admins"],
            &["users"],
        ),
        (
            "SELECT * FROM (WITH users AS (SELECT id FROM admins) SELECT * FROM users) AS d",
            &["admins"],
            &["admins"],
        ),
        // A CTE used only in a scalar subquery adds reads, not sources.
        (
            "WITH m AS (SELECT max(id) AS id FROM users) INSERT INTO t SELECT (SELECT id FROM m)",
            &["users"],
            &[],
        ),
        (
            "SELECT * FROM (a JOIN b ON b.id = (SELECT max(id) FROM c)) LEFT JOIN d USING (id)",
            &["a", "b", "c", "d"],
            &["a", "b", "d"],
        ),
        // A table-valued function makes as many rows as its arguments say.
        (
            "SELECT value FROM json_each((SELECT group_concat(id) FROM users))",
            &["users"],
            &["users"],
        ),
        (
            "SELECT 1 FROM a GROUP BY 1 HAVING count(*) > (SELECT 1 FROM h) ORDER BY (SELECT 1 FROM o) LIMIT (SELECT 1 FROM l)",
            &["a", "h", "o", "l"],
            &["a"],
        ),
        ("VALUES (1), ((SELECT max(id) FROM users))", &["users"], &[]),
        (
            "INSERT INTO t WITH v(x) AS (VALUES ((SELECT max(id) FROM users))) SELECT x FROM v",
            &["users"],
            &[],
        ),
        (
            "CREATE TABLE c AS SELECT 1 WHERE EXISTS (SELECT 1 FROM users)",
            &["users"],
            &[],
        ),
        (
            "CREATE VIEW v AS SELECT u.id FROM users u JOIN teams t ON t.id = u.team_id",
            &["users", "teams"],
            &["users", "teams"],
        ),
    ];
    for (sql, reads, sources) in cases {
        let (got_reads, got_sources) = reads_and_sources(sql);
        assert_eq!(got_reads, *reads, "reads of {sql}");
        assert_eq!(got_sources, *sources, "sources of {sql}");
    }
}

/// SQLite cannot change a column in place, so migrations rebuild the table (the pattern from
/// <https://www.sqlite.org/lang_altertable.html#otheralter>, as kratos and synapse write it).
#[test]
fn table_rebuild() {
    let sql = r#"PRAGMA foreign_keys = OFF;
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS "_identities_tmp" (
  "id" TEXT PRIMARY KEY,
  "traits" TEXT NOT NULL,
  "nid" CHAR(36),
  FOREIGN KEY ("nid") REFERENCES "networks" ("id") ON UPDATE RESTRICT ON DELETE CASCADE
);
INSERT INTO "_identities_tmp" (id, traits, nid) SELECT id, traits, nid FROM "identities";
DROP TABLE "identities";
ALTER TABLE "_identities_tmp" RENAME TO "identities";
CREATE INDEX "identities_nid_idx" ON "identities" (id, nid);
COMMIT;
PRAGMA foreign_keys = ON;
"#;
    insta::assert_snapshot!(render(sql));
}

#[test]
fn triggers_keep_their_bodies() {
    let sql = "
CREATE TRIGGER IF NOT EXISTS count_follows AFTER INSERT ON follows
FOR EACH ROW WHEN (CASE WHEN NEW.active THEN 1 ELSE 0 END) = 1
BEGIN
    UPDATE users SET followers_count = followers_count + 1 WHERE id = NEW.followee_id;
    UPDATE users SET kind = CASE WHEN followers_count > 100 THEN 'star' ELSE 'plain' END
        WHERE id = NEW.followee_id;
    SELECT CASE WHEN NEW.id IS NULL THEN RAISE(ABORT, 'no id; really') END;
END;
CREATE TEMP TRIGGER t2 BEFORE DELETE ON users BEGIN DELETE FROM follows WHERE follower_id = OLD.id; END;
UPDATE users SET followers_count = 0;
";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn dml_with_ctes() {
    let sql = "
WITH fresh AS (SELECT id FROM staging WHERE ok) INSERT INTO users (id) SELECT id FROM fresh;
WITH gone AS (SELECT id FROM bans) UPDATE users SET active = 0 WHERE id IN (SELECT id FROM gone);
WITH gone AS (SELECT id FROM bans) DELETE FROM sessions WHERE user_id IN (SELECT id FROM gone);
WITH moved AS (DELETE FROM old_events WHERE ts < 0 RETURNING *) INSERT INTO archive SELECT * FROM moved;
";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn comments() {
    let sql = "-- leading comment\r\n/* block\n   comment */ SELECT '-- not a comment' /* inside */ FROM t; -- trailing\n-- héllo ✓\nSELECT 1; /* unterminated, which SQLite reads to the end";
    insta::assert_snapshot!(render(sql));
}

#[test]
fn error_in_the_middle() {
    let sql = "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (id INTEGER,, x);\nSELECT 1_ FROM a;\nUPDATE a SET id = 2 WHERE id = 1;\nSELECT FROM WHERE;\n  DELETE FROM a  ;\nSELECT 'never closed";
    let p = parse_checked(sql);
    // The statements around the bad ones keep their exact text.
    let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        texts,
        [
            "CREATE TABLE a (id INTEGER)",
            "UPDATE a SET id = 2 WHERE id = 1",
            "DELETE FROM a"
        ]
    );
    assert_eq!(p.syntax_errors.len(), 4);
    insta::assert_snapshot!(render_parsed(sql, &p));
}

#[test]
fn multibyte_text_before_statements() {
    let sql = "-- ünïcödé ✓ 日本語 🦀\nINSERT INTO t (name) VALUES ('Zoë 🦀'); /* ∑ */ UPDATE t SET name = 'é' WHERE name = 'ü';\nSELECT 'ß' FROM \"tåble\";";
    let p = parse_checked(sql);
    let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        texts,
        [
            "INSERT INTO t (name) VALUES ('Zoë 🦀')",
            "UPDATE t SET name = 'é' WHERE name = 'ü'",
            "SELECT 'ß' FROM \"tåble\""
        ]
    );
    insta::assert_snapshot!(render_parsed(sql, &p));
}

#[test]
fn names_compare_without_case_quoted_or_not() {
    let p = parse_checked(
        r#"UPDATE "Users" SET a = 1; UPDATE users SET a = 1; UPDATE [USERS] SET a = 1;"#,
    );
    let tables: Vec<&Name> = p
        .statements
        .iter()
        .map(|s| match &s.kind {
            StmtKind::Update { table, .. } => table,
            other => panic!("expected an update, got {other:?}"),
        })
        .collect();
    assert!(
        tables.iter().all(|t| **t == Name::new("users")),
        "{tables:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input: never a panic, always an issue where the input is wrong

#[test]
fn empty_and_blank_input() {
    for sql in [
        "",
        " ",
        "\n\t\r\n  ",
        ";",
        ";;; ;",
        "-- only a comment",
        "/* a */ -- b\n/* c */",
    ] {
        let p = parse_checked(sql);
        assert!(p.statements.is_empty(), "{sql:?}");
        assert!(p.syntax_errors.is_empty(), "{sql:?}");
    }
    assert_eq!(parse_checked("/* a */ -- b\n/* c */").comments.len(), 3);
}

#[test]
fn binary_junk() {
    let p = parse_checked("\0\u{1}\u{2} SELECT \0 ;\u{feff}\u{fffd}; SELECT 1;");
    assert_eq!(p.statements.len(), 1, "the good statement still parses");
    assert_eq!(p.syntax_errors.len(), 2);
    assert!(
        p.syntax_errors[0].message.contains("`\\0`"),
        "{}",
        p.syntax_errors[0].message
    );
    // Every byte value, and a spread of code points.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    parse_checked(&String::from_utf8_lossy(&bytes));
    let chars: String = (0..20_000u32)
        .filter_map(|i| char::from_u32(i * 37 % 0x11_0000))
        .collect();
    parse_checked(&chars);
}

#[test]
fn backslashes_are_not_escapes() {
    // SQLite strings have no backslash escapes: `'a\'` is a whole string.
    let p = parse_checked(r"SELECT 'a\'; SELECT E'\x'; SELECT 'it''s';");
    assert_eq!(p.statements.len(), 3);
    assert!(p.syntax_errors.is_empty(), "{:?}", p.syntax_errors);
}

#[test]
fn unterminated_literals() {
    for (sql, message) in [
        ("SELECT 1; SELECT 'abc", "unterminated string literal"),
        (
            "SELECT 1; SELECT \"abc",
            "expected close delimiter '\"' before EOF",
        ),
        (
            "SELECT 1; SELECT [abc",
            "expected close delimiter ']' before EOF",
        ),
        (
            "SELECT 1; SELECT `abc",
            "expected close delimiter '`' before EOF",
        ),
        ("SELECT 1; SELECT x'ab", "unterminated string literal"),
    ] {
        let p = parse_checked(sql);
        assert_eq!(p.statements.len(), 1, "{sql:?}");
        assert_eq!(p.syntax_errors.len(), 1, "{sql:?}");
        let issue = &p.syntax_errors[0];
        assert_eq!(issue.message, message, "{sql:?}");
        assert_eq!(issue.span, 17..sql.len(), "{sql:?}");
    }
    let p = parse_checked("SELECT 1; /* never closed; SELECT 2;");
    assert_eq!(p.statements.len(), 1);
    assert!(
        p.syntax_errors.is_empty(),
        "SQLite reads it as a comment to the end"
    );
    assert_eq!(p.comments[0].text, " never closed; SELECT 2;");
}

#[test]
fn unterminated_trigger_body() {
    let sql = "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; SELECT 2;";
    let p = parse_checked(sql);
    assert!(p.statements.is_empty());
    assert_eq!(p.syntax_errors.len(), 1);
    assert_eq!(
        p.syntax_errors[0].message,
        "expected END, found end of statement"
    );
}

#[test]
fn deep_nesting_is_an_issue_not_a_crash() {
    let parens = format!(
        "SELECT {}1{}; SELECT 2;",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    let p = parse_checked(&parens);
    assert_eq!(p.syntax_errors.len(), 1);
    assert_eq!(
        p.syntax_errors[0].message,
        "statement nested too deeply to parse"
    );
    assert_eq!(p.statements.len(), 1, "the next statement still parses");
    let subqueries = format!("SELECT {}1{};", "(SELECT ".repeat(2_000), ")".repeat(2_000));
    assert_eq!(parse_checked(&subqueries).syntax_errors.len(), 1);
}

#[test]
fn long_chains_parse() {
    // The parser builds these as deep as they are long; walking and dropping them must not
    // overflow the stack.
    for sql in [
        format!("SELECT 1{};", " + 1".repeat(20_000)),
        format!(
            "DELETE FROM t WHERE {};",
            vec!["a = 1"; 20_000].join(" AND ")
        ),
        format!("SELECT 1{};", " UNION SELECT 1".repeat(5_000)),
        format!("SELECT 1{};", " ISNULL".repeat(20_000)),
        format!("SELECT 1{};", " IS 1".repeat(20_000)),
    ] {
        let p = parse_checked(&sql);
        assert_eq!(p.statements.len(), 1, "{}", &sql[..40]);
        assert!(p.syntax_errors.is_empty(), "{:?}", p.syntax_errors);
    }
    let sql = format!(
        "DELETE FROM t WHERE {};",
        vec!["a = 1"; 20_000].join(" AND ")
    );
    match &parse_checked(&sql).statements[0].kind {
        StmtKind::Delete {
            filter: Some(f), ..
        } => assert!(f.point_lookup),
        other => panic!("expected a delete, got {other:?}"),
    }
}

#[test]
fn too_many_copying_operators_is_an_issue() {
    let sql = format!("SELECT 1 WHERE a{};", " GLOB 'x'".repeat(1_001));
    let p = parse_checked(&sql);
    assert_eq!(p.syntax_errors.len(), 1);
    assert!(
        p.syntax_errors[0]
            .message
            .starts_with("more than 1000 GLOB")
    );
}

/// The tokenizer runs over 64 KiB windows: statements, literals, comments, trigger bodies and
/// tokenizer errors that straddle a window's end come out as if the file were read whole.
#[test]
fn statements_across_tokenizer_windows() {
    let long_string = format!("SELECT '{}' FROM t", "ab; ".repeat(40_000));
    let long_comment = format!("/* {} */", "é;".repeat(50_000));
    let trigger = format!(
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN {} END",
        "UPDATE u SET n = n + 1 WHERE id = NEW.id; ".repeat(2_000)
    );
    for pad in (65_490..65_560).step_by(7) {
        // Multi-byte padding, so that some windows end inside a character; with `pad` 65_525 the
        // first window ends between `1_` and `0`.
        let padding = format!("--{}\n", "é".repeat(pad / 2));
        let statements = [
            "SELECT 1_0 FROM t WHERE a = 'ü'",
            "SELECT 2",
            long_string.as_str(),
            trigger.as_str(),
            "SELECT 3",
        ];
        let [first, second, third, fourth, fifth] = statements;
        let sql = format!(
            "{padding}{first};\n{second};\n{third};\n{long_comment}\nSELECT 4_;\n{fourth};\n{fifth};"
        );
        let p = parse_checked(&sql);
        let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
        assert_eq!(texts, statements, "pad {pad}");
        assert_eq!(p.syntax_errors.len(), 1, "pad {pad}: {:?}", p.syntax_errors);
        assert_eq!(&sql[p.syntax_errors[0].span.clone()], "4_", "pad {pad}");
        assert_eq!(p.comments.len(), 2, "pad {pad}");
        assert!(matches!(
            p.statements[3].kind,
            StmtKind::CreateTrigger { .. }
        ));
    }
}

#[test]
fn two_hundred_thousand_statements() {
    let sql = "INSERT INTO t (a) VALUES (1);\n".repeat(200_000);
    let p = parse_checked(&sql);
    assert_eq!(p.statements.len(), 200_000);
    assert!(p.syntax_errors.is_empty());
    let last = &p.statements[199_999];
    assert_eq!(last.span.start, 30 * 199_999);
    assert_eq!(&sql[last.span.clone()], "INSERT INTO t (a) VALUES (1)");
}

// ---------------------------------------------------------------------------------------------
// What SQLite accepts, this front end accepts

/// Statements SQLite prepares (checked here against the bundled SQLite) that sqlparser's SQLite
/// dialect alone would refuse or that need care; none may get a syntax issue.
const SQLITE_ACCEPTS: &[&str] = &[
    "SELECT * FROM t NOT INDEXED WHERE a = 1",
    "SELECT * FROM t AS tt INDEXED BY i WHERE a = 1",
    "UPDATE t INDEXED BY i SET a = 1",
    "DELETE FROM t NOT INDEXED WHERE a = 1",
    "SELECT a FROM t WHERE a IS NOT b AND a IS 1",
    "SELECT a FROM t WHERE a ISNULL OR b NOTNULL OR a NOT NULL",
    "SELECT 'a' NOT GLOB 'b', 'a' NOT LIKE 'b'",
    "SELECT a % 2, a << 1, a >> 1, a & 1, a | 1, ~a FROM t",
    "WITH c AS MATERIALIZED (SELECT 1) SELECT * FROM c",
    "WITH c AS NOT MATERIALIZED (SELECT 1) SELECT * FROM c",
    "INSERT INTO t AS tt (a) VALUES (1)",
    "INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = excluded.a WHERE a > 0",
    "INSERT INTO t (a) SELECT a FROM u WHERE true ON CONFLICT DO NOTHING",
    "CREATE TABLE n10 (a INT, b INT, PRIMARY KEY (a, b), UNIQUE (b) ON CONFLICT REPLACE)",
    "CREATE TABLE n14 (a INT PRIMARY KEY) WITHOUT ROWID, STRICT",
    "CREATE TABLE n15 (a INTEGER PRIMARY KEY DESC ON CONFLICT REPLACE, b NOT NULL ON CONFLICT IGNORE)",
    "CREATE TABLE n20 (a UNSIGNED BIG INT, b VARYING CHARACTER(255), c NATIVE CHARACTER(70), d DOUBLE PRECISION)",
    "CREATE TABLE n21 (a, b, c DEFAULT NULL, d DEFAULT TRUE, e DEFAULT -1, f DEFAULT x'00')",
    "CREATE TABLE n22 (a INT, b INT AS (a + 1) VIRTUAL, c GENERATED ALWAYS AS (a) STORED)",
    "CREATE TABLE n23 (a INTEGER REFERENCES u ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE n24 ([order] INT, \"select\" INT, `group` INT, key TEXT, value TEXT)",
    "CREATE TABLE n25 (a ANY) STRICT",
    "CREATE TRIGGER IF NOT EXISTS nt4 INSTEAD OF INSERT ON v BEGIN SELECT 1; END",
    "CREATE TEMP TRIGGER nt5 AFTER INSERT ON t BEGIN SELECT CASE WHEN NEW.a IS NULL THEN RAISE(ABORT, 'no') END; END",
    "CREATE TRIGGER nt6 UPDATE OF a ON t WHEN OLD.a IS NOT NEW.a BEGIN SELECT 1; SELECT 2; END",
    "CREATE VIRTUAL TABLE nvt USING fts5(a, b, tokenize = 'porter')",
    "CREATE VIRTUAL TABLE nvt3 USING rtree(id, minx, maxx)",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA main.journal_mode = WAL",
    "PRAGMA table_info('t')",
    "PRAGMA defer_foreign_keys = yes",
    "VACUUM INTO '/tmp/never-written.db'",
    "REINDEX",
    "REINDEX t",
    "DETACH DATABASE aux",
    "BEGIN EXCLUSIVE",
    "ROLLBACK TRANSACTION TO SAVEPOINT s",
    "RELEASE s",
    "SELECT a FROM t LIMIT 5, 10",
    "SELECT a FROM t WHERE a IN ()",
    "SELECT a FROM t WHERE a IN w",
    "SELECT ?1, ?, :name, @name, $name",
    "SELECT x'00ff', 1e10, .5, 0x1F",
    "SELECT count(*) FILTER (WHERE a > 1) FROM t",
    "SELECT sum(a) OVER w FROM t WINDOW w AS (ORDER BY b ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
    "SELECT a -> '$.x', a ->> '$.y' FROM t",
    "SELECT * FROM json_each('[1,2]') AS j WHERE j.value > 1",
    "UPDATE t SET (a, b) = (SELECT a, b FROM u)",
    "UPDATE t SET a = u.a FROM u WHERE t.id = u.id",
    "DELETE FROM t WHERE id = 1 RETURNING id",
];

#[test]
fn what_sqlite_accepts_parses_without_issues() {
    let setup = "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b); CREATE TABLE u (id INTEGER PRIMARY KEY, a UNIQUE, b);
        CREATE TABLE w (a); CREATE INDEX i ON t (a); CREATE VIEW v AS SELECT * FROM t; SAVEPOINT s;
        ATTACH DATABASE ':memory:' AS aux;";
    for sql in SQLITE_ACCEPTS {
        let conn = rusqlite::Connection::open_in_memory().expect("open sqlite");
        conn.execute_batch(setup).expect("set up");
        if let Err(e) = conn.prepare(sql) {
            panic!("SQLite refuses {sql:?}: {e}; the list is meant to hold what it accepts");
        }
        let p = parse_checked(sql);
        assert!(p.syntax_errors.is_empty(), "{sql:?}: {:?}", p.syntax_errors);
        assert_eq!(p.statements.len(), 1, "{sql:?}");
    }
}
