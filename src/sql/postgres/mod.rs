//! PostgreSQL front end: squawk-syntax (PostgreSQL's grammar, exact ranges, error recovery,
//! PL/pgSQL bodies) to the neutral view of [`crate::sql`].
//!
//! The file is parsed once; each top-level statement is mapped to a [`StmtKind`], then the
//! statements it contains are listed right after it:
//! - data-modifying statements in `WITH` clauses ([`Origin::Cte`] at top level);
//! - the body of a `DO` block ([`Origin::DoBlock`]), walked at any depth (blocks, `IF`, loops,
//!   exception handlers, `FOR ... IN query LOOP`, cursors), with spans mapped back into the file
//!   through the body's string literal (escapes included);
//! - SQL text run by `EXECUTE` in a `DO` block ([`Origin::DoExecute`]), read from a string
//!   literal, from `format('...')` or from a `||` chain of literals, with every run-time value
//!   replaced by [`STAND_IN`]; its statements all carry the `EXECUTE` statement's span.
//!
//! Inside a `DO` block every nested statement (a CTE's DML included) carries the block's origin:
//! what matters to a rule is that it runs when the migration runs, from procedural code.
//!
//! `CREATE FUNCTION` / `PROCEDURE` bodies run later, so their statements are not listed among the
//! file's: they are mapped the same way (file spans, the `CREATE` as anchor) into the routine's
//! `body`, for rules that follow a call of the routine.
//!
//! Where squawk had to recover from a syntax error, the region (from the statement the error is
//! in to the next `;`) is recorded in `ParsedFile::recovered`: what was listed there is a guess.
//!
//! squawk's PL/pgSQL grammar does not know `SELECT ... INTO var` and `... RETURNING ... INTO var`
//! (PostgreSQL's PL/pgSQL strips the `INTO` clause before handing the statement to the SQL
//! parser). Such a statement comes back as an error node; it is recovered the same way
//! PostgreSQL does it, from its tokens: the `INTO` target is blanked out and the rest is parsed
//! again as SQL. Errors in a `DO` body never become syntax issues (PostgreSQL only checks the body
//! when the block runs, and a false alarm would block a valid migration); they only clear
//! `body_parsed`.
//!
//! Nothing here recurses once per level of the SQL's nesting: trees are walked with iterators.
//! The only recursion is `DO` inside `DO` / `EXECUTE`, bounded by [`MAX_BODY_DEPTH`].

mod ddl;
mod plpgsql;
mod query;
#[cfg(test)]
mod tests;
mod validate;

use rowan::{TextRange, TextSize};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::syntax_error::SyntaxError;
use squawk_syntax::{SyntaxElement, SyntaxKind, SyntaxNode, SyntaxToken};

use super::{
    Comment, CopyDirection, Filter, InsertSource, Name, Origin, ParsedFile, ReindexTarget, Span,
    Statement, StmtKind, SyntaxIssue, TransactionControl,
};
use query::Scope;

/// What a run-time value in dynamic SQL (`format`'s `%I`/`%s`/`%L`, a variable in a `||` chain)
/// becomes, so the text can be parsed: a plain identifier that no real schema uses. It may be
/// glued to literal text (`'idx_' || name` is `idx___dynamic__`): a name that contains it was
/// built at run time.
pub const STAND_IN: &str = "__dynamic__";

/// How deep `DO` blocks and `EXECUTE` strings nest before the front end stops reading them. Each
/// level parses its body text again, so without a bound a file of nested `DO` blocks would be
/// parsed a quadratic number of times.
const MAX_BODY_DEPTH: u32 = 8;

/// Parses a PostgreSQL migration. Never panics, whatever the input.
pub fn parse(text: &str) -> ParsedFile {
    let Tree {
        root,
        errors,
        comments,
    } = parse_tree(text);
    let syntax_errors = syntax_issues(&root, &errors, text.len());
    let mut file = ParsedFile {
        recovered: recovered_regions(&root, &syntax_errors, text.len()),
        syntax_errors,
        comments,
        statements: Vec::new(),
    };
    let cx = Cx {
        coords: &Coords::File,
        anchor: None,
        origin: Origin::TopLevel,
        plpgsql: false,
        depth: 0,
    };
    for node in root.children() {
        emit(&node, &cx, &mut file.statements);
    }
    file
}

/// A file's tree, its syntax errors sorted by position, and its comments in order.
struct Tree {
    root: SyntaxNode,
    errors: Vec<SyntaxError>,
    comments: Vec<Comment>,
}

