//! What the migrations linted so far have built: tables (by schema and name) with their columns'
//! types and their constraints, and the functions they defined.
//!
//! Only what rules need: whether a type change is binary-coercible depends on the column's
//! current type, whether `SET NOT NULL` scans depends on the constraints already validated, and
//! whether a column default is volatile depends on how its function was declared; an earlier
//! migration said each of these.
//!
//! Names resolve as PostgreSQL resolves them (see [`SearchPath`]): `app.users` and `users` are the
//! same table only when `app` is where the search path finds `users`.

// Keys are names: Fx hashing is several times faster than SipHash there, and nothing an
// attacker controls reaches these maps' worst case in a lint run.
use rustc_hash::FxHashMap as HashMap;

use crate::sql::{
    AlterAction, ColumnDef, Constraint, ConstraintKind, Dialect, Expr, Name, ParsedFile, StmtKind,
    TypeName, Volatility,
};

/// The schemas an unqualified table name is looked up in, in order, and the first of which a
/// `CREATE TABLE` of an unqualified name creates in: PostgreSQL's `search_path`. Its default is
/// `"$user", public`; a schema named after the migration's role is not something a migration
/// can be known to have, so `$user` is left out. `pg_catalog` holds no migration's tables.
/// Temporary tables live in a schema of their own, looked in first. SQLite has no search path:
/// `temp`, then `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    temp: &'static str,
    schemas: Vec<String>,
}

impl Default for SearchPath {
    fn default() -> Self {
        SearchPath::of(Dialect::Postgres)
    }
}

impl SearchPath {
    /// The path a file starts with.
    pub fn of(dialect: Dialect) -> SearchPath {
        match dialect {
            Dialect::Postgres => SearchPath {
                temp: "pg_temp",
                schemas: vec!["public".to_owned()],
            },
            Dialect::Sqlite => SearchPath {
                temp: "temp",
                schemas: vec!["main".to_owned()],
            },
        }
    }

    /// The schemas of the path, in order (temporary tables' left out).
    pub fn schemas(&self) -> &[String] {
        &self.schemas
    }

    /// The schema temporary tables are created in.
    pub fn temp_schema(&self) -> &'static str {
        self.temp
    }

    /// The path a `SET search_path` value sets: names separated by commas, quoted (`"App"`, kept
    /// as written) or not (lower-cased), in a string literal or not. `DEFAULT` is the default.
    pub fn parse(value: &str) -> SearchPath {
        let value = value.trim();
        if value.eq_ignore_ascii_case("default") {
            return SearchPath::default();
        }
        let schemas: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(quoted) => quoted.replace("\"\"", "\""),
                    None => s.trim_matches('\'').to_lowercase(),
                },
            )
            .filter(|s| s != "$user" && s != "pg_catalog")
            .collect();
        SearchPath {
            temp: "pg_temp",
            schemas,
        }
    }

    /// The schemas an unqualified name is looked up in: temporary tables first, then the path.
    pub fn lookup(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.temp).chain(self.schemas.iter().map(String::as_str))
    }

    /// Where `CREATE TABLE name` creates the table: the first schema of the path (`public` when
    /// the path is empty, where PostgreSQL would refuse the statement).
    pub fn creation_schema(&self) -> &str {
        self.schemas.first().map_or("public", String::as_str)
    }

    /// The search path after `stmt`, if it changes it (`SET [LOCAL] search_path`, `SET SCHEMA`).
    pub fn after(kind: &StmtKind) -> Option<SearchPath> {
        match kind {
            StmtKind::Set { name, value, .. } if name == "search_path" => {
                (value != "FROM CURRENT").then(|| SearchPath::parse(value))
            }
            _ => None,
        }
    }
}

/// A constraint an earlier migration left on a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConstraintFacts {
    /// The columns it proves not null (a CHECK of `c IS NOT NULL`).
    pub not_null_columns: Vec<String>,
    /// Added without NOT VALID, or validated since.
    pub validated: bool,
}

#[derive(Debug, Clone, Default)]
struct Table {
    /// Column name -> type.
    columns: HashMap<String, TypeName>,
    /// Columns declared NOT NULL (or set so since).
    not_null: Vec<String>,
    /// Constraint name -> what it says (unnamed ones under a key no name can have).
    constraints: HashMap<String, ConstraintFacts>,
}

