//! The PostgreSQL backend (the synchronous `postgres` crate): production runs, and
//! `backfill sample --database-url postgres://...` on a throwaway schema of a real server.
//!
//! A batch is one transaction with `SET LOCAL lock_timeout` / `statement_timeout` when asked, the
//! statement, and the tracking row. Errors that a retry may cure (serialization failure,
//! deadlock, lock timeout, statement timeout, shutdown, lost connection) are classified once, by
//! SQLSTATE, in [`classify`].
//! Query results are read in PostgreSQL's text format, typed by the prepared statement's column
//! types, so a snapshot taken here reads like one taken on SQLite.

use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, SimpleQueryMessage, Statement};

use crate::backfill::db::{
    Backend, BatchLimits, Cell, Column, ColumnType, Digest, KeyKind, KeyValue, Rows, SampleBackend,
    SqlValue, TextRows, format_real, quote_ident,
};
use crate::backfill::error::{Error, ErrorKind, Result, Retry};
use crate::sql::Dialect;

pub struct PgBackend {
    client: Client,
    url: String,
    /// A schema this backend created and drops when it is dropped.
    throwaway: Option<String>,
    /// The only schema this session searches: the throwaway schema, its own or another
    /// session's.
    search: Option<String>,
    /// Prepared statements by SQL text, valid for the current connection.
    prepared: HashMap<String, Statement>,
    /// Session limits, set again after a reconnect.
    limits: BatchLimits,
    /// Statements prepared with SQL's `PREPARE` in this session, by text: their names.
    sql_prepared: HashMap<String, String>,
}

impl PgBackend {
    /// Connects to `url` and works in its default schema.
    pub fn connect(url: &str) -> Result<PgBackend> {
        Ok(PgBackend {
            client: connect(url)?,
            url: url.to_string(),
            throwaway: None,
            search: None,
            prepared: HashMap::new(),
            limits: BatchLimits::default(),
            sql_prepared: HashMap::new(),
        })
    }

    /// Connects to `url` and works in a new, empty schema that is dropped (with everything in it)
    /// when this value is dropped, also after an error or a panic.
    pub fn throwaway_schema(url: &str) -> Result<PgBackend> {
        let mut backend = PgBackend::connect(url)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!("xtask_sample_{}_{nanos}", std::process::id());
        backend
            .client
            .batch_execute(&format!("CREATE SCHEMA {}", quote_ident(&schema)))
            .map_err(|e| pg_error(e, ErrorKind::Database).context("create a throwaway schema"))?;
        backend.throwaway = Some(schema.clone());
        backend.search = Some(schema);
        backend.set_search_path()?;
        Ok(backend)
    }

    /// Opens another session on the same database and schema when called (on any thread), for
    /// work beside this session's (a sample's checks): it searches this backend's throwaway
    /// schema too, and leaves dropping it to this backend.
    pub fn session_opener(&self) -> impl FnOnce() -> Result<PgBackend> + Send + 'static {
        let (url, search) = (self.url.clone(), self.search.clone());
        move || {
            let mut backend = PgBackend::connect(&url)?;
            backend.search = search;
            backend.set_search_path()?;
            Ok(backend)
        }
    }

    /// The throwaway schema's name, if this backend made one.
    pub fn schema(&self) -> Option<&str> {
        self.throwaway.as_deref()
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Only the throwaway schema is searched: a table missing there must not be found in
    /// `public` by accident. A sample's session also reads and writes timestamps in UTC, ISO
    /// style, whatever the server's defaults, so its snapshot is the same on every server.
    fn set_search_path(&mut self) -> Result<()> {
        if let Some(schema) = &self.search {
            self.client
                .batch_execute(&format!(
                    "SET search_path TO {}; SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, MDY'",
                    quote_ident(schema)
                ))
                .map_err(|e| pg_error(e, ErrorKind::Database))?;
        }
        Ok(())
    }

    fn prepare(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(stmt) = self.prepared.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    /// Prepares `sql` once per connection with parameters of `types`.
    fn prepare_typed(
        &mut self,
        sql: &str,
        types: &[Type],
    ) -> std::result::Result<Statement, postgres::Error> {
        let cache_key = format!("{types:?}{sql}");
        if let Some(stmt) = self.prepared.get(&cache_key) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare_typed(sql, types)?;
        self.prepared.insert(cache_key, stmt.clone());
        Ok(stmt)
    }

    /// The names of the columns `sql` returns (its bounds of the key's type).
    fn query_columns(&mut self, sql: &str, kind: KeyKind) -> Result<Vec<String>> {
        let ty = key_type(kind);
        Ok(self
            .prepare_typed(sql, &[ty.clone(), ty])
            .map_err(statement_error)?
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect())
    }

    /// Runs `sql`, whose `$1` and `$2` are bounds of the key's type, for `(lower, upper]`.
    fn bounded(
        &mut self,
        sql: &str,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<Vec<postgres::Row>> {
        let ty = key_type(lower.kind());
        let stmt = self
            .prepare_typed(sql, &[ty.clone(), ty])
            .map_err(statement_error)?;
        if stmt.params().len() != 2 {
            return Err(Error::new(
                ErrorKind::Statement,
                format!(
                    "the query has {} parameters, expected 2 (:lower and :upper)",
                    stmt.params().len()
                ),
            ));
        }
        let lo = key_param(lower, &stmt.params()[0])?;
        let hi = key_param(upper, &stmt.params()[1])?;
        self.client
            .query(&stmt, &[&*lo, &*hi])
            .map_err(statement_error)
    }

    fn key_query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: KeyKind,
    ) -> Result<Option<KeyValue>> {
        let stmt = self.prepare(sql).map_err(statement_error)?;
        let rows = self.client.query(&stmt, params).map_err(statement_error)?;
        match rows.first() {
            None => Ok(None),
            Some(row) => read_key(row, kind),
        }
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        if let Some(schema) = self.throwaway.take() {
            if self.client.is_closed()
                && let Ok(client) = connect(&self.url)
            {
                self.client = client;
            }
            // An aborted transaction would refuse the DROP; end it first.
            let _ = self.client.batch_execute("ROLLBACK");
            let _ = self.client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(&schema)
            ));
        }
    }
}

