//! Tests of the SQLite front end: snapshots of the neutral view for representative SQL.

use super::parse;

#[test]
fn smoke() {
    let p = parse("SELECT 1;");
    assert_eq!(p.statements.len(), 1);
}
