//! Walking sqlparser's query and expression trees for what the neutral view keeps: the tables a
//! statement reads, the functions it calls, and data-modifying statements hidden in `WITH`.
//!
//! CTE names are in scope for the query that defines them (and, with `WITH RECURSIVE`, for their
//! own bodies), so a reference to one is not a table read.
//!
//! The walk also tells which reads are *sources* (see [`sql::Query::sources`]): it carries a flag
//! that is set on entering a query whose rows a statement stores and cleared for the parts of a
//! query that do not produce rows (select list, `WHERE`, `ON`, ...); subqueries inherit it. A
//! CTE's sources are worked out where it is defined and kept with its name, for the references. The parser builds some chains by
//! looping, as deep as the input is long (`a + b + ...`, `x ISNULL ISNULL ...`, `.. UNION ..`):
//! expressions are walked with a work list and set operations with a loop, so only subqueries
//! recurse, as deep as the parser's recursion limit lets them nest.

use std::collections::HashSet;

use sqlparser::ast::{
    AccessExpr, Assignment, Cte, Expr, FromTable, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, Join, JoinConstraint, JoinOperator,
    LimitClause, ObjectName, ObjectNamePart, OnConflictAction, OnInsert, OrderByExpr, OrderByKind,
    Query, Select, SelectItem, SetExpr, Statement as Ast, Subscript, TableFactor, TableWithJoins,
    WindowType,
};

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

use super::convert;
use super::lex::Tok;
use super::names::{ident, object_name};
use crate::sql::{self, Name, Span, StmtKind};

/// What the walk found: reads, sources and calls deduplicated in first-seen order.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub reads: Vec<Name>,
    pub calls: Vec<String>,
    sources: Names,
    seen_reads: HashSet<Name>,
    seen_calls: HashSet<String>,
}

/// Names deduplicated in first-seen order.
#[derive(Debug, Default, Clone)]
struct Names {
    list: Vec<Name>,
    seen: HashSet<Name>,
    /// The CTEs (by [`CteScope::id`]) whose sources were added already: a CTE referenced many
    /// times costs its sources once, not once per reference.
    merged: HashSet<usize>,
}

impl Names {
    fn add(&mut self, name: &Name) {
        if !self.seen.contains(name) {
            self.seen.insert(name.clone());
            self.list.push(name.clone());
        }
    }
}

impl Found {
    fn read(&mut self, name: Name) {
        if self.seen_reads.insert(name.clone()) {
            self.reads.push(name);
        }
    }

    fn call(&mut self, name: String) {
        if self.seen_calls.insert(name.clone()) {
            self.calls.push(name);
        }
    }

    pub fn into_query(self) -> sql::Query {
        sql::Query {
            reads: self.reads,
            sources: self.sources.list,
            calls: self.calls,
            // SQLite has no user-defined functions in SQL, and its table-valued functions
            // (`json_each`) are followed through `sources`.
            row_functions: Vec::new(),
        }
    }
}

/// A data-modifying statement found in a `WITH` clause, listed after its container.
#[derive(Debug)]
pub(super) struct Nested {
    pub span: Span,
    pub kind: StmtKind,
}

/// Where the statement being walked is in the file, to give nested statements their spans and
/// filters their text.
pub(super) struct Source<'a> {
    pub text: &'a str,
    /// The statement's significant tokens, in order.
    pub toks: Vec<&'a Tok>,
    /// The statement's own span: the fallback for a nested statement whose position is unknown.
    pub span: Span,
}

