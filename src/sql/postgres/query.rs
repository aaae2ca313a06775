//! What a query reads and calls, names, and `WHERE` summaries: the parts of the PostgreSQL front end
//! that look inside queries and expressions.
//!
//! A statement's tables are read off its tree in one pass: every relation in a `FROM` / `JOIN` /
//! `USING` (at any depth: subqueries, set operations, `LATERAL`, CTE bodies) and every `TABLE t`,
//! minus the names of the CTEs in scope. The data-modifying statements of `WITH` clauses are
//! skipped: they are listed as statements of their own.

use std::collections::HashSet;

use rowan::WalkEvent;
use squawk_syntax::ast::{self, AstNode, BinOp, normalize_name_node};
use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::STAND_IN;
use crate::sql::{Expr, Name, Query};

/// The CTEs of one statement: their names (to tell a CTE from a table) and their data-modifying
/// statements (listed after the statement).
#[derive(Default)]
pub(super) struct Scope {
    cte_names: Vec<String>,
    /// `INSERT` / `UPDATE` / `DELETE` / `MERGE` bodies of `WITH` clauses, in source order.
    pub dml: Vec<SyntaxNode>,
}

impl Scope {
    /// Reads the CTEs of the statement `stmt`. `runs_dml` says whether the data-modifying ones
    /// run now (they do not in a view or a rule) and should be listed.
    pub fn of(stmt: &SyntaxNode, runs_dml: bool) -> Scope {
        let mut scope = Scope::default();
        // Most statements have no CTE: the green walk finds that without a cursor per node.
        super::for_each_of_kind(stmt, &[SyntaxKind::WITH_TABLE], |node| {
            let Some(table) = ast::WithTable::cast(node.clone()) else {
                return;
            };
            if let Some(name) = table.name() {
                let name = normalize_name_node(name.syntax());
                if !scope.cte_names.contains(&name) {
                    scope.cte_names.push(name);
                }
            }
            if runs_dml
                && let Some(query) = table.query()
                && is_dml(query.syntax().kind())
            {
                scope.dml.push(query.syntax().clone());
            }
        });
        scope
    }

    /// Whether `name`, read at `at`, is a CTE visible there rather than a table.
    fn is_cte(&self, name: &Name, at: &SyntaxNode) -> bool {
        self.cte_at(name, at).is_some()
    }

    /// The CTE that `name`, read at `at`, refers to, if it is one visible there.
    fn cte_at(&self, name: &Name, at: &SyntaxNode) -> Option<ast::WithTable> {
        if name.schema.is_some() || !self.cte_names.contains(&name.name) {
            return None;
        }
        for ancestor in at.ancestors() {
            match ancestor.kind() {
                SyntaxKind::SOURCE_FILE => break,
                SyntaxKind::SELECT
                | SyntaxKind::SELECT_INTO
                | SyntaxKind::PAREN_SELECT
                | SyntaxKind::VALUES
                | SyntaxKind::TABLE
                | SyntaxKind::INSERT
                | SyntaxKind::UPDATE
                | SyntaxKind::DELETE
                | SyntaxKind::MERGE => {
                    let defined_here = ancestor
                        .children()
                        .filter(|child| child.kind() == SyntaxKind::WITH_CLAUSE)
                        .flat_map(|clause| clause.children())
                        .filter_map(ast::WithTable::cast)
                        .find(|table| {
                            table
                                .name()
                                .is_some_and(|cte| normalize_name_node(cte.syntax()) == name.name)
                        });
                    if defined_here.is_some() {
                        return defined_here;
                    }
                }
                _ => {}
            }
        }
        None
    }
}

fn is_dml(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        SyntaxKind::INSERT | SyntaxKind::UPDATE | SyntaxKind::DELETE | SyntaxKind::MERGE
    )
}

/// Tables read and functions called anywhere under `node`, and the sources of `rows`: the query
/// (or `FROM` item) under `node` whose result rows the statement stores, if it stores any.
pub(super) fn with_sources(node: &SyntaxNode, rows: Option<&SyntaxNode>, scope: &Scope) -> Query {
    let mut query = of(node, scope);
    if let Some(rows) = rows {
        (query.sources, query.row_functions) = sources(rows, scope);
    }
    query
}