/// Builds the tree as squawk-syntax's `SourceFile::parse` does (its lexer, parser and tree
/// builder). The errors are the parser's and the lexer's, plus the checks of squawk's validation
/// pass that [`validate`] keeps, without the cost of the pass itself. The comments are picked up
/// as the tokens go into the tree, which is lossless: each token starts where the one before
/// ended.
fn parse_tree(text: &str) -> Tree {
    NODE_CACHE.with_borrow_mut(|(cache, parsed)| {
        // Bounded: a fresh interner now and then, so memory holds the tokens of recent files
        // rather than of every file a long-lived thread has parsed.
        *parsed += 1;
        if *parsed > NODE_CACHE_FILES {
            *cache = rowan::NodeCache::default();
            *parsed = 1;
        }
        parse_tree_with(text, cache)
    })
}

/// Files a thread parses with one [`NODE_CACHE`] before starting a fresh one.
const NODE_CACHE_FILES: usize = 256;

thread_local! {
    /// The tree builder's interner of tokens and small nodes, kept across the files a thread
    /// parses: most tokens of a migration (keywords, punctuation, whitespace, common names) were
    /// seen in an earlier file, so its tree shares them instead of allocating each again.
    static NODE_CACHE: std::cell::RefCell<(rowan::NodeCache, usize)> =
        std::cell::RefCell::new((rowan::NodeCache::default(), 0));
}

fn parse_tree_with(text: &str, cache: &mut rowan::NodeCache) -> Tree {
    let lexed = squawk_parser::LexedStr::new(text);
    let output = squawk_parser::EntryPoint::SourceFile.parse(&lexed.to_input());
    let mut builder = rowan::GreenNodeBuilder::with_cache(cache);
    let mut errors = Vec::new();
    let mut comments = Vec::new();
    let mut offset = 0;
    let raw = |kind: SyntaxKind| rowan::SyntaxKind(kind.into());
    lexed.intersperse_trivia(&output, &mut |step| match step {
        squawk_parser::StrStep::Token { kind, text } => {
            if kind == SyntaxKind::COMMENT {
                comments.push(comment(offset, text));
            }
            offset += text.len();
            builder.token(raw(kind), text)
        }
        squawk_parser::StrStep::Enter { kind } => builder.start_node(raw(kind)),
        squawk_parser::StrStep::Exit => builder.finish_node(),
        squawk_parser::StrStep::Error { msg, pos } => errors.push(SyntaxError::new_at_offset(
            msg,
            TextSize::try_from(pos).unwrap_or(TextSize::from(u32::MAX)),
        )),
    });
    for (range, message) in lexed.errors() {
        errors.push(SyntaxError::new(
            message,
            TextRange::new(range.start.into(), range.end.into()),
        ));
    }
    let root = SyntaxNode::new_root(builder.finish());
    errors.extend(validate::errors(&root));
    errors.sort_by_key(|error| error.range().start());
    Tree {
        root,
        errors,
        comments,
    }
}

/// How ranges of the tree at hand map to byte ranges of the file.
enum Coords<'a> {
    File,
    /// Ranges in a PL/pgSQL body's decoded text; the body's literal sits in `parent`'s tree.
    Body(&'a squawk_syntax::plpgsql::Plpgsql, &'a Coords<'a>),
    /// Ranges in a `LANGUAGE sql` function's string body, decoded; the literal sits in
    /// `parent`'s tree.
    SqlBody(&'a squawk_syntax::sql_body::SqlBody, &'a Coords<'a>),
    /// Ranges in a text re-parsed on its own, which starts at this offset of `parent`'s tree.
    Shift(TextSize, &'a Coords<'a>),
    /// Text built at run time: every range is this span (the `EXECUTE` statement's).
    Fixed(Span),
}

impl Coords<'_> {
    fn map(&self, range: TextRange) -> Span {
        let mut range = range;
        let mut coords = self;
        loop {
            match coords {
                Coords::File => return to_span(range),
                Coords::Fixed(span) => return span.clone(),
                Coords::Body(body, parent) => {
                    range = body.source_range(range);
                    coords = parent;
                }
                Coords::SqlBody(body, parent) => {
                    range = body.source_range(range);
                    coords = parent;
                }
                Coords::Shift(by, parent) => {
                    range = range.checked_add(*by).unwrap_or(range);
                    coords = parent;
                }
            }
        }
    }
}

/// Where the statements being mapped sit.
#[derive(Clone, Copy)]
struct Cx<'a> {
    coords: &'a Coords<'a>,
    /// The top-level statement's span, once inside one.
    anchor: Option<(usize, usize)>,
    origin: Origin,
    /// Statements of a PL/pgSQL body, where `SELECT ... INTO` assigns variables.
    plpgsql: bool,
    /// How many `DO` bodies / `EXECUTE` strings enclose these statements.
    depth: u32,
}

impl Cx<'_> {
    /// The origin of statements nested in one of these (a CTE's DML, a `DO` body).
    fn nested_origin(&self, inside_do: bool) -> Origin {
        match self.origin {
            Origin::TopLevel | Origin::Cte if inside_do => Origin::DoBlock,
            Origin::TopLevel | Origin::Cte => Origin::Cte,
            other => other,
        }
    }
}