impl Source<'_> {
    /// The index of the first token that starts at or after `byte`.
    fn index_at(&self, byte: usize) -> usize {
        self.toks.partition_point(|t| t.start < byte)
    }

    /// The span from the token at `start` to the end of the last token before `close`.
    fn span_between(&self, start: Option<usize>, close: Option<usize>) -> Span {
        let end = close
            .map(|c| self.index_at(c))
            .and_then(|i| i.checked_sub(1))
            .map(|i| self.toks[i].end);
        match (start, end) {
            (Some(s), Some(e)) if s < e && self.span.start <= s && e <= self.span.end => s..e,
            _ => self.span.clone(),
        }
    }

    /// The text of the `WHERE` clause of the UPDATE or DELETE whose keyword starts at `dml`:
    /// from after the first `WHERE` outside parentheses to the clause that ends it.
    fn where_text(&self, dml: usize) -> Option<String> {
        let mut depth = 0usize;
        let mut start = None;
        let mut last = None;
        for (i, tok) in self.toks.iter().enumerate().skip(self.index_at(dml)) {
            match (&tok.token, tok.keyword()) {
                (Token::LParen, _) => depth += 1,
                (Token::RParen, _) if depth == 0 => break, // the end of a CTE body
                (Token::RParen, _) => depth -= 1,
                (_, Some(Keyword::WHERE)) if depth == 0 && start.is_none() => {
                    start = Some(i + 1);
                    continue;
                }
                (_, Some(Keyword::RETURNING | Keyword::ORDER | Keyword::LIMIT))
                    if depth == 0 && start.is_some() =>
                {
                    break;
                }
                _ => {}
            }
            if start.is_some() {
                last = Some(i);
            }
        }
        let (first, last) = (self.toks.get(start?)?, self.toks.get(last?)?);
        self.text.get(first.start..last.end).map(str::to_string)
    }
}

pub(super) struct Walker<'s, 'a> {
    pub found: Found,
    /// CTEs in scope, innermost last.
    ctes: Vec<CteScope>,
    /// Whether the tables read now are sources of the rows being stored.
    in_source: bool,
    pub nested: Vec<Nested>,
    source: &'s Source<'a>,
}

impl<'s, 'a> Walker<'s, 'a> {
    pub fn new(source: &'s Source<'a>) -> Self {
        Walker {
            found: Found::default(),
            ctes: Vec::new(),
            in_source: false,
            nested: Vec::new(),
            source,
        }
    }

    /// A walker for a statement inside this one: same CTE scope, its own findings.
    pub fn child(&self) -> Walker<'s, 'a> {
        Walker {
            found: Found::default(),
            ctes: self.ctes.clone(),
            in_source: false,
            nested: Vec::new(),
            source: self.source,
        }
    }

    pub fn take_found(&mut self) -> Found {
        std::mem::take(&mut self.found)
    }

    /// The `WHERE` text of `stmt` (an UPDATE or DELETE) as written.
    pub fn filter_text(&self, stmt: &Ast) -> Option<String> {
        self.source.where_text(dml_start(stmt)?)
    }

    /// Brings a `WITH` clause into scope and walks its CTE bodies; returns how many names to pop
    /// with [`Walker::leave_with`].
    pub fn enter_with(&mut self, with: Option<&sqlparser::ast::With>) -> usize {
        let Some(with) = with else { return 0 };
        let before = self.ctes.len();
        for cte in &with.cte_tables {
            let name = ident(&cte.alias.name);
            // A CTE sees the ones before it; a recursive one also sees itself (with the sources
            // known so far: its recursive part adds no table its other parts do not).
            if with.recursive {
                self.ctes.push(CteScope {
                    id: cte_id(cte),
                    name,
                    sources: Names::default(),
                });
                let sources = self.cte(cte);
                if let Some(last) = self.ctes.last_mut() {
                    last.sources = sources;
                }
            } else {
                let sources = self.cte(cte);
                self.ctes.push(CteScope {
                    id: cte_id(cte),
                    name,
                    sources,
                });
            }
        }
        self.ctes.len() - before
    }

    /// Walks `q` as the query whose rows a statement stores: its reads are recorded as usual, and
    /// those its rows come from as sources too.
    pub fn source_query(&mut self, q: &Query) {
        self.sourcing(true, |w| w.query(q));
    }

    /// Walks `tf` (a MERGE's `USING` item) as the rows a statement stores.
    pub fn source_table_factor(&mut self, tf: &TableFactor) {
        self.sourcing(true, |w| w.table_factor(tf));
    }

    /// Runs `f` with the source flag set to `on`, then restores it.
    fn sourcing(&mut self, on: bool, f: impl FnOnce(&mut Self)) {
        let outer = std::mem::replace(&mut self.in_source, on);
        f(self);
        self.in_source = outer;
    }

    pub fn leave_with(&mut self, count: usize) {
        let keep = self.ctes.len().saturating_sub(count);
        self.ctes.truncate(keep);
    }