/// PostgreSQL's built-in set-returning functions that make sense in a migration's select list:
/// called there, each returns as many rows as its arguments say, so the tables its arguments
/// read are where the rows come from.
const SET_RETURNING: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_populate_recordset",
    "jsonb_populate_recordset",
    "json_to_recordset",
    "jsonb_to_recordset",
    "jsonb_path_query",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
];

fn add_unique(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
    }
}

fn is_query(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        SyntaxKind::SELECT
            | SyntaxKind::SELECT_INTO
            | SyntaxKind::COMPOUND_SELECT
            | SyntaxKind::PAREN_SELECT
            | SyntaxKind::VALUES
            | SyntaxKind::TABLE
    )
}

/// The tables the rows of `rows` (a query, or a `FROM` list item) come from: see
/// [`Query::sources`] for what counts. A work list, not recursion: set operations, joins and
/// derived tables nest as deep as the input. Each CTE is followed once, so a recursive one (or
/// a chain of them) costs its size once.
pub(super) fn sources(rows: &SyntaxNode, scope: &Scope) -> (Vec<Name>, Vec<String>) {
    let mut sources: Vec<Name> = Vec::new();
    let mut row_functions: Vec<String> = Vec::new();
    let mut followed: HashSet<SyntaxNode> = HashSet::new();
    let mut pending = vec![rows.clone()];
    // A relation (or `TABLE t`) in a position that produces rows: a table, or a CTE to follow.
    let mut relation = |node: &SyntaxNode, pending: &mut Vec<SyntaxNode>| {
        let Some(name) = node
            .descendants()
            .find(|n| n.kind() == SyntaxKind::PATH_REF)
            .and_then(|p| path_name(&p))
        else {
            return;
        };
        match scope.cte_at(&name, node) {
            Some(cte) => {
                if let Some(body) = cte.query()
                    && !is_dml(body.syntax().kind())
                    && followed.insert(cte.syntax().clone())
                {
                    pending.push(body.syntax().clone());
                }
            }
            None => {
                if !sources.contains(&name) {
                    sources.push(name);
                }
            }
        }
    };
    while let Some(node) = pending.pop() {
        // Children are pushed in reverse so that they are taken in source order.
        let before = pending.len();
        match node.kind() {
            SyntaxKind::SELECT | SyntaxKind::SELECT_INTO => {
                pending.extend(
                    node.children()
                        .filter(|c| c.kind() == SyntaxKind::FROM_CLAUSE)
                        .flat_map(|from| from.children()),
                );
                // Set-returning functions in the select list (not in its subqueries) multiply
                // the rows: what their arguments read is where the rows come from.
                let select_list = node
                    .children()
                    .filter(|c| c.kind() == SyntaxKind::SELECT_CLAUSE);
                for clause in select_list {
                    let mut walk = clause.preorder();
                    while let Some(event) = walk.next() {
                        let WalkEvent::Enter(inner) = event else {
                            continue;
                        };
                        if is_query(inner.kind()) {
                            walk.skip_subtree();
                            continue;
                        }
                        if inner.kind() != SyntaxKind::CALL_EXPR {
                            continue;
                        }
                        let Some(call) = call_name(&inner) else {
                            continue;
                        };
                        if SET_RETURNING.contains(&call.as_str()) {
                            for read in inner.descendants() {
                                if matches!(
                                    read.kind(),
                                    SyntaxKind::RELATION_FROM_ITEM | SyntaxKind::TABLE
                                ) {
                                    relation(&read, &mut pending);
                                }
                            }
                        }
                        add_unique(&mut row_functions, call);
                    }
                }
            }
            // The operands of a set operation, a parenthesized query or `FROM` item, the items
            // of a join (not its `ON` condition), a derived table.
            SyntaxKind::COMPOUND_SELECT
            | SyntaxKind::PAREN_SELECT
            | SyntaxKind::PAREN_EXPR
            | SyntaxKind::PAREN_FROM_ITEM
            | SyntaxKind::JOIN_EXPR
            | SyntaxKind::JOIN => pending.extend(node.children()),
            SyntaxKind::RELATION_FROM_ITEM | SyntaxKind::TABLE => relation(&node, &mut pending),
            // A table function's rows may follow anything its arguments read.
            SyntaxKind::FUNCTION_FROM_ITEM
            | SyntaxKind::EXPR_FROM_ITEM
            | SyntaxKind::ROWS_FROM_ITEM
            | SyntaxKind::JSON_TABLE_FROM_ITEM
            | SyntaxKind::XML_TABLE_FROM_ITEM
            | SyntaxKind::GRAPH_TABLE_FROM_ITEM => {
                for inner in node.descendants() {
                    if matches!(
                        inner.kind(),
                        SyntaxKind::RELATION_FROM_ITEM | SyntaxKind::TABLE
                    ) {
                        relation(&inner, &mut pending);
                    }
                }
                let calls = node
                    .descendants()
                    .filter(|n| n.kind() == SyntaxKind::CALL_EXPR)
                    .filter(|call| {
                        !call
                            .ancestors()
                            .take_while(|a| a != &node)
                            .skip(1)
                            .any(|a| a.kind() == SyntaxKind::CALL_EXPR || is_query(a.kind()))
                    })
                    .filter_map(|call| call_name(&call));
                for call in calls {
                    add_unique(&mut row_functions, call);
                }
            }
            // `VALUES` rows are constants (their subqueries give one value each); anything else
            // (an `ON` clause, an alias, a literal in a parenthesized expression) adds no rows.
            _ => {}
        }
        pending[before..].reverse();
    }
    (sources, row_functions)
}