/// Maps one statement node (anything else is ignored) and lists the statements it contains right
/// after it.
fn emit(node: &SyntaxNode, cx: &Cx<'_>, out: &mut Vec<Statement>) {
    let Some(stmt) = ast::Stmt::cast(node.clone()) else {
        return;
    };
    if matches!(stmt, ast::Stmt::EmptyStmt(_)) {
        return;
    }
    let Some(range) = stmt_range(node) else {
        return;
    };
    let span = cx.coords.map(range);
    let anchor = cx.anchor.unwrap_or((span.start, span.end));
    let scope = Scope::of(node, runs_its_ctes(&stmt));
    let stmt_cx = Cx {
        anchor: Some(anchor),
        ..*cx
    };
    let kind = map_stmt(&stmt, node, &stmt_cx, &scope);
    let index = out.len();
    out.push(Statement {
        span,
        anchor: anchor.0..anchor.1,
        origin: cx.origin,
        kind,
    });

    let cte_cx = Cx {
        anchor: Some(anchor),
        origin: cx.nested_origin(false),
        ..*cx
    };
    for dml in &scope.dml {
        let Some(range) = stmt_range(dml) else {
            continue;
        };
        let Some(dml_stmt) = ast::Stmt::cast(dml.clone()) else {
            continue;
        };
        out.push(Statement {
            span: cte_cx.coords.map(range),
            anchor: anchor.0..anchor.1,
            origin: cte_cx.origin,
            kind: map_stmt(&dml_stmt, dml, &cte_cx, &scope),
        });
    }

    if let ast::Stmt::Do(block) = &stmt {
        let body_cx = Cx {
            anchor: Some(anchor),
            origin: cx.nested_origin(true),
            ..*cx
        };
        let parsed = plpgsql::walk_do(block, &body_cx, out);
        if let StmtKind::Do { body_parsed, .. } = &mut out[index].kind {
            *body_parsed = parsed;
        }
    }
}

/// Whether the data-modifying statements in this statement's `WITH` clauses run now (a view, a
/// rule or a prepared statement only stores them).
fn runs_its_ctes(stmt: &ast::Stmt) -> bool {
    use ast::Stmt as S;
    matches!(
        stmt,
        S::Select(_)
            | S::SelectInto(_)
            | S::CompoundSelect(_)
            | S::ParenSelect(_)
            | S::Values(_)
            | S::Table(_)
            | S::Insert(_)
            | S::Update(_)
            | S::Delete(_)
            | S::Merge(_)
            | S::CreateTableAs(_)
            | S::Copy(_)
    )
}

