//! The lock table and the duration model, without a database (the estimates on a real server are
//! tested in `tests/lint_estimate.rs`).

use super::*;
use crate::lint::Category;

#[test]
fn every_backfill_and_lock_rule_has_a_lock_except_transaction_control() {
    for &rule in RuleId::ALL {
        let listed = LOCKS.iter().any(|e| e.rule == rule);
        let expected = matches!(rule.category(), Category::Backfill | Category::Lock)
            && rule != RuleId::TransactionInMigration;
        assert_eq!(listed, expected, "{rule}");
        if listed {
            assert!(
                lock_of(rule, Shape::Any).is_some(),
                "{rule} has no Any entry"
            );
        }
    }
    // A rule's `Any` entry comes after its specific ones, so `find` reaches them first.
    for (i, e) in LOCKS.iter().enumerate() {
        if e.shape == Shape::Any {
            assert!(
                !LOCKS[i + 1..].iter().any(|later| later.rule == e.rule),
                "{}",
                e.rule
            );
        }
    }
}

#[test]
fn the_lock_depends_on_the_statement_where_postgres_s_does() {
    let create = lock_of(RuleId::IndexNotConcurrent, Shape::CreateIndex).unwrap();
    assert_eq!((create.mode, create.work), ("SHARE", Work::IndexBuild));
    let drop = lock_of(RuleId::IndexNotConcurrent, Shape::DropIndex).unwrap();
    assert_eq!((drop.mode, drop.work), ("ACCESS EXCLUSIVE", Work::Catalog));
    let fk = lock_of(RuleId::ConstraintWithoutNotValid, Shape::ForeignKey).unwrap();
    assert_eq!(
        (fk.mode, fk.on),
        ("SHARE ROW EXCLUSIVE", On::TargetAndReferenced)
    );
    let check = lock_of(RuleId::ConstraintWithoutNotValid, Shape::Any).unwrap();
    assert_eq!((check.mode, check.on), ("ACCESS EXCLUSIVE", On::Target));
    let update = lock_of(RuleId::BackfillUpdate, Shape::Update).unwrap();
    assert!(update.row_locks);
    assert_eq!(update.mode, "ROW EXCLUSIVE");
    let in_do = lock_of(RuleId::BackfillDoBlock, Shape::Delete).unwrap();
    assert_eq!(in_do.work, Work::Delete);
}

#[test]
fn the_shape_comes_from_the_parsed_statement() {
    let parsed = crate::sql::parse(
        "ALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES b (id);\nALTER TABLE a ADD PRIMARY KEY (id);\nALTER TABLE a ADD CHECK (x > 0);\nCREATE TABLE c (id int REFERENCES a (id));\nDROP INDEX i;\n",
        Dialect::Postgres,
    );
    let shapes: Vec<Shape> = parsed.statements.iter().map(shape).collect();
    assert_eq!(
        shapes,
        [
            Shape::ForeignKey,
            Shape::AddKey,
            Shape::Any,
            Shape::ForeignKey,
            Shape::DropIndex
        ]
    );
    let t = tables(&parsed.statements[0]);
    assert_eq!(t.target, Some(Name::new("a")));
    assert_eq!(t.referenced, Some(Name::new("b")));
    let t = tables(&parsed.statements[4]);
    assert_eq!((t.target, t.index), (None, Some(Name::new("i"))));
}

fn figures(work: Work, rows: f64) -> Figures {
    Figures {
        work,
        rows,
        table_rows: 1_000_000.0,
        heap_bytes: 70_000_000,
        index_bytes: 30_000_000,
        indexes: 2,
    }
}

#[test]
fn bytes_are_the_touched_share_of_what_the_work_writes() {
    assert_eq!(figures(Work::Update, 1_000_000.0).bytes(), 100_000_000);
    assert_eq!(figures(Work::Update, 250_000.0).bytes(), 25_000_000);
    // More rows than the statistics say: the whole table, not more.
    assert_eq!(figures(Work::Update, 3_000_000.0).bytes(), 100_000_000);
    assert_eq!(figures(Work::Delete, 500_000.0).bytes(), 35_000_000);
    assert_eq!(figures(Work::Scan, 10.0).bytes(), 70_000_000);
    assert_eq!(figures(Work::Rewrite, 10.0).bytes(), 100_000_000);
    assert_eq!(figures(Work::Catalog, 1e6).bytes(), 0);
    let empty = Figures {
        table_rows: 0.0,
        ..figures(Work::Update, 0.0)
    };
    assert_eq!(empty.bytes(), 0);
}

#[test]
fn the_duration_range_covers_the_measured_update() {
    // The measurement the UPDATE rate comes from: 1,000,000 rows, 99 MB, 10.6 s at load 7.
    let (low, high) = duration(Work::Update, 99_000_000).unwrap();
    assert!(low < 10.6 && 10.6 < high, "{low}..{high}");
    // And the DELETE's: 500,000 of those rows (about 35 MB of heap), 1.3 s.
    let (low, high) = duration(Work::Delete, 35_000_000).unwrap();
    assert!(low < 1.3 && 1.3 < high, "{low}..{high}");
    assert_eq!(duration(Work::Catalog, 1), None);
    for r in RATES {
        assert!(0.0 < r.low_mb_s && r.low_mb_s < r.high_mb_s, "{r:?}");
    }
}

#[test]
fn the_text_says_rows_bytes_lock_and_time() {
    let entry = lock_of(RuleId::BackfillUpdate, Shape::Update).unwrap();
    let f = Figures {
        rows: 1_090_000.0,
        table_rows: 1_090_000.0,
        heap_bytes: 300_000_000,
        index_bytes: 112_000_000,
        ..figures(Work::Update, 0.0)
    };
    let locks = [LockOn {
        mode: entry.mode,
        table: "public.users".into(),
    }];
    let text = describe(
        entry,
        &f,
        f.bytes(),
        duration(Work::Update, f.bytes()),
        &locks,
        "table statistics",
    );
    assert_eq!(
        text,
        "UPDATE of ~1.09M rows (412 MB) holding row locks ~16 s-1.7 min; ROW EXCLUSIVE on public.users for the whole time"
    );
    let text = describe(entry, &f, 0, Some((0.1, 0.5)), &locks, "planner");
    assert!(
        text.ends_with(
            "under 1 s; ROW EXCLUSIVE on public.users for the whole time; rows from the planner"
        ),
        "{text}"
    );
}

#[test]
fn durations_read_in_one_unit_where_they_can() {
    assert_eq!(span(2.0, 9.04), "~2-9 s");
    assert_eq!(span(240.0, 660.0), "~4-11 min");
    assert_eq!(span(40.0, 180.0), "~40 s-3 min");
    assert_eq!(span(7200.0, 36000.0), "~2-10 h");
    assert_eq!(span(0.01, 0.2), "under 1 s");
    assert_eq!(count(1_090_000.0), "1.09M");
    assert_eq!(count(870.0), "870");
    assert_eq!(bytes(412_000_000), "412 MB");
}

#[test]
fn never_analyzed_tables_count_rows_from_their_size() {
    let stats = TableStats {
        name: "public.t".into(),
        reltuples: -1.0,
        heap_bytes: 1_000_000,
        index_bytes: 0,
        indexes: 0,
        row_width_guess: 50,
    };
    let (rows, from) = stats.rows();
    assert_eq!(rows, 20_000.0);
    assert!(from.contains("never analyzed"), "{from}");
    let analyzed = TableStats {
        reltuples: 123.0,
        ..stats
    };
    assert_eq!(analyzed.rows(), (123.0, "table statistics"));
}