/// Tables read and functions called anywhere under `node`.
pub(super) fn of(node: &SyntaxNode, scope: &Scope) -> Query {
    let mut query = Query::default();
    let mut walk = node.preorder();
    while let Some(event) = walk.next() {
        let WalkEvent::Enter(node_here) = event else {
            continue;
        };
        match node_here.kind() {
            SyntaxKind::RELATION_FROM_ITEM | SyntaxKind::TABLE => {
                let path = node_here
                    .descendants()
                    .find(|n| n.kind() == SyntaxKind::PATH_REF);
                if let Some(name) = path.and_then(|p| path_name(&p))
                    && !scope.is_cte(&name, &node_here)
                    && !query.reads.contains(&name)
                {
                    query.reads.push(name);
                }
            }
            SyntaxKind::CALL_EXPR => {
                if let Some(call) = call_name(&node_here)
                    && !query.calls.contains(&call)
                {
                    query.calls.push(call);
                }
            }
            SyntaxKind::NAME_REF => {
                if let Some(call) = value_function(&node_here)
                    && !query.calls.contains(&call)
                {
                    query.calls.push(call);
                }
            }
            // A CTE's data-modifying statement is a statement of its own.
            kind if is_dml(kind)
                && &node_here != node
                && node_here.parent().map(|p| p.kind()) == Some(SyntaxKind::WITH_TABLE) =>
            {
                walk.skip_subtree();
            }
            _ => {}
        }
    }
    query
}

/// An expression's text, calls and reads.
pub(super) fn expr(expr: &ast::Expr, scope: &Scope) -> Expr {
    let Query { reads, calls, .. } = of(expr.syntax(), scope);
    Expr {
        text: expr.syntax().text().to_string(),
        calls,
        reads,
    }
}

/// The function a call expression calls, lower-cased and unqualified.
fn call_name(call: &SyntaxNode) -> Option<String> {
    let callee = call.first_child()?;
    match callee.kind() {
        SyntaxKind::NAME_REF => Some(normalize_name_node(&callee)),
        SyntaxKind::FIELD_EXPR => callee
            .children()
            .filter(|n| n.kind() == SyntaxKind::NAME_REF)
            .last()
            .map(|n| normalize_name_node(&n)),
        // Predicates spelled like calls, not functions.
        SyntaxKind::EXISTS_FN | SyntaxKind::ANY_FN | SyntaxKind::SOME_FN | SyntaxKind::ALL_FN => {
            None
        }
        // Functions with special syntax (`extract(...)`, `substring(... from ...)`): the keyword
        // is the function's name.
        _ => callee
            .first_token()
            .filter(|t| t.kind().is_keyword())
            .map(|t| t.text().to_ascii_lowercase()),
    }
}