pub(crate) fn connect(url: &str) -> Result<Client> {
    if let Some(password) = url.parse::<postgres::Config>().ok().and_then(|c| {
        c.get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }) {
        crate::secrets::register(&password);
    }
    if let Some(message) = unencoded_at(url) {
        return Err(Error::new(ErrorKind::Database, message));
    }
    Client::connect(url, NoTls).map_err(|e| {
        Error::new(
            ErrorKind::Database,
            format!("cannot connect to {}: {}", redact_url(url), describe_pg(&e)),
        )
        .with_retry(match classify(&e) {
            // A refused connection (server starting or restarting) is worth waiting for; a
            // refused login is not.
            Retry::Never => Retry::Never,
            _ => Retry::Reconnect,
        })
    })
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let url = &redact_query_password(url);
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.clone();
    }
    // key=value form: hide the value of `password=`.
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `?password=...` (or `&password=...`) in a URL's query, replaced by `***`.
fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

pub(crate) fn describe_pg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                message.push_str(&format!(" (hint: {hint})"));
            }
            message
        }
        None => {
            // "error connecting to server" alone does not say why; the cause does.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        }
    }
}

/// The message of an error PostgreSQL gave for `sql`, and the byte offset in `sql` it points at
/// when it says (a schema migration's error then names its line).
pub(crate) fn locate(e: &(dyn std::error::Error + 'static), sql: &str) -> (String, Option<usize>) {
    match e.downcast_ref::<postgres::Error>() {
        Some(pg) => {
            let offset = match pg.as_db_error().and_then(|db| db.position()) {
                Some(postgres::error::ErrorPosition::Original(p)) => {
                    let chars = (*p as usize).saturating_sub(1);
                    Some(sql.char_indices().nth(chars).map_or(sql.len(), |(i, _)| i))
                }
                _ => None,
            };
            (describe_pg(pg), offset)
        }
        None => (e.to_string(), None),
    }
}

/// Classifies a PostgreSQL error by its SQLSTATE, never its text: the one classification of
/// PostgreSQL errors, for batches, bound queries, tracking tables and connecting alike.
pub fn classify(e: &postgres::Error) -> Retry {
    use postgres::error::SqlState;
    if e.is_closed() {
        return Retry::Reconnect;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE and no server message: I/O or protocol, i.e. the connection.
        return if e.as_db_error().is_none() {
            Retry::Reconnect
        } else {
            Retry::Never
        };
    };
    if *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
    {
        Retry::Backoff
    } else if *code == SqlState::QUERY_CANCELED {
        Retry::Split
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || code.code().starts_with("08")
    {
        Retry::Reconnect
    } else {
        Retry::Never
    }
}

/// A PostgreSQL error as the library's error, classified for retries.
pub(crate) fn pg_error(e: postgres::Error, kind: ErrorKind) -> Error {
    Error::new(kind, describe_pg(&e)).with_retry(classify(&e))
}

fn statement_error(e: postgres::Error) -> Error {
    pg_error(e, ErrorKind::Statement)
}

/// A key bound as the statement's parameter type wants it.
pub(crate) fn key_param(key: &KeyValue, ty: &Type) -> Result<Box<dyn ToSql + Sync>> {
    let out_of_range = || {
        Error::new(
            ErrorKind::Statement,
            format!("key {key} does not fit the parameter type {ty}"),
        )
    };
    Ok(match key {
        KeyValue::Int(i) if *ty == Type::INT8 => Box::new(*i),
        KeyValue::Int(i) if *ty == Type::INT4 => {
            Box::new(i32::try_from(*i).map_err(|_| out_of_range())?)
        }
        KeyValue::Int(i) if *ty == Type::INT2 => {
            Box::new(i16::try_from(*i).map_err(|_| out_of_range())?)
        }
        KeyValue::Int(i) if *ty == Type::NUMERIC || *ty == Type::TEXT => Box::new(i.to_string()),
        KeyValue::Text(s)
            if [
                Type::TEXT,
                Type::VARCHAR,
                Type::BPCHAR,
                Type::NAME,
                Type::UNKNOWN,
            ]
            .contains(ty) =>
        {
            Box::new(s.clone())
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Statement,
                format!(
                    "the batch bounds are compared as {ty}, but the key is {key:?}; compare the key column itself"
                ),
            ));
        }
    })
}