/// How an earlier migration defined a function: enough to tell whether a call is volatile.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionFacts {
    pub volatility: Volatility,
    pub language: String,
    pub inline: Option<Expr>,
    pub returns_set: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Table name -> schema -> the table (keyed so that a lookup allocates nothing).
    tables: HashMap<String, HashMap<String, Table>>,
    /// Function name (unqualified) -> its latest definition.
    functions: HashMap<String, FunctionFacts>,
}

impl Schema {
    /// The declared type of `table.column` (`table` qualified, see [`Schema::qualify`]), if an
    /// earlier migration declared it.
    pub fn column_type(&self, table: &Name, column: &str) -> Option<&TypeName> {
        self.table(table)?.columns.get(column)
    }

    /// Whether an earlier migration left `table.column` NOT NULL (`table` qualified).
    pub fn is_not_null(&self, table: &Name, column: &str) -> bool {
        self.table(table)
            .is_some_and(|t| t.not_null.iter().any(|c| c == column))
    }

    /// The constraint `name` an earlier migration left on `table` (qualified).
    pub fn constraint(&self, table: &Name, name: &str) -> Option<&ConstraintFacts> {
        self.table(table)?.constraints.get(name)
    }

    /// Whether a validated constraint an earlier migration left on `table` (qualified) proves
    /// `column` not null.
    pub fn proves_not_null(&self, table: &Name, column: &str) -> bool {
        self.table(table).is_some_and(|t| {
            t.constraints
                .values()
                .any(|c| c.validated && c.not_null_columns.iter().any(|n| n == column))
        })
    }

    /// Whether `schema.name` exists after the earlier migrations.
    pub fn has_table(&self, schema: &str, name: &str) -> bool {
        self.tables
            .get(name)
            .is_some_and(|schemas| schemas.contains_key(schema))
    }

    /// How an earlier migration defined the function `name` (unqualified), if one did.
    pub fn function(&self, name: &str) -> Option<&FunctionFacts> {
        self.functions.get(name)
    }

    fn table(&self, table: &Name) -> Option<&Table> {
        let (schema, name) = key_of(table);
        self.tables.get(&name)?.get(&schema)
    }

    fn get_mut(&mut self, key: &(String, String)) -> Option<&mut Table> {
        self.tables.get_mut(&key.1)?.get_mut(&key.0)
    }

    fn entry(&mut self, key: (String, String)) -> &mut Table {
        self.tables
            .entry(key.1)
            .or_default()
            .entry(key.0)
            .or_default()
    }

    fn insert(&mut self, key: (String, String), table: Table) {
        self.tables.entry(key.1).or_default().insert(key.0, table);
    }

    fn remove(&mut self, key: &(String, String)) -> Option<Table> {
        let schemas = self.tables.get_mut(&key.1)?;
        let table = schemas.remove(&key.0);
        if schemas.is_empty() {
            self.tables.remove(&key.1);
        }
        table
    }

    /// The schema `table` names: its own, or the first on `path` that has a table of that name,
    /// or the one `path` creates in.
    pub fn qualify(&self, path: &SearchPath, table: &Name) -> Name {
        if table.schema.is_some() {
            return table.clone();
        }
        let schema = path
            .lookup()
            .find(|s| self.has_table(s, &table.name))
            .unwrap_or_else(|| path.creation_schema());
        Name::qualified(schema, table.name.clone())
    }

    /// Records what a file's statements build. Statements run inside a function body are not
    /// the file's; statements of DO blocks are (they run now). Temporary tables end with the
    /// migration's session and are not kept.
    pub fn apply(&mut self, parsed: &ParsedFile, dialect: Dialect) {
        let mut path = SearchPath::of(dialect);
        for stmt in &parsed.statements {
            if let Some(next) = SearchPath::after(&stmt.kind) {
                path = next;
                continue;
            }
            match &stmt.kind {
                StmtKind::CreateTable {
                    table,
                    columns,
                    constraints,
                    temporary,
                    if_not_exists,
                    ..
                } => {
                    if *temporary || table.schema.as_deref() == Some(path.temp_schema()) {
                        continue;
                    }
                    let key = self.creation_key(&path, table);
                    if *if_not_exists && self.has_table(&key.0, &key.1) {
                        continue;
                    }
                    let mut t = Table::default();
                    for column in columns {
                        t.add_column(column);
                    }
                    for c in constraints {
                        t.add_constraint(c);
                    }
                    self.insert(key, t);
                }
                StmtKind::SelectInto { table, .. } => {
                    let key = self.creation_key(&path, table);
                    self.entry(key);
                }
                StmtKind::DropTable { tables } => {
                    for table in tables {
                        let table = self.qualify(&path, table);
                        self.remove(&key_of(&table));
                    }
                }
                StmtKind::AlterTable { table, actions } => {
                    let table = self.qualify(&path, table);
                    for action in actions {
                        self.apply_action(&table, action);
                    }
                }
                StmtKind::CreateFunction {
                    name,
                    volatility,
                    language,
                    inline,
                    returns_set,
                    ..
                } => {
                    self.functions.insert(
                        name.name.clone(),
                        FunctionFacts {
                            volatility: *volatility,
                            language: language.clone(),
                            inline: inline.clone(),
                            returns_set: *returns_set,
                        },
                    );
                }
                _ => {}
            }
        }
    }