/// `current_timestamp` and friends: functions called without parentheses.
fn value_function(name_ref: &SyntaxNode) -> Option<String> {
    let token = name_ref.first_token()?;
    matches!(
        token.kind(),
        SyntaxKind::CURRENT_TIMESTAMP_KW
            | SyntaxKind::CURRENT_DATE_KW
            | SyntaxKind::CURRENT_TIME_KW
            | SyntaxKind::LOCALTIME_KW
            | SyntaxKind::LOCALTIMESTAMP_KW
    )
    .then(|| token.text().to_ascii_lowercase())
}

/// The name a `PATH` or `PATH_REF` node spells: its last segment, qualified by the one before.
pub(super) fn path_name(path: &SyntaxNode) -> Option<Name> {
    let name = segment(path)?;
    let schema = path
        .children()
        .find(|n| n.kind() == SyntaxKind::PATH_REF)
        .and_then(|qualifier| segment(&qualifier));
    Some(Name { schema, name })
}

fn segment(path: &SyntaxNode) -> Option<String> {
    let segment = path.children().find(|n| {
        matches!(
            n.kind(),
            SyntaxKind::PATH_SEGMENT | SyntaxKind::PATH_SEGMENT_REF
        )
    })?;
    let name = normalize_name_node(&segment);
    (!name.is_empty()).then_some(name)
}

/// A dotted name as one string (`app.setting`, `pg_catalog.int4`).
pub(super) fn dotted(path: &SyntaxNode) -> Option<String> {
    path_name(path).map(|name| name.to_string())
}

/// Whether a `WHERE` expression is only `column = constant` / `column IN (constants)` joined by
/// `AND`.
pub(super) fn is_point_lookup(expr: &ast::Expr) -> bool {
    let mut pending = vec![expr.clone()];
    while let Some(expr) = pending.pop() {
        match expr {
            ast::Expr::ParenExpr(paren) => match paren.expr() {
                Some(inner) if paren.select().is_none() => pending.push(inner),
                _ => return false,
            },
            ast::Expr::BinExpr(bin) => {
                let (Some(lhs), Some(rhs), Some(op)) = (bin.lhs(), bin.rhs(), bin.op()) else {
                    return false;
                };
                match op {
                    BinOp::And(_) => {
                        pending.push(rhs);
                        pending.push(lhs);
                    }
                    BinOp::Eq(_) => {
                        let matches = (is_column(&lhs) && is_constant(&rhs))
                            || (is_constant(&lhs) && is_column(&rhs));
                        if !matches {
                            return false;
                        }
                    }
                    BinOp::In(_) => {
                        let constants = match &rhs {
                            ast::Expr::TupleExpr(tuple) => tuple.exprs().all(|e| is_constant(&e)),
                            ast::Expr::ParenExpr(_) => is_constant(&rhs),
                            _ => false,
                        };
                        if !(is_column(&lhs) && constants) {
                            return false;
                        }
                    }
                    _ => return false,
                }
            }
            _ => return false,
        }
    }
    true
}

fn is_column(expr: &ast::Expr) -> bool {
    match expr {
        ast::Expr::NameRef(name) => value_function(name.syntax()).is_none(),
        ast::Expr::FieldExpr(_) => true,
        _ => false,
    }
}

/// A literal, possibly cast, signed or parenthesized (`'a'::uuid`, `-1`, `(2)`).
fn is_constant(expr: &ast::Expr) -> bool {
    let mut expr = expr.clone();
    loop {
        expr = match expr {
            ast::Expr::Literal(literal) => {
                return !literal
                    .syntax()
                    .children_with_tokens()
                    .any(|t| t.kind() == SyntaxKind::DEFAULT_KW);
            }
            ast::Expr::CastExpr(cast) => {
                if let Some(inner) = cast.expr() {
                    inner
                } else {
                    return cast.literal().is_some();
                }
            }
            ast::Expr::PrefixExpr(prefix) => match prefix.expr() {
                Some(inner) => inner,
                None => return false,
            },
            ast::Expr::ParenExpr(paren) => match paren.expr() {
                Some(inner) => inner,
                None => return false,
            },
            // A value put in by `format()` or `||` at run time.
            ast::Expr::NameRef(name) => return name.text() == STAND_IN,
            _ => return false,
        }
    }
}