/// `c1, c2, ...`: names for a query's `width` columns (its own may repeat or be missing).
fn column_aliases(width: usize) -> String {
    let names: Vec<String> = (1..=width).map(|i| format!("c{i}")).collect();
    names.join(", ")
}

/// A key as an SQL literal: quoted, so the prepared statement's parameter type reads it (a text
/// key dollar-quoted with a tag it does not contain: no escaping rules involved).
fn literal(key: &KeyValue) -> String {
    match key {
        KeyValue::Int(i) => format!("'{i}'"),
        KeyValue::Text(s) => {
            let mut tag = String::from("k");
            while s.contains(&format!("${tag}$")) {
                tag.push('k');
            }
            format!("${tag}${s}${tag}$")
        }
    }
}

/// The type key bounds are sent as: `bigint` for integer keys (PostgreSQL compares `integer` and
/// `smallint` columns with it through the same index) and `text` for text keys.
fn key_type(kind: KeyKind) -> Type {
    match kind {
        KeyKind::Integer => Type::INT8,
        KeyKind::Text => Type::TEXT,
    }
}

pub(crate) fn read_key(row: &postgres::Row, kind: KeyKind) -> Result<Option<KeyValue>> {
    read_key_at(row, 0, kind)
}

/// [`read_key`] of the row's column `i`.
pub(crate) fn read_key_at(
    row: &postgres::Row,
    i: usize,
    kind: KeyKind,
) -> Result<Option<KeyValue>> {
    let ty = row.columns()[i].type_().clone();
    let bad = |e: postgres::Error| {
        Error::new(
            ErrorKind::Statement,
            format!("cannot read a key of type {ty}: {e}"),
        )
    };
    Ok(match kind {
        KeyKind::Integer if ty == Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(bad)?
            .map(KeyValue::Int),
        KeyKind::Integer if ty == Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(bad)?
            .map(|i| KeyValue::Int(i.into())),
        KeyKind::Integer if ty == Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(bad)?
            .map(|i| KeyValue::Int(i.into())),
        KeyKind::Text => row
            .try_get::<_, Option<String>>(i)
            .map_err(bad)?
            .map(KeyValue::Text),
        KeyKind::Integer => {
            return Err(Error::new(
                ErrorKind::Statement,
                format!("integer keys of type {ty} are not supported"),
            ));
        }
    })
}