fn map_stmt(stmt: &ast::Stmt, node: &SyntaxNode, cx: &Cx<'_>, scope: &Scope) -> StmtKind {
    use ast::Stmt as S;
    let kind = match stmt {
        S::CreateTable(it) => ddl::create_table(it, scope),
        S::CreateTableAs(it) => ddl::create_table_as(it, scope),
        S::SelectInto(it) if !cx.plpgsql => (|| {
            let table = query::path_name(it.into_clause()?.table_name()?.path()?.syntax())?;
            Some(StmtKind::SelectInto {
                table,
                query: query::with_sources(node, Some(node), scope),
            })
        })(),
        S::Select(_)
        | S::SelectInto(_)
        | S::CompoundSelect(_)
        | S::ParenSelect(_)
        | S::Values(_)
        | S::Table(_) => Some(StmtKind::Select {
            query: query::with_sources(node, Some(node), scope),
        }),
        S::CreateView(it) => (|| {
            Some(StmtKind::CreateView {
                name: query::path_name(it.view()?.path()?.syntax())?,
                materialized: false,
                or_replace: it.or_replace().is_some(),
                query: {
                    let query = it.query()?;
                    query::with_sources(query.syntax(), Some(query.syntax()), scope)
                },
                with_no_data: false,
            })
        })(),
        S::CreateMaterializedView(it) => (|| {
            Some(StmtKind::CreateView {
                name: query::path_name(it.view()?.path()?.syntax())?,
                materialized: true,
                or_replace: false,
                query: {
                    let query = it.query()?;
                    query::with_sources(query.syntax(), Some(query.syntax()), scope)
                },
                with_no_data: matches!(it.data_option(), Some(ast::DataOption::WithNoData(_))),
            })
        })(),
        S::Insert(it) => (|| {
            let table = query::path_name(it.relation_name_ref()?.path_ref()?.syntax())?;
            let source = match it.insert_source() {
                Some(ast::InsertSource::DefaultValues(_)) => InsertSource::DefaultValues,
                Some(ast::InsertSource::SelectVariant(ast::SelectVariant::Values(values))) => {
                    InsertSource::Values {
                        rows: values.row_list().map_or(0, |rows| rows.rows().count()),
                        reads: query::of(node, scope).reads,
                    }
                }
                Some(ast::InsertSource::SelectVariant(rows)) => {
                    InsertSource::Query(query::with_sources(node, Some(rows.syntax()), scope))
                }
                None => InsertSource::Values {
                    rows: 0,
                    reads: Vec::new(),
                },
            };
            Some(StmtKind::Insert {
                table,
                source,
                replace: false,
            })
        })(),
        S::Update(it) => (|| {
            Some(StmtKind::Update {
                table: query::path_name(
                    it.relation_name()?
                        .relation_name_ref()?
                        .path_ref()?
                        .syntax(),
                )?,
                reads: query::of(node, scope).reads,
                filter: it.where_clause_or_current_of().map(|w| filter(&w)),
            })
        })(),
        S::Delete(it) => (|| {
            Some(StmtKind::Delete {
                table: query::path_name(
                    it.relation_name()?
                        .relation_name_ref()?
                        .path_ref()?
                        .syntax(),
                )?,
                reads: query::of(node, scope).reads,
                filter: it.where_clause_or_current_of().map(|w| filter(&w)),
            })
        })(),
        S::Merge(it) => (|| {
            Some(StmtKind::Merge {
                table: query::path_name(
                    it.table_relation_name()?
                        .table_name_ref()?
                        .path_ref()?
                        .syntax(),
                )?,
                source: {
                    let rows = it.using_on_clause().and_then(|u| u.from_list_item());
                    query::with_sources(node, rows.as_ref().map(|r| r.syntax()), scope)
                },
                by_source: it.merge_when_clauses().any(|clause| {
                    matches!(clause, ast::MergeWhenClause::MergeWhenNotMatchedSource(_))
                }),
            })
        })(),
        S::Copy(it) => {
            let table = it
                .copy_table()
                .and_then(|t| t.table_name_ref())
                .and_then(|t| t.path_ref())
                .and_then(|p| query::path_name(p.syntax()));
            let direction = match it.copy_direction() {
                Some(ast::CopyDirection::CopyTo(_)) => CopyDirection::To,
                // A COPY without a direction does not parse; FROM (it writes) is the cautious
                // reading.
                Some(ast::CopyDirection::CopyFrom(_)) | None => CopyDirection::From,
            };
            if table.is_none() && it.copy_query().is_none() {
                None
            } else {
                Some(StmtKind::Copy { table, direction })
            }
        }
        S::AlterTable(it) => ddl::alter_table(it, scope),
        S::DropTable(it) => {
            let tables: Vec<Name> = it
                .table_name_refs()
                .filter_map(|t| query::path_name(t.path_ref()?.syntax()))
                .collect();
            (!tables.is_empty()).then_some(StmtKind::DropTable { tables })
        }
        S::Truncate(it) => {
            let tables: Vec<Name> = it
                .table_list()
                .into_iter()
                .flat_map(|list| list.table_relation_names())
                .filter_map(|t| query::path_name(t.table_name_ref()?.path_ref()?.syntax()))
                .collect();
            (!tables.is_empty()).then_some(StmtKind::Truncate { tables })
        }
        S::CreateIndex(it) => (|| {
            Some(StmtKind::CreateIndex {
                name: it
                    .index()
                    .and_then(|i| i.path())
                    .and_then(|p| query::path_name(p.syntax())),
                table: query::path_name(
                    it.table_relation_name()?
                        .table_name_ref()?
                        .path_ref()?
                        .syntax(),
                )?,
                concurrently: it.concurrently_token().is_some(),
                unique: it.unique_token().is_some(),
            })
        })(),
        S::DropIndex(it) => {
            let names: Vec<Name> = it
                .index_refs()
                .filter_map(|i| query::path_name(i.path_ref()?.syntax()))
                .collect();
            (!names.is_empty()).then(|| StmtKind::DropIndex {
                names,
                concurrently: it.concurrently_token().is_some(),
            })
        }
        S::Reindex(it) => reindex(it),
        S::Begin(_) => Some(StmtKind::Transaction(TransactionControl::Begin)),
        S::Commit(ast::Commit::CommitTransaction(_)) => {
            Some(StmtKind::Transaction(TransactionControl::Commit))
        }
        S::Rollback(ast::Rollback::RollbackTransaction(_)) => {
            Some(StmtKind::Transaction(TransactionControl::Rollback))
        }
        S::Set(it) => set(it),
        S::Do(it) => Some(StmtKind::Do {
            language: it
                .do_language()
                .and_then(|l| l.language_name())
                .map_or_else(|| "plpgsql".to_owned(), |l| l.name),
            // Filled in by `emit` once the body has been walked.
            body_parsed: false,
        }),
        S::CreateFunction(it) => (|| {
            Some(plpgsql::routine(
                query::path_name(it.name()?.path()?.syntax())?,
                false,
                plpgsql::RoutineParts {
                    options: it.option_list(),
                    returns: it.ret_type(),
                    plpgsql: it.plpgsql(),
                    sql: it.sql_body(),
                    body: it.body(),
                },
                cx,
            ))
        })(),
        S::CreateProcedure(it) => (|| {
            Some(plpgsql::routine(
                query::path_name(it.name()?.path()?.syntax())?,
                true,
                plpgsql::RoutineParts {
                    options: it.option_list(),
                    returns: None,
                    plpgsql: it.plpgsql(),
                    sql: it.sql_body(),
                    body: it.body(),
                },
                cx,
            ))
        })(),
        S::CreateTrigger(it) => (|| {
            let name = squawk_syntax::ast::normalize_name_node(it.trigger()?.syntax());
            (!name.is_empty()).then_some(())?;
            Some(StmtKind::CreateTrigger {
                name: Name::new(name),
                table: query::path_name(
                    it.on_relation()?.relation_name_ref()?.path_ref()?.syntax(),
                )?,
            })
        })(),
        S::Call(it) => (|| {
            Some(StmtKind::Call {
                name: query::path_name(it.procedure_name_ref()?.path_ref()?.syntax())?,
            })
        })(),
        _ => None,
    };
    kind.unwrap_or_else(|| StmtKind::Other {
        what: leading_keywords(node),
    })
}