    /// Walks a CTE's body and returns its sources (none for a data-modifying one: it is listed as
    /// a statement of its own, like its reads).
    fn cte(&mut self, cte: &Cte) -> Names {
        match dml_body(&cte.query) {
            Some(stmt) => {
                // The CTE's own WITH (rare) scopes over the statement.
                let mut child = self.child();
                let pushed = child.enter_with(cte.query.with.as_ref());
                let start = dml_start(stmt);
                let close = location_byte(cte.closing_paren_token.0.span.start);
                let span = self.source.span_between(start, close);
                let kind = convert::dml(stmt, &mut child);
                child.leave_with(pushed);
                self.nested.push(Nested { span, kind });
                self.nested.append(&mut child.nested);
                Names::default()
            }
            None => {
                // Worked out whether or not this query's own rows are sources: a reference to the
                // CTE decides.
                let outer = std::mem::take(&mut self.found.sources);
                self.sourcing(true, |w| w.query(&cte.query));
                std::mem::replace(&mut self.found.sources, outer)
            }
        }
    }

    pub fn query(&mut self, q: &Query) {
        let pushed = self.enter_with(q.with.as_ref());
        self.set_expr(&q.body);
        let outer = std::mem::replace(&mut self.in_source, false);
        if let Some(order_by) = &q.order_by
            && let OrderByKind::Expressions(exprs) = &order_by.kind
        {
            self.order_by(exprs);
        }
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                self.opt_expr(limit.as_ref());
                if let Some(offset) = offset {
                    self.expr(&offset.value);
                }
                self.exprs(limit_by);
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset);
                self.expr(limit);
            }
            None => {}
        }
        self.in_source = outer;
        self.leave_with(pushed);
    }

    pub fn set_expr(&mut self, body: &SetExpr) {
        // `a UNION b UNION c ...` nests to the left, as deep as the chain is long: walk down the
        // left side in a loop, then the operands in source order.
        let mut rights = Vec::new();
        let mut leftmost = body;
        while let SetExpr::SetOperation { left, right, .. } = leftmost {
            rights.push(right.as_ref());
            leftmost = left;
        }
        self.set_operand(leftmost);
        for right in rights.into_iter().rev() {
            self.set_expr(right);
        }
    }

    fn set_operand(&mut self, body: &SetExpr) {
        match body {
            SetExpr::SetOperation { .. } => self.set_expr(body),
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(q) => self.query(q),
            // Constant rows: a subquery in one gives one value, not rows.
            SetExpr::Values(values) => self.sourcing(false, |w| {
                for row in &values.rows {
                    w.exprs(row);
                }
            }),
            SetExpr::Insert(stmt)
            | SetExpr::Update(stmt)
            | SetExpr::Delete(stmt)
            | SetExpr::Merge(stmt) => {
                // A data-modifying statement used as a query outside `WITH` (the parser allows
                // it in a subquery): listed like one in `WITH`, at a position only as exact as
                // its container.
                let mut child = self.child();
                let span = self.source.span_between(dml_start(stmt), None);
                let kind = convert::dml(stmt, &mut child);
                self.nested.push(Nested { span, kind });
                self.nested.append(&mut child.nested);
            }
            SetExpr::Table(table) => {
                if let Some(name) = &table.table_name {
                    let name = Name {
                        schema: table.schema_name.as_deref().map(str::to_ascii_lowercase),
                        name: name.to_ascii_lowercase(),
                    };
                    self.read(name);
                }
            }
        }
    }

    fn select(&mut self, s: &Select) {
        // The rows come from the FROM list; the rest only reads (a scalar subquery in the select
        // list gives one value per row).
        let outer = std::mem::replace(&mut self.in_source, false);
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => self.expr(e),
                SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => {}
            }
        }
        self.in_source = outer;
        self.from(&s.from);
        self.in_source = false;
        self.opt_expr(s.prewhere.as_ref());
        self.opt_expr(s.selection.as_ref());
        match &s.group_by {
            GroupByExpr::All(_) => {}
            GroupByExpr::Expressions(exprs, _) => self.exprs(exprs),
        }
        self.exprs(&s.cluster_by);
        self.exprs(&s.distribute_by);
        self.order_by(&s.sort_by);
        self.opt_expr(s.having.as_ref());
        self.opt_expr(s.qualify.as_ref());
        self.in_source = outer;
    }

    pub fn from(&mut self, from: &[TableWithJoins]) {
        for twj in from {
            self.table_with_joins(twj);
        }
    }

    pub fn table_with_joins(&mut self, twj: &TableWithJoins) {
        self.table_factor(&twj.relation);
        for join in &twj.joins {
            self.join(join);
        }
    }

    pub fn join(&mut self, join: &Join) {
        self.table_factor(&join.relation);
        let constraint = match &join.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::StraightJoin(c) => Some(c),
            JoinOperator::AsOf {
                match_condition,
                constraint,
            } => {
                self.sourcing(false, |w| w.expr(match_condition));
                Some(constraint)
            }
            JoinOperator::CrossApply
            | JoinOperator::OuterApply
            | JoinOperator::ArrayJoin
            | JoinOperator::LeftArrayJoin
            | JoinOperator::InnerArrayJoin => None,
        };
        if let Some(JoinConstraint::On(e)) = constraint {
            self.sourcing(false, |w| w.expr(e));
        }
    }

    pub fn table_factor(&mut self, tf: &TableFactor) {
        match tf {
            TableFactor::Table { name, args, .. } => match args {
                // `FROM json_each(x)`: a table-valued function, not a table.
                Some(args) => {
                    self.call_name(name);
                    self.args(&args.args);
                }
                None => self.read_object(name),
            },
            TableFactor::Derived { subquery, .. } => self.query(subquery),
            TableFactor::TableFunction { expr, .. } => self.expr(expr),
            TableFactor::Function { name, args, .. } => {
                self.call_name(name);
                self.args(args);
            }
            TableFactor::UNNEST { array_exprs, .. } => self.exprs(array_exprs),
            TableFactor::JsonTable { json_expr, .. } => self.expr(json_expr),
            TableFactor::OpenJsonTable { json_expr, .. } => self.expr(json_expr),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            TableFactor::Pivot { table, .. }
            | TableFactor::Unpivot { table, .. }
            | TableFactor::MatchRecognize { table, .. } => self.table_factor(table),
            TableFactor::UnpivotExpr { expression, .. } => self.expr(expression),
            TableFactor::XmlTable { row_expression, .. } => self.expr(row_expression),
            TableFactor::SemanticView { name, .. } => self.read_object(name),
        }
    }

    /// Records a table read, unless the name is a CTE in scope.
    pub fn read_object(&mut self, name: &ObjectName) {
        self.read(object_name(name));
    }

    fn read(&mut self, name: Name) {
        let cte = match name.schema {
            None => self.ctes.iter().rev().find(|cte| cte.name == name.name),
            Some(_) => None,
        };
        match cte {
            Some(cte) if self.in_source => {
                if self.found.sources.merged.insert(cte.id) {
                    for source in &cte.sources.list {
                        self.found.sources.add(source);
                    }
                }
            }
            Some(_) => {}
            None => {
                if self.in_source {
                    self.found.sources.add(&name);
                }
                self.found.read(name);
            }
        }
    }

    fn call_name(&mut self, name: &ObjectName) {
        if let Some(ObjectNamePart::Identifier(last)) = name.0.last() {
            self.found.call(last.value.to_lowercase());
        }
    }

    pub fn assignments(&mut self, assignments: &[Assignment]) {
        for a in assignments {
            self.expr(&a.value);
        }
    }

    pub fn on_insert(&mut self, on: Option<&OnInsert>) {
        match on {
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => self.assignments(assignments),
            Some(OnInsert::OnConflict(c)) => {
                if let OnConflictAction::DoUpdate(update) = &c.action {
                    self.assignments(&update.assignments);
                    self.opt_expr(update.selection.as_ref());
                }
            }
            Some(_) | None => {}
        }
    }

    pub fn returning(&mut self, items: Option<&Vec<SelectItem>>) {
        for item in items.into_iter().flatten() {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                self.expr(e);
            }
        }
    }

    pub fn order_by(&mut self, exprs: &[OrderByExpr]) {
        for o in exprs {
            self.expr(&o.expr);
        }
    }

    pub fn exprs(&mut self, exprs: &[Expr]) {
        for e in exprs {
            self.expr(e);
        }
    }

    pub fn opt_expr(&mut self, e: Option<&Expr>) {
        if let Some(e) = e {
            self.expr(e);
        }
    }

    pub fn expr(&mut self, e: &Expr) {
        self.walk(vec![Item::Expr(e)]);
    }

    /// Walks expressions with a work list rather than recursion: the parser builds chains
    /// (`a + b + ...`, `x ISNULL ISNULL ...`) as deep as the input is long. Subqueries recurse,
    /// which the parser's recursion limit bounds.
    fn walk(&mut self, items: Vec<Item<'_>>) {
        let mut stack: Vec<Item<'_>> = items.into_iter().rev().collect();
        let mut kids = Kids(Vec::new());
        while let Some(item) = stack.pop() {
            match item {
                Item::Query(q) => self.query(q),
                Item::Expr(e) => {
                    self.expr_node(e, &mut kids);
                    stack.extend(kids.0.drain(..).rev());
                }
            }
        }
    }

    /// Records what `e` itself says (a call) and lists its children in source order.
    fn expr_node<'e>(&mut self, e: &'e Expr, k: &mut Kids<'e>) {
        match e {
            Expr::BinaryOp { left, right, .. } => {
                k.expr(left);
                k.expr(right);
            }
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::TypedString(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..)
            | Expr::MatchAgainst { .. } => {}
            Expr::CompoundFieldAccess { root, access_chain } => {
                k.expr(root);
                for access in access_chain {
                    match access {
                        AccessExpr::Dot(e) => k.expr(e),
                        AccessExpr::Subscript(Subscript::Index { index }) => k.expr(index),
                        AccessExpr::Subscript(Subscript::Slice {
                            lower_bound,
                            upper_bound,
                            stride,
                        }) => {
                            k.opt_expr(lower_bound.as_ref());
                            k.opt_expr(upper_bound.as_ref());
                            k.opt_expr(stride.as_ref());
                        }
                    }
                }
            }
            Expr::JsonAccess { value, .. } => k.expr(value),
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x)
            | Expr::OuterJoin(x)
            | Expr::Prior(x) => k.expr(x),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                k.expr(a);
                k.expr(b);
            }
            Expr::IsJson { expr, .. } | Expr::IsNormalized { expr, .. } => k.expr(expr),
            Expr::InList { expr, list, .. } => {
                k.expr(expr);
                k.exprs(list);
            }
            Expr::InSubquery { expr, subquery, .. } => {
                k.expr(expr);
                k.query(subquery);
            }
            Expr::InUnnest {
                expr, array_expr, ..
            } => {
                k.expr(expr);
                k.expr(array_expr);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                k.expr(expr);
                k.expr(low);
                k.expr(high);
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                k.expr(expr);
                k.expr(pattern);
                k.opt_box(escape_char);
            }
            Expr::RLike { expr, pattern, .. } => {
                k.expr(expr);
                k.expr(pattern);
            }
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                k.expr(left);
                k.expr(right);
            }
            Expr::UnaryOp { expr, .. } => k.expr(expr),
            Expr::Convert { expr, styles, .. } => {
                k.expr(expr);
                k.exprs(styles);
            }
            Expr::Cast { expr, .. } => k.expr(expr),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                k.expr(timestamp);
                k.expr(time_zone);
            }
            Expr::Extract { expr, .. } | Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => {
                k.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                k.expr(expr);
                k.expr(r#in);
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.found.call("substring".to_string());
                k.expr(expr);
                k.opt_box(substring_from);
                k.opt_box(substring_for);
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.found.call("trim".to_string());
                k.expr(expr);
                k.opt_box(trim_what);
                if let Some(chars) = trim_characters {
                    k.exprs(chars);
                }
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                k.expr(expr);
                k.expr(overlay_what);
                k.expr(overlay_from);
                k.opt_box(overlay_for);
            }
            Expr::Collate { expr, .. } => k.expr(expr),
            Expr::Prefixed { value, .. } => k.expr(value),
            Expr::Function(f) => self.function(f, k),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                k.opt_box(operand);
                for when in conditions {
                    k.expr(&when.condition);
                    k.expr(&when.result);
                }
                k.opt_box(else_result);
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => k.query(subquery),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                for set in sets {
                    k.exprs(set);
                }
            }
            Expr::Tuple(items) => k.exprs(items),
            Expr::Struct { values, .. } => k.exprs(values),
            Expr::Named { expr, .. } => k.expr(expr),
            Expr::Dictionary(fields) => {
                for field in fields {
                    k.expr(&field.value);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    k.expr(&entry.key);
                    k.expr(&entry.value);
                }
            }
            Expr::Array(array) => k.exprs(&array.elem),
            Expr::Interval(interval) => k.expr(&interval.value),
            Expr::Lambda(lambda) => k.expr(&lambda.body),
            Expr::MemberOf(member) => {
                k.expr(&member.value);
                k.expr(&member.array);
            }
        }
    }

    fn function<'e>(&mut self, f: &'e Function, k: &mut Kids<'e>) {
        self.call_name(&f.name);
        for args in [&f.parameters, &f.args] {
            match args {
                FunctionArguments::None => {}
                FunctionArguments::Subquery(q) => k.query(q),
                FunctionArguments::List(list) => {
                    Self::function_args(&list.args, k);
                    for clause in &list.clauses {
                        match clause {
                            FunctionArgumentClause::Where(e) | FunctionArgumentClause::Limit(e) => {
                                k.expr(e)
                            }
                            FunctionArgumentClause::OrderBy(exprs) => k.order_by(exprs),
                            _ => {}
                        }
                    }
                }
            }
        }
        k.order_by(&f.within_group);
        k.opt_box(&f.filter);
        if let Some(WindowType::WindowSpec(spec)) = &f.over {
            k.exprs(&spec.partition_by);
            k.order_by(&spec.order_by);
        }
    }

    fn function_args<'e>(args: &'e [FunctionArg], k: &mut Kids<'e>) {
        for arg in args {
            let value = match arg {
                FunctionArg::Named { arg, .. } | FunctionArg::Unnamed(arg) => arg,
                FunctionArg::ExprNamed { name, arg, .. } => {
                    k.expr(name);
                    arg
                }
            };
            if let FunctionArgExpr::Expr(e) = value {
                k.expr(e);
            }
        }
    }

    fn args(&mut self, args: &[FunctionArg]) {
        let mut kids = Kids(Vec::new());
        Self::function_args(args, &mut kids);
        self.walk(kids.0);
    }

    /// Tables in a `DELETE`'s `FROM` list after the first (the target), and its `USING`.
    pub fn delete_sources(&mut self, from: &FromTable, using: Option<&Vec<TableWithJoins>>) {
        let tables = match from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        if let Some((first, rest)) = tables.split_first() {
            for join in &first.joins {
                self.join(join);
            }
            self.from(rest);
        }
        if let Some(using) = using {
            self.from(using);
        }
    }
}