/// A value of PostgreSQL's text format as a cell, written the way SQLite's value of the same
/// meaning is: numerics without trailing fractional zeros (`10.50` is `10.5`, like SQLite's
/// real), floats in Rust's shortest form (`1e+20` is `100000000000000000000`), and a
/// `timestamptz` of a UTC session without its `+00` (fixtures store UTC timestamps on SQLite).
fn cell(text: Option<&str>, ty: &Type) -> Cell {
    let Some(text) = text else { return Cell::Null };
    if [Type::INT2, Type::INT4, Type::INT8, Type::OID].contains(ty) {
        Cell::Number(text.to_string())
    } else if *ty == Type::NUMERIC {
        Cell::Number(trim_decimal(text))
    } else if *ty == Type::FLOAT8 {
        Cell::Number(text.parse().map_or_else(|_| text.to_string(), format_real))
    } else if *ty == Type::FLOAT4 {
        Cell::Number(match text.parse::<f32>() {
            Ok(f) if f.is_finite() => f.to_string(),
            Ok(f) => format_real(f.into()),
            Err(_) => text.to_string(),
        })
    } else if *ty == Type::TIMESTAMPTZ {
        Cell::Text(text.strip_suffix("+00").unwrap_or(text).to_string())
    } else if *ty == Type::BOOL {
        Cell::Bool(text == "t")
    } else if *ty == Type::BYTEA {
        let hex = text.strip_prefix("\\x").unwrap_or(text);
        let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
            .map(|i| {
                hex.get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        bytes.map_or_else(|| Cell::Text(text.to_string()), Cell::Blob)
    } else {
        Cell::Text(text.to_string())
    }
}

/// `10.50` as `10.5`, `10.00` as `10`, `-0.0` as `0`; anything else (`NaN`, an integer) as is.
fn trim_decimal(text: &str) -> String {
    if !text.contains('.') || text.contains(['e', 'E']) {
        return text.to_string();
    }
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "-0" | "" | "-" => "0".to_string(),
        other => other.to_string(),
    }
}

/// A fixture value in PostgreSQL's text input format (cast to the column's type by the INSERT).
fn text_value(value: &SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(format_real(*f)),
        SqlValue::Decimal(s) | SqlValue::Text(s) => Some(s.clone()),
        SqlValue::Blob(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
        SqlValue::Bool(b) => Some(b.to_string()),
    }
}

impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn describe(&self) -> String {
        match &self.search {
            Some(schema) => format!("PostgreSQL {} (schema {schema})", redact_url(&self.url)),
            None => format!("PostgreSQL {}", redact_url(&self.url)),
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        self.client = connect(&self.url)?;
        self.prepared.clear();
        self.sql_prepared.clear();
        self.set_search_path()?;
        let limits = self.limits;
        self.apply_limits(&limits)
    }

    fn apply_limits(&mut self, limits: &BatchLimits) -> Result<()> {
        let mut settings = String::new();
        if let Some(t) = limits.lock_timeout {
            settings.push_str(&format!("SET lock_timeout = '{}ms';", t.as_millis()));
        }
        if let Some(t) = limits.statement_timeout {
            settings.push_str(&format!("SET statement_timeout = '{}ms';", t.as_millis()));
        }
        if !settings.is_empty() {
            self.client
                .batch_execute(&settings)
                .map_err(|e| pg_error(e, ErrorKind::Database))?;
        }
        self.limits = *limits;
        Ok(())
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(statement_error)
    }

    fn columns(&mut self, table: &str) -> Result<Option<Vec<Column>>> {
        let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
                   FROM pg_attribute AS a
                   WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped
                   ORDER BY a.attnum";
        let rows = self
            .client
            .query(sql, &[&table])
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        let columns: Vec<Column> = rows
            .iter()
            .map(|r| {
                let declared: String = r.get(1);
                Column {
                    name: r.get(0),
                    ty: ColumnType::from_declared(&declared),
                    declared,
                    not_null: r.get(2),
                }
            })
            .collect();
        Ok((!columns.is_empty()).then_some(columns))
    }

    fn query(&mut self, sql: &str) -> Result<Rows> {
        let stmt = self.client.prepare(sql).map_err(statement_error)?;
        let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let columns: Vec<String> = stmt
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let messages = self.client.simple_query(sql).map_err(statement_error)?;
        let mut rows = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let cells = (0..types.len())
                    .map(|i| cell(row.get(i), &types[i]))
                    .collect();
                rows.push(cells);
            }
        }
        Ok(Rows { columns, rows })
    }

    fn min_key(&mut self, table: &str, key: &str, kind: KeyKind) -> Result<Option<KeyValue>> {
        let sql = format!(
            "SELECT {k} FROM {t} WHERE {k} IS NOT NULL ORDER BY {k} LIMIT 1",
            k = quote_ident(key),
            t = quote_ident(table)
        );
        self.key_query(&sql, &[], kind)
    }

    fn count_null_keys(&mut self, table: &str, key: &str) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NULL",
            quote_ident(table),
            quote_ident(key)
        );
        let row = self.client.query_one(&sql, &[]).map_err(statement_error)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Each value as its `::text`: what the digest hashes.
    fn range_rows(&mut self, sql: &str, lower: &KeyValue, upper: &KeyValue) -> Result<TextRows> {
        let columns = self.query_columns(sql, lower.kind())?;
        let aliases = column_aliases(columns.len());
        let texts: Vec<String> = (1..=columns.len())
            .map(|i| format!("q.c{i}::text"))
            .collect();
        let wrapped = format!(
            "SELECT {} FROM (\n{sql}\n) AS q({aliases})",
            texts.join(", ")
        );
        let rows = self.bounded(&wrapped, lower, upper)?;
        let rows = rows
            .iter()
            .map(|row| {
                (0..columns.len())
                    .map(|i| row.get::<_, Option<String>>(i))
                    .collect()
            })
            .collect();
        Ok(TextRows { columns, rows })
    }

    /// The digest of each part in one round trip: the digest query is prepared once per
    /// session with SQL's `PREPARE`, and one message `EXECUTE`s it for every part (the bounds
    /// written as literals), so each part is read once, through the query's own plan, and one
    /// row per part comes back. A part's digest is `count(*)` and the sum of its rows' hashes: a
    /// row's hash chains `hashtextextended` over its values' `::text` (the text
    /// [`Backend::range_rows`] reads), each value's hash seeding the next, the seed's lowest bit
    /// flipped for a NULL; with `ordered`, the first seed is the row's position in its part.
    fn range_digests(
        &mut self,
        sql: &str,
        lower: &KeyValue,
        upper: &KeyValue,
        bounds: &[KeyValue],
        ordered: bool,
    ) -> Result<Vec<Digest>> {
        let width = self.query_columns(sql, lower.kind())?.len();
        let aliases = column_aliases(width);
        let mut hash = if ordered {
            "q.xtask_n".to_string()
        } else {
            "0::bigint".to_string()
        };
        for i in 1..=width {
            hash = format!(
                "hashtextextended(coalesce(q.c{i}::text, ''), {hash} # CASE WHEN q.c{i} IS NULL THEN 1::bigint ELSE 0::bigint END)"
            );
        }
        let rows = if ordered {
            format!(
                "(SELECT row_number() OVER () AS xtask_n, * FROM (\n{sql}\n) AS q({aliases})) AS q"
            )
        } else {
            // `OFFSET 0` keeps the query a subquery of its own: pulled up into the digest, each
            // of its output expressions would be computed once per reference in the hash (twice:
            // the value and its NULL test), a correlated subquery's index scans included.
            format!("(SELECT * FROM (\n{sql}\n) AS q OFFSET 0) AS q({aliases})")
        };
        let digest = format!("SELECT count(*), coalesce(sum({hash}), 0)::text FROM {rows}");
        let ty = match lower.kind() {
            KeyKind::Integer => "bigint",
            KeyKind::Text => "text",
        };
        let cache_key = format!("{ty}{digest}");
        let name = match self.sql_prepared.get(&cache_key) {
            Some(name) => name.clone(),
            None => {
                let name = format!("xtask_digest_{}", self.sql_prepared.len() + 1);
                self.client
                    .batch_execute(&format!("PREPARE {name} ({ty}, {ty}) AS {digest}"))
                    .map_err(statement_error)?;
                self.sql_prepared.insert(cache_key, name.clone());
                name
            }
        };
        let mut message = String::new();
        let mut from = lower;
        for to in bounds.iter().chain(std::iter::once(upper)) {
            message.push_str(&format!(
                "EXECUTE {name}({}, {});",
                literal(from),
                literal(to)
            ));
            from = to;
        }
        let messages = self
            .client
            .simple_query(&message)
            .map_err(statement_error)?;
        let mut digests = Vec::with_capacity(bounds.len() + 1);
        for m in messages {
            if let SimpleQueryMessage::Row(row) = m {
                let number = |i: usize| -> Result<i128> {
                    let text = row.get(i).unwrap_or("0");
                    text.parse().map_err(|_| {
                        Error::new(
                            ErrorKind::Statement,
                            format!("the digest's `{text}` is not an integer"),
                        )
                    })
                };
                digests.push(Digest {
                    rows: number(0)?.max(0) as u64,
                    hash: [number(1)?, 0],
                });
            }
        }
        if digests.len() != bounds.len() + 1 {
            return Err(Error::new(
                ErrorKind::Statement,
                format!(
                    "the digests returned {} rows for {} parts",
                    digests.len(),
                    bounds.len() + 1
                ),
            ));
        }
        Ok(digests)
    }

    fn key_bounds(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<Option<(KeyValue, KeyValue)>> {
        let sql = crate::backfill::db::key_bounds_sql(table, key, false);
        let rows = self.bounded(&sql, lower, upper)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let first = read_key(row, kind)?;
        let last = match kind {
            KeyKind::Integer => row
                .try_get::<_, Option<i64>>(1)
                .ok()
                .flatten()
                .map(KeyValue::Int),
            KeyKind::Text => row
                .try_get::<_, Option<String>>(1)
                .ok()
                .flatten()
                .map(KeyValue::Text),
        };
        Ok(first.zip(last))
    }

    fn split_keys(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
        rows: u64,
        parts: u64,
    ) -> Result<Vec<KeyValue>> {
        let sql = crate::backfill::db::split_keys_sql(table, key, false);
        let ty = key_type(kind);
        let stmt = self
            .prepare_typed(&sql, &[ty.clone(), ty, Type::INT8, Type::INT8])
            .map_err(statement_error)?;
        let lo = key_param(lower, &stmt.params()[0])?;
        let hi = key_param(upper, &stmt.params()[1])?;
        let (step, count) = crate::backfill::db::split_step(rows, parts);
        let rows = self
            .client
            .query(&stmt, &[&*lo, &*hi, &step, &count])
            .map_err(statement_error)?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(k) = read_key(row, kind)? {
                keys.push(k);
            }
        }
        Ok(keys)
    }
}