/// `REINDEX [(options)] {INDEX | TABLE | SCHEMA | DATABASE | SYSTEM} [CONCURRENTLY] name`.
fn reindex(it: &ast::Reindex) -> Option<StmtKind> {
    use ast::ReindexTarget as T;
    let (target, keyword) = match it.reindex_target()? {
        T::ReindexTargetIndex(t) => (
            ReindexTarget::Index(query::path_name(t.index_ref()?.path_ref()?.syntax())?),
            t.concurrently_token(),
        ),
        T::ReindexTargetTable(t) => (
            ReindexTarget::Table(query::path_name(t.table_name_ref()?.path_ref()?.syntax())?),
            t.concurrently_token(),
        ),
        T::ReindexTargetSchema(t) => (ReindexTarget::Many("SCHEMA".into()), t.concurrently_token()),
        T::ReindexTargetDatabase(t) => (
            ReindexTarget::Many("DATABASE".into()),
            t.concurrently_token(),
        ),
        T::ReindexTargetSystem(t) => (ReindexTarget::Many("SYSTEM".into()), t.concurrently_token()),
    };
    // `(CONCURRENTLY)` / `(CONCURRENTLY true)` turn it on, `(CONCURRENTLY false | off | 0)` off.
    let option = it
        .reindex_option_list()
        .into_iter()
        .flat_map(|list| list.reindex_options())
        .filter_map(|o| match o {
            ast::ReindexOption::ReindexOptionConcurrently(c) => Some(c),
            _ => None,
        })
        .last()
        .is_some_and(|c| {
            let value = c
                .syntax()
                .children_with_tokens()
                .filter_map(|e| match e {
                    rowan::NodeOrToken::Token(t) if !t.kind().is_trivia() => {
                        Some(t.text().to_ascii_lowercase())
                    }
                    rowan::NodeOrToken::Node(n) => Some(n.text().to_string().to_ascii_lowercase()),
                    _ => None,
                })
                .nth(1);
            !matches!(value.as_deref(), Some("false" | "off" | "0" | "no"))
        });
    Some(StmtKind::Reindex {
        target,
        concurrently: keyword.is_some() || option,
    })
}