    /// Where `CREATE TABLE table` puts the table: its schema, or the path's creation schema.
    fn creation_key(&self, path: &SearchPath, table: &Name) -> (String, String) {
        let schema = table
            .schema
            .clone()
            .unwrap_or_else(|| path.creation_schema().to_owned());
        (schema, table.name.clone())
    }

    fn apply_action(&mut self, table: &Name, action: &AlterAction) {
        let key = key_of(table);
        match action {
            AlterAction::AddColumn { column } => {
                self.entry(key).add_column(column);
            }
            AlterAction::AlterColumnType {
                column, data_type, ..
            } => {
                self.entry(key)
                    .columns
                    .insert(column.clone(), data_type.clone());
            }
            AlterAction::DropColumn { column } => {
                if let Some(t) = self.get_mut(&key) {
                    t.columns.remove(column);
                    t.not_null.retain(|c| c != column);
                    // PostgreSQL drops the constraints that use the column with it.
                    t.constraints
                        .retain(|_, c| !c.not_null_columns.iter().any(|n| n == column));
                }
            }
            AlterAction::RenameColumn { from, to } => {
                if let Some(t) = self.get_mut(&key) {
                    if let Some(ty) = t.columns.remove(from) {
                        t.columns.insert(to.clone(), ty);
                    }
                    for c in t.not_null.iter_mut().chain(
                        t.constraints
                            .values_mut()
                            .flat_map(|c| c.not_null_columns.iter_mut()),
                    ) {
                        if c == from {
                            *c = to.clone();
                        }
                    }
                }
            }
            AlterAction::RenameTable { new_name } => {
                if let Some(t) = self.remove(&key) {
                    let schema = new_name.schema.clone().unwrap_or(key.0);
                    self.insert((schema, new_name.name.clone()), t);
                }
            }
            AlterAction::SetNotNull { column } => {
                let t = self.entry(key);
                if !t.not_null.contains(column) {
                    t.not_null.push(column.clone());
                }
            }
            AlterAction::DropNotNull { column } => {
                if let Some(t) = self.get_mut(&key) {
                    t.not_null.retain(|c| c != column);
                }
            }
            AlterAction::AddConstraint(c) => {
                self.entry(key).add_constraint(c);
            }
            AlterAction::ValidateConstraint { name } => {
                if let Some(c) = self.get_mut(&key).and_then(|t| t.constraints.get_mut(name)) {
                    c.validated = true;
                }
            }
            AlterAction::DropConstraint { name } => {
                if let Some(t) = self.get_mut(&key) {
                    t.constraints.remove(name);
                }
            }
            _ => {}
        }
    }
}

fn key_of(table: &Name) -> (String, String) {
    (
        table.schema.clone().unwrap_or_else(|| "public".to_owned()),
        table.name.clone(),
    )
}

impl Table {
    fn add_column(&mut self, column: &ColumnDef) {
        self.columns
            .insert(column.name.clone(), column.data_type.clone());
        let primary_key = column
            .constraints
            .iter()
            .any(|c| matches!(c.kind, ConstraintKind::PrimaryKey { .. }));
        if (column.not_null || primary_key) && !self.not_null.contains(&column.name) {
            self.not_null.push(column.name.clone());
        }
        for c in &column.constraints {
            self.add_constraint(c);
        }
    }

    fn add_constraint(&mut self, c: &Constraint) {
        if !matches!(c.kind, ConstraintKind::Check) {
            return;
        }
        let key = c
            .name
            .clone()
            .unwrap_or_else(|| format!(" unnamed {}", self.constraints.len()));
        self.constraints.insert(
            key,
            ConstraintFacts {
                not_null_columns: c.not_null_columns.clone(),
                validated: !c.not_valid,
            },
        );
    }
}