impl PgBackend {
    /// Runs the statements of a migration that failed, one at a time, in a transaction that is
    /// rolled back, and returns the line where the first failing one fails: the server's
    /// position in it when it gives one, else its first line. `None` when none fails.
    fn failing_line(&mut self, sql: &str) -> Option<usize> {
        let statements = crate::backfill::db::schema::statements(sql)?;
        self.client.batch_execute("BEGIN").ok()?;
        let mut found = None;
        for range in statements {
            if let Err(e) = self.client.batch_execute(&sql[range.clone()]) {
                let offset = match e.as_db_error().and_then(|db| db.position()) {
                    Some(postgres::error::ErrorPosition::Original(p)) => sql[range.clone()]
                        .char_indices()
                        .nth((*p as usize).saturating_sub(1))
                        .map_or(range.start, |(i, _)| range.start + i),
                    _ => range.start,
                };
                found = Some(crate::backfill::db::schema::line_at(sql, offset));
                break;
            }
        }
        let _ = self.client.batch_execute("ROLLBACK");
        found
    }
}

/// The fill factor of the fixture tables while they are loaded (percent of each page filled):
/// room for one new version of every row on its own page.
const LOAD_FILLFACTOR: u32 = 50;

impl SampleBackend for PgBackend {
    fn apply_migrations(
        &mut self,
        migrations: &[refinery::Migration],
        version: u64,
        dir: &std::path::Path,
    ) -> Result<()> {
        let prepared =
            crate::backfill::db::schema::prepare(migrations, version, Dialect::Postgres)?;
        let result =
            crate::backfill::db::schema::apply(&mut self.client, &prepared, version, dir, &locate);
        // Many errors of DDL come without a position (a missing table in REFERENCES, an
        // unknown extension): find the statement that fails.
        result.map_err(|error| {
            let sql = error.path.as_deref().and_then(|path| {
                let name = path.file_name()?.to_str()?;
                prepared.iter().find(|m| format!("{m}.sql") == name)?.sql()
            });
            match (error.line, sql) {
                (None, Some(sql)) => match self.failing_line(sql) {
                    Some(line) => error.at_line(line),
                    None => error,
                },
                _ => error,
            }
        })
    }