/// A CTE in scope: its name, and the tables its rows come from.
#[derive(Clone)]
struct CteScope {
    /// Which CTE of the tree this is: its node's address, unique while the tree is walked.
    id: usize,
    name: String,
    sources: Names,
}

fn cte_id(cte: &Cte) -> usize {
    std::ptr::from_ref(cte).addr()
}

/// Work for [`Walker::walk`].
enum Item<'e> {
    Expr(&'e Expr),
    Query(&'e Query),
}

/// The children of one node, in source order.
struct Kids<'e>(Vec<Item<'e>>);

impl<'e> Kids<'e> {
    fn expr(&mut self, e: &'e Expr) {
        self.0.push(Item::Expr(e));
    }

    fn exprs(&mut self, es: &'e [Expr]) {
        self.0.extend(es.iter().map(Item::Expr));
    }

    fn opt_expr(&mut self, e: Option<&'e Expr>) {
        self.0.extend(e.map(Item::Expr));
    }

    fn opt_box(&mut self, e: &'e Option<Box<Expr>>) {
        self.0.extend(e.as_deref().map(Item::Expr));
    }

    fn query(&mut self, q: &'e Query) {
        self.0.push(Item::Query(q));
    }

    fn order_by(&mut self, exprs: &'e [OrderByExpr]) {
        self.0.extend(exprs.iter().map(|o| Item::Expr(&o.expr)));
    }
}

/// The statement a CTE body is, when it is a data-modifying one.
fn dml_body(q: &Query) -> Option<&Ast> {
    match q.body.as_ref() {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => Some(s),
        _ => None,
    }
}

fn dml_start(stmt: &Ast) -> Option<usize> {
    let token = match stmt {
        Ast::Insert(i) => &i.insert_token.0,
        Ast::Update(u) => &u.update_token.0,
        Ast::Delete(d) => &d.delete_token.0,
        Ast::Merge(m) => &m.merge_token.0,
        _ => return None,
    };
    location_byte(token.span.start)
}

/// The byte offset a token location stands for: the parent module hands the parser tokens whose
/// locations are `line 1, column byte + 1` (see `super::compat::parser_tokens`).
pub(super) fn location_byte(loc: sqlparser::tokenizer::Location) -> Option<usize> {
    (loc.line == 1 && loc.column >= 1).then(|| (loc.column - 1) as usize)
}