/// `SET [LOCAL | SESSION] name {= | TO} value`, plus the `SET TIME ZONE` / `SET SCHEMA` spellings.
fn set(it: &ast::Set) -> Option<StmtKind> {
    let local = matches!(it.set_scope(), Some(ast::SetScope::LocalScope(_)));
    let (name, value) = match it.set_target()? {
        ast::SetTarget::SetConfig(config) => {
            let path = config.config_parameter_ref()?.path_ref()?;
            let name = query::path_name(path.syntax())?.to_string();
            let value = match config.config_assignment()? {
                ast::ConfigAssignment::FromCurrent(_) => "FROM CURRENT".to_owned(),
                ast::ConfigAssignment::ToConfigValue(to) => {
                    if to.default_token().is_some() {
                        "DEFAULT".to_owned()
                    } else {
                        to.config_values()
                            .map(|v| config_value(&v))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                }
            };
            (name, value)
        }
        ast::SetTarget::SetTimeZone(zone) => (
            "timezone".to_owned(),
            zone.config_value()
                .map_or_else(|| zone.syntax().text().to_string(), |v| config_value(&v)),
        ),
        ast::SetTarget::SetSchemaValue(schema) => {
            ("search_path".to_owned(), schema.literal()?.string_value()?)
        }
        _ => return None,
    };
    Some(StmtKind::Set { name, value, local })
}

fn config_value(value: &ast::ConfigValue) -> String {
    match value {
        ast::ConfigValue::Literal(literal) => literal_text(literal),
        ast::ConfigValue::ConfigValueName(name) => {
            squawk_syntax::ast::normalize_name_node(name.syntax())
        }
        ast::ConfigValue::PrefixExpr(expr) => expr.syntax().text().to_string(),
    }
}

/// A literal's value: a string without its quotes (escapes decoded), anything else as written.
fn literal_text(literal: &ast::Literal) -> String {
    let is_string = literal.syntax().children_with_tokens().any(|t| {
        matches!(
            t.kind(),
            SyntaxKind::STRING
                | SyntaxKind::ESC_STRING
                | SyntaxKind::DOLLAR_QUOTED_STRING
                | SyntaxKind::UNICODE_ESC_STRING
                | SyntaxKind::NATIONAL_STRING
        )
    });
    match is_string.then(|| literal.string_value()).flatten() {
        Some(value) => value,
        None => literal.syntax().text().to_string(),
    }
}

fn filter(clause: &ast::WhereClauseOrCurrentOf) -> Filter {
    match clause {
        ast::WhereClauseOrCurrentOf::WhereClause(clause) => match clause.expr() {
            Some(expr) => Filter {
                text: expr.syntax().text().to_string(),
                point_lookup: query::is_point_lookup(&expr),
            },
            None => Filter {
                text: String::new(),
                point_lookup: false,
            },
        },
        // `WHERE CURRENT OF cursor` touches the one row the cursor is on.
        ast::WhereClauseOrCurrentOf::WhereCurrentOf(current) => Filter {
            text: text_after_first_token(current.syntax()),
            point_lookup: true,
        },
    }
}

fn text_after_first_token(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let skip = node.first_token().map_or(0, |t| t.text().len());
    text.get(skip..).unwrap_or_default().trim_start().to_owned()
}

/// The statement's range without leading trivia and without its terminating `;`. `None` for a
/// node with no tokens of its own.
fn stmt_range(node: &SyntaxNode) -> Option<TextRange> {
    let first = tokens(node, Direction::Forward).find(|t| !t.kind().is_trivia())?;
    let mut backward = tokens(node, Direction::Backward).filter(|t| !t.kind().is_trivia());
    let mut last = backward.next()?;
    if last.kind() == SyntaxKind::SEMICOLON {
        last = backward.next()?;
    }
    let start = first.text_range().start();
    let end = last.text_range().end();
    (start < end).then(|| TextRange::new(start, end))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// The tokens under `node`, from either end. rowan's `first_token` / `prev_token` give up at an
/// empty node (error recovery leaves those, e.g. a missing column name), this does not.
fn tokens(node: &SyntaxNode, direction: Direction) -> impl Iterator<Item = SyntaxToken> {
    let step = move |element: &SyntaxElement| match direction {
        Direction::Forward => element.next_sibling_or_token(),
        Direction::Backward => element.prev_sibling_or_token(),
    };
    let child = move |node: &SyntaxNode| match direction {
        Direction::Forward => node.first_child_or_token(),
        Direction::Backward => node.last_child_or_token(),
    };
    let root = node.clone();
    let mut next = child(node);
    std::iter::from_fn(move || {
        loop {
            let element = next.take()?;
            // The element after this one: its first child, else its sibling, else the sibling of
            // the nearest ancestor that has one (without leaving `root`).
            let descend = element.as_node().and_then(child);
            next = descend.or_else(|| {
                let mut at = element.clone();
                loop {
                    if let Some(sibling) = step(&at) {
                        return Some(sibling);
                    }
                    let parent = at.parent()?;
                    if parent == root {
                        return None;
                    }
                    at = rowan::NodeOrToken::Node(parent);
                }
            });
            if let rowan::NodeOrToken::Token(token) = element {
                return Some(token);
            }
        }
    })
}

/// Calls `found` with every node under `root` (`root` excluded) whose kind is in `kinds`, in
/// preorder. The walk reads the green tree (no allocation per node, unlike a cursor walk); a
/// node found, and those of its ancestors not yet reached, get a cursor.
fn for_each_of_kind(root: &SyntaxNode, kinds: &[SyntaxKind], mut found: impl FnMut(&SyntaxNode)) {
    struct Frame<'g> {
        children: rowan::Children<'g>,
        /// The node's cursor, once made.
        node: Option<SyntaxNode>,
        /// Its place among its parent's child nodes (tokens not counted).
        index: usize,
        /// How many of its child nodes the walk has passed.
        seen: usize,
        /// The last child node given a cursor, and its place: the next one is reached from it,
        /// so a node with many children found (a file's statements) costs each step once.
        last: Option<(usize, SyntaxNode)>,
    }
    let green = root.green();
    let mut stack = vec![Frame {
        children: green.children(),
        node: Some(root.clone()),
        index: 0,
        seen: 0,
        last: None,
    }];
    loop {
        let Some(top) = stack.last_mut() else {
            return;
        };
        let Some(child) = top.children.next() else {
            stack.pop();
            continue;
        };
        let rowan::NodeOrToken::Node(child) = child else {
            continue;
        };
        let index = top.seen;
        top.seen += 1;
        stack.push(Frame {
            children: child.children(),
            node: None,
            index,
            seen: 0,
            last: None,
        });
        if kinds.contains(&SyntaxKind::from(child.kind().0)) {
            let made = stack
                .iter()
                .rposition(|frame| frame.node.is_some())
                .unwrap_or(0);
            for at in made + 1..stack.len() {
                let index = stack[at].index;
                let parent = &mut stack[at - 1];
                let (mut place, mut node) = match parent.last.take() {
                    Some((place, node)) if place <= index => (place, Some(node)),
                    _ => (0, parent.node.as_ref().and_then(|p| p.first_child())),
                };
                while place < index {
                    node = node.and_then(|n| n.next_sibling());
                    place += 1;
                }
                parent.last = node.clone().map(|n| (index, n));
                stack[at].node = node;
            }
            if let Some(node) = &stack[stack.len() - 1].node {
                found(node);
            }
        }
    }
}

/// The statement's leading keywords in upper case (`CREATE TYPE`, `GRANT`), to describe a
/// statement the view does not model.
fn leading_keywords(node: &SyntaxNode) -> String {
    let mut words: Vec<String> = Vec::new();
    for element in node.children_with_tokens() {
        if words.len() == 4 {
            break;
        }
        match element {
            rowan::NodeOrToken::Token(token) if token.kind().is_trivia() => continue,
            rowan::NodeOrToken::Token(token) if token.kind().is_keyword() => {
                words.push(token.text().to_ascii_uppercase())
            }
            // `CREATE OR REPLACE RULE`: the kind of object comes after the node.
            rowan::NodeOrToken::Node(child) if child.kind() == SyntaxKind::OR_REPLACE => continue,
            _ => break,
        }
    }
    if words.is_empty() {
        // A statement that starts with a node (`WITH ...`, a parenthesized query).
        if let Some(token) = node
            .descendants_with_tokens()
            .filter_map(|e| e.into_token())
            .find(|t| !t.kind().is_trivia())
        {
            words.push(token.text().to_ascii_uppercase());
        }
    }
    words.join(" ")
}

/// squawk's errors as issues. squawk reports every token it skips while looking for the next
/// statement (`expected command, found ...`); a run of skipped tokens is one issue, whose span
/// covers the run.
fn syntax_issues(
    root: &SyntaxNode,
    errors: &[squawk_syntax::syntax_error::SyntaxError],
    len: usize,
) -> Vec<SyntaxIssue> {
    const SKIPPED: &str = "expected command, found";
    let mut issues: Vec<SyntaxIssue> = Vec::with_capacity(errors.len());
    // The issue of the current run of skipped tokens, and where the token after the run starts.
    // Other errors (the lexer's, found inside the run) do not end the run.
    let mut run: Option<(usize, usize)> = None;
    for error in errors {
        let span = clamp(to_span(error.range()), len);
        if !error.message().starts_with(SKIPPED) {
            issues.push(SyntaxIssue {
                span,
                message: clean_message(error.message()),
            });
            continue;
        }
        let token = root.token_at_offset(error.range().start()).right_biased();
        let token_end = token
            .as_ref()
            .map_or(span.end, |t| usize::from(t.text_range().end()).min(len))
            .max(span.end);
        let next_start = token
            .and_then(|t| {
                let mut next = t.next_token()?;
                while next.kind().is_trivia() {
                    next = next.next_token()?;
                }
                Some(usize::from(next.text_range().start()))
            })
            .unwrap_or(len);
        match run {
            Some((index, expected)) if expected == span.start => {
                issues[index].span.end = token_end;
                run = Some((index, next_start));
            }
            _ => {
                run = Some((issues.len(), next_start));
                issues.push(SyntaxIssue {
                    span: span.start..token_end,
                    message: clean_message(error.message()),
                });
            }
        }
    }
    issues
}

/// The regions the parser recovered in (see [`ParsedFile::recovered`]): for each issue, from the
/// start of the top-level statement it is in (or the issue itself, when it lies between
/// statements) to the end of the first `;` that does not end before the issue does. Merged where
/// they overlap. One pass over the tokens, then a binary search per issue.
fn recovered_regions(root: &SyntaxNode, issues: &[SyntaxIssue], len: usize) -> Vec<Span> {
    if issues.is_empty() {
        return Vec::new();
    }
    let semicolons: Vec<usize> = root
        .descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .filter(|token| token.kind() == SyntaxKind::SEMICOLON)
        .map(|token| usize::from(token.text_range().end()))
        .collect();
    let statements: Vec<Span> = root
        .children()
        .filter(|node| ast::Stmt::can_cast(node.kind()))
        .filter_map(|node| stmt_range(&node))
        .map(to_span)
        .collect();
    let mut regions: Vec<Span> = issues
        .iter()
        .map(|issue| {
            let at = issue.span.start;
            let containing = statements.partition_point(|s| s.start <= at);
            let start = match containing.checked_sub(1).map(|i| &statements[i]) {
                Some(stmt) if at <= stmt.end => stmt.start,
                _ => at,
            };
            let after = semicolons.partition_point(|&end| end < issue.span.end.max(at + 1));
            let end = semicolons
                .get(after)
                .copied()
                .unwrap_or(len)
                .max(issue.span.end);
            start.min(len)..end.min(len)
        })
        .collect();
    regions.sort_by_key(|r| r.start);
    let mut merged: Vec<Span> = Vec::with_capacity(regions.len());
    for region in regions {
        match merged.last_mut() {
            Some(last) if region.start <= last.end => last.end = last.end.max(region.end),
            _ => merged.push(region),
        }
    }
    merged
}

/// The comment token `raw` that starts at byte `start` of the file.
fn comment(start: usize, raw: &str) -> Comment {
    let text = if let Some(line) = raw.strip_prefix("--") {
        line
    } else if let Some(block) = raw.strip_prefix("/*") {
        // An unterminated block comment runs to the end of the file.
        block.strip_suffix("*/").unwrap_or(block)
    } else {
        raw
    };
    Comment {
        span: start..start + raw.len(),
        text: text.to_owned(),
    }
}

fn to_span(range: TextRange) -> Span {
    usize::from(range.start())..usize::from(range.end())
}

fn clamp(span: Span, len: usize) -> Span {
    let end = span.end.min(len);
    span.start.min(end)..end
}

/// squawk's messages as the view wants them: one line, lower-case start, no trailing period, and
/// token names (`SEMICOLON`, `FROM_KW`) as the text they stand for.
fn clean_message(message: &str) -> String {
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let words: Vec<String> = one_line
        .split(' ')
        .map(|word| {
            let (core, trail) = match word.strip_suffix([',', '.', ':']) {
                Some(core) => (core, &word[core.len()..]),
                None => (word, ""),
            };
            match token_text(core) {
                Some((text, true)) => format!("`{text}`{trail}"),
                Some((text, false)) => format!("{text}{trail}"),
                None => word.to_owned(),
            }
        })
        .collect();
    let mut out = words.join(" ");
    while out.ends_with('.') {
        out.pop();
    }
    // Lower-case the first letter unless the first word is an acronym or a keyword (`SQL`, `INTO`).
    let first_word = out.split(' ').next().unwrap_or_default();
    let shouting = first_word.chars().filter(|c| c.is_alphabetic()).count() > 1
        && first_word.chars().all(|c| !c.is_lowercase());
    if !shouting && let Some(first) = out.chars().next() {
        let lower: String = first.to_lowercase().collect();
        out.replace_range(..first.len_utf8(), &lower);
    }
    out
}

/// The text a squawk token-kind name stands for (`SEMICOLON` is `;`, `FROM_KW` is `FROM`), and
/// whether it is literal text (to be quoted) rather than a description.
fn token_text(name: &str) -> Option<(String, bool)> {
    if let Some(keyword) = name.strip_suffix("_KW")
        && !keyword.is_empty()
        && keyword.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    {
        return Some((keyword.replace('_', " "), true));
    }
    let description = match name {
        "IDENT" => Some("an identifier"),
        "STRING" => Some("a string"),
        "INT_NUMBER" | "NUMERIC_NUMBER" => Some("a number"),
        "DOLLAR_QUOTED_STRING" | "ESC_STRING" | "BYTE_STRING" | "BIT_STRING" => Some("a string"),
        "POSITIONAL_PARAM" => Some("a parameter"),
        "EOF" => Some("the end of the file"),
        _ => None,
    };
    if let Some(description) = description {
        return Some((description.to_owned(), false));
    }
    let text = match name {
        "SEMICOLON" => ";",
        "COMMA" => ",",
        "DOT" => ".",
        "L_PAREN" => "(",
        "R_PAREN" => ")",
        "L_BRACK" => "[",
        "R_BRACK" => "]",
        "EQ" => "=",
        "STAR" => "*",
        "PLUS" => "+",
        "MINUS" => "-",
        "SLASH" => "/",
        "COLON" => ":",
        "COLON_COLON" => "::",
        "PERCENT" => "%",
        "CARET" => "^",
        "L_ANGLE" => "<",
        "R_ANGLE" => ">",
        "PIPE" => "|",
        "AMP" => "&",
        "TILDE" => "~",
        "BANG" => "!",
        "QUESTION" => "?",
        "AT" => "@",
        "POUND" => "#",
        _ => return None,
    };
    Some((text.to_owned(), true))
}