    /// `VACUUM (ANALYZE)` of the schema's tables: a table loaded a moment ago has no statistics
    /// (autovacuum has not run), and the batches and checks would be planned for empty tables;
    /// nor is any of its pages marked all-visible, so every index-only scan (the counts of a
    /// counter-cache backfill, its checks and its verification) would visit the heap for each
    /// row it finds, where a production table that autovacuum keeps does not. The vacuum itself
    /// costs about what the `ANALYZE` does on fixture-sized tables. The system catalogs are
    /// left alone: vacuuming them costs more than the fixtures.
    fn analyze(&mut self) -> Result<()> {
        let tables: Option<String> = self
            .client
            .query_one(
                "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.relname)
                 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'm')",
                &[],
            )
            .map_err(|e| pg_error(e, ErrorKind::Database))?
            .get(0);
        match tables {
            Some(tables) => self
                .client
                .batch_execute(&format!("VACUUM (ANALYZE) {tables}"))
                .map_err(|e| pg_error(e, ErrorKind::Database)),
            None => Ok(()),
        }
    }

    /// Drops the validated foreign keys of `tables` (plain tables of the current schema, keys
    /// declared on them, not inherited) and returns their `ADD CONSTRAINT` with the server's own
    /// definition (`pg_get_constraintdef`): adding one back validates every row in one pass,
    /// with the server's own check and error. Keys declared `NOT VALID` stay in place: added
    /// back, they would check no row, where in place they check every inserted one. Drops
    /// their secondary indexes too, returning their `CREATE INDEX` (`pg_get_indexdef`): a
    /// unique one that a fixture row breaks fails there, and the load runs again with
    /// everything in place, which names the row. And gives the tables without a fill factor of
    /// their own [`LOAD_FILLFACTOR`] for the load, reset afterwards.
    fn suspend_for_load(&mut self, tables: &[String]) -> Result<Vec<String>> {
        let sql = "SELECT t.relname::text, c.conname::text, pg_get_constraintdef(c.oid)
                   FROM pg_constraint AS c
                   JOIN pg_class AS t ON t.oid = c.conrelid
                   JOIN pg_namespace AS n ON n.oid = t.relnamespace
                   WHERE c.contype = 'f' AND c.convalidated AND c.conparentid = 0
                     AND c.coninhcount = 0 AND t.relkind = 'r'
                     AND n.nspname = current_schema() AND t.relname = ANY($1)
                   ORDER BY 1, 2";
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        let rows = self
            .client
            .query(sql, &[&names])
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        let mut drop = String::new();
        let mut restore = Vec::with_capacity(rows.len());
        for row in &rows {
            let (table, name, definition): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            drop.push_str(&format!(
                "ALTER TABLE {} DROP CONSTRAINT {};",
                quote_ident(&table),
                quote_ident(&name)
            ));
            restore.push(format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {definition}",
                quote_ident(&table),
                quote_ident(&name)
            ));
        }
        // The secondary indexes of the tables, built again in one sort each once the rows are
        // in, rather than updated row by row (with a primary key and one such index, a `COPY`
        // took 0.6x as long). Indexes behind a constraint (a key a foreign key may reference,
        // an exclusion) stay, as do a partition's part of a partitioned index (it cannot be
        // dropped alone), and those with a comment or marked for `CLUSTER` or replica
        // identity, which a rebuilt index would not be.
        let sql = "SELECT pg_get_indexdef(i.indexrelid), quote_ident(x.relname)
                   FROM pg_index AS i
                   JOIN pg_class AS x ON x.oid = i.indexrelid
                   JOIN pg_class AS t ON t.oid = i.indrelid
                   JOIN pg_namespace AS n ON n.oid = x.relnamespace
                   WHERE t.relkind = 'r' AND x.relkind = 'i' AND i.indisvalid
                     AND NOT i.indisclustered AND NOT i.indisreplident
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
                     AND NOT EXISTS (SELECT 1 FROM pg_inherits AS h WHERE h.inhrelid = i.indexrelid)
                     AND NOT EXISTS (SELECT 1 FROM pg_description AS d
                                     WHERE d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass)
                     AND n.nspname = current_schema() AND t.relname = ANY($1)
                   ORDER BY x.relname";
        let rows = self
            .client
            .query(sql, &[&names])
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        for row in &rows {
            let (definition, name): (String, String) = (row.get(0), row.get(1));
            drop.push_str(&format!("DROP INDEX {name};"));
            restore.push(definition);
        }
        // Half of each page left free while the rows go in, so that a backfill updating a
        // column no index covers keeps each row's new version on its page (a HOT update: no
        // index entry to add, half the time of an update that moves the row). The setting goes
        // again once the rows are in; the pages keep their room. Tables whose schema sets a
        // fill factor keep theirs.
        let sql = "SELECT quote_ident(t.relname)
                   FROM pg_class AS t
                   JOIN pg_namespace AS n ON n.oid = t.relnamespace
                   WHERE t.relkind = 'r' AND n.nspname = current_schema() AND t.relname = ANY($1)
                     AND NOT EXISTS (SELECT 1 FROM unnest(t.reloptions) AS o WHERE o LIKE 'fillfactor=%')
                   ORDER BY 1";
        let rows = self
            .client
            .query(sql, &[&names])
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        for row in &rows {
            let table: String = row.get(0);
            drop.push_str(&format!(
                "ALTER TABLE {table} SET (fillfactor = {LOAD_FILLFACTOR});"
            ));
            restore.push(format!("ALTER TABLE {table} RESET (fillfactor)"));
        }
        if !drop.is_empty() {
            self.client
                .batch_execute(&drop)
                .map_err(|e| pg_error(e, ErrorKind::Database))?;
        }
        Ok(restore)
    }

    fn foreign_keys(&mut self) -> Result<Vec<(String, String)>> {
        let sql = "SELECT child.relname::text, parent.relname::text
                   FROM pg_constraint AS c
                   JOIN pg_class AS child ON child.oid = c.conrelid
                   JOIN pg_class AS parent ON parent.oid = c.confrelid
                   JOIN pg_namespace AS n ON n.oid = child.relnamespace
                   WHERE c.contype = 'f' AND n.nspname = current_schema()
                   ORDER BY 1, 2";
        let rows = self
            .client
            .query(sql, &[])
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[Column],
        rows: &[Vec<SqlValue>],
    ) -> std::result::Result<(), (Option<usize>, Error)> {
        // COPY first: one round trip for the whole table, where an INSERT per row costs one per
        // row. It runs in a savepoint of the caller's transaction; when it fails (or there is no
        // transaction to hold a savepoint), the rows are inserted one by one, which names the
        // row the database refuses and its error.
        if self
            .client
            .batch_execute("SAVEPOINT xtask_fixtures")
            .is_ok()
        {
            match copy_rows(&mut self.client, table, columns, rows) {
                Ok(()) => {
                    self.client
                        .batch_execute("RELEASE SAVEPOINT xtask_fixtures")
                        .map_err(|e| (None, statement_error(e)))?;
                    return Ok(());
                }
                Err(_) => {
                    self.client
                        .batch_execute(
                            "ROLLBACK TO SAVEPOINT xtask_fixtures; RELEASE SAVEPOINT xtask_fixtures",
                        )
                        .map_err(|e| (None, statement_error(e)))?;
                }
            }
        }
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        // Every value travels as text and is cast to the column's own type by the server, so
        // any type PostgreSQL can read from text (uuid, json, enums) loads from a fixture.
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(${} AS {})", i + 1, c.declared))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(table),
            names.join(", "),
            values.join(", ")
        );
        let types = vec![Type::TEXT; columns.len()];
        let stmt = self
            .client
            .prepare_typed(&sql, &types)
            .map_err(|e| (None, statement_error(e)))?;
        for (i, row) in rows.iter().enumerate() {
            let texts: Vec<Option<String>> = row.iter().map(text_value).collect();
            let params: Vec<&(dyn ToSql + Sync)> =
                texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
            self.client
                .execute(&stmt, &params)
                .map_err(|e| (Some(i), statement_error(e)))?;
        }
        Ok(())
    }
}

/// `COPY table (columns) FROM STDIN` of `rows` in COPY's text format: every value is read by
/// its column type's input function, as `CAST(text AS type)` would.
fn copy_rows(
    client: &mut Client,
    table: &str,
    columns: &[Column],
    rows: &[Vec<SqlValue>],
) -> std::result::Result<(), postgres::Error> {
    use std::io::Write;
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "COPY {} ({}) FROM STDIN",
        quote_ident(table),
        names.join(", ")
    );
    let mut writer = client.copy_in(&sql)?;
    let mut buffer = String::new();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                buffer.push('\t');
            }
            match text_value(value) {
                None => buffer.push_str("\\N"),
                Some(text) => copy_escape(&text, &mut buffer),
            }
        }
        buffer.push('\n');
        if buffer.len() >= 64 * 1024 {
            // A write error ends the COPY; `finish` reports the server's reason.
            if writer.write_all(buffer.as_bytes()).is_err() {
                break;
            }
            buffer.clear();
        }
    }
    let _ = writer.write_all(buffer.as_bytes());
    writer.finish().map(|_| ())
}

/// A value escaped for COPY's text format: backslash, tab, newline and carriage return.
fn copy_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

/// Why a `postgres://` URL whose host part holds an `@` cannot mean what its author meant: the
/// driver ends the user info at the first `@`, so a password with an unencoded `@`
/// (`app:p@ss@db`) leaves the rest of the password in the host name, and connecting fails with
/// an address lookup error for a host that does not exist. The message quotes no part of the
/// URL: what precedes the last `@` is, or contains, the password.
pub fn unencoded_at(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let after_userinfo = &rest[rest.find('@')? + 1..];
    let host = &after_userinfo[..after_userinfo
        .find(['/', '?'])
        .unwrap_or(after_userinfo.len())];
    host.contains('@').then(|| {
        "the database URL has more than one `@` before its host: the password (or user name) \
         likely contains `@`, which a URL must percent-encode: write each `@` in it as `%40` \
         (postgres://USER:PASS%40WORD@HOST/DB)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_sqlite_s() {
        let number = |text: &str, ty: &Type| match cell(Some(text), ty) {
            Cell::Number(n) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(number("10.50", &Type::NUMERIC), "10.5");
        assert_eq!(number("10.00", &Type::NUMERIC), "10");
        assert_eq!(number("-0.00", &Type::NUMERIC), "0");
        assert_eq!(number("1070", &Type::NUMERIC), "1070");
        assert_eq!(number("NaN", &Type::NUMERIC), "NaN");
        assert_eq!(number("1e+20", &Type::FLOAT8), "100000000000000000000");
        assert_eq!(number("0.1", &Type::FLOAT8), "0.1");
        assert_eq!(number("-Infinity", &Type::FLOAT8), "-Infinity");
        assert_eq!(number("0.1", &Type::FLOAT4), "0.1");
        assert_eq!(number("-42", &Type::INT8), "-42");
        assert_eq!(
            cell(Some("2024-02-29 12:05:00.5+00"), &Type::TIMESTAMPTZ),
            Cell::Text("2024-02-29 12:05:00.5".into())
        );
        assert_eq!(cell(Some("t"), &Type::BOOL), Cell::Bool(true));
        assert_eq!(cell(None, &Type::BOOL), Cell::Null);
    }

    #[test]
    fn keys_as_literals_need_no_escaping() {
        assert_eq!(literal(&KeyValue::Int(i64::MIN)), "'-9223372036854775808'");
        assert_eq!(literal(&KeyValue::Text("it's".into())), "$k$it's$k$");
        assert_eq!(literal(&KeyValue::Text("a$k$b".into())), "$kk$a$k$b$kk$");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/prod"),
            "postgres://app:***@db.example:5432/prod"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss@db/prod"),
            "postgres://app:***@db/prod"
        );
        assert_eq!(
            redact_url("postgres://app@db/prod"),
            "postgres://app@db/prod"
        );
        assert_eq!(
            redact_url("postgres://db/prod?user=x"),
            "postgres://db/prod?user=x"
        );
        assert_eq!(
            redact_url("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact_url("postgres://db/prod?user=x&password=y"),
            "postgres://db/prod?user=x&password=***"
        );
    }

    #[test]
    fn an_unencoded_at_in_the_password_is_named_without_the_password() {
        for url in [
            "postgres://app:p@ss@db/prod",
            "postgresql://app:p@ss@db",
            "postgres://app:h@ck@r!@db:6432/prod?sslmode=require",
        ] {
            let message = unencoded_at(url).unwrap_or_else(|| panic!("{url}"));
            assert!(message.contains("`%40`"), "{message}");
            for part in ["p@ss", "ss@", "h@ck", "ck@r", "r!@", "app:"] {
                assert!(!message.contains(part), "{part} in {message}");
            }
            let e = connect(url).err().unwrap();
            assert_eq!(e.message, message);
            assert!(!e.is_transient(), "retrying cannot help");
        }
        for url in [
            "postgres://app:p%40ss@db/prod",
            "postgres://app@db/prod",
            "postgres://db/prod?user=a@b",
            "postgres://app:pa/ss@db/prod",
            "host=db password=p@ss@x",
        ] {
            assert_eq!(unencoded_at(url), None, "{url}");
        }
    }
}
