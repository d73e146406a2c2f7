//! The served table: one write connection (SQLite has one writer at a
//! time anyway) and a few read connections, all in WAL mode and all from
//! the workspace's `rusqlite`, the SQLite library the replicator uses.
//!
//! Column names come from the table's own schema (`PRAGMA table_info`),
//! never from a request: a request's keys are checked against them and
//! values are always bound parameters.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};

type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value as Json};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A row as JSON: column name → value.
pub type Row = Map<String, Json>;

/// What a request asked for that the table cannot do (answered 4xx).
#[derive(Debug)]
pub enum Refused {
    /// A key that is not a column, or a body that is not an object.
    BadRequest(String),
    /// A constraint (NOT NULL, UNIQUE, CHECK, ...) refused the change.
    Conflict(String),
}

/// Either a refusal or a failure of the database.
#[derive(Debug)]
pub enum StoreError {
    Refused(Refused),
    Failed(anyhow::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                StoreError::Refused(Refused::Conflict(e.to_string()))
            }
            _ => StoreError::Failed(e.into()),
        }
    }
}

#[derive(Debug)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    /// The table's name, and quoted as an SQL identifier.
    name: String,
    table: String,
    /// The INTEGER PRIMARY KEY column, quoted.
    key: String,
    columns: Vec<String>,
}

/// `name` as a double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Store {
    /// Opens (creating when missing) the database and the table.
    pub fn open(path: &Path, table: &str, readers: usize) -> Result<Store> {
        // The name is a URL path segment: letters, digits and `_`.
        if table.is_empty()
            || table.starts_with("sqlite_")
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!(
                "--table {table:?}: not a table that can be served (letters, digits and _ only; not sqlite_*)"
            );
        }
        let writer = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
        configure(&writer).with_context(|| format!("configure {}", path.display()))?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .with_context(|| format!("{}: set WAL mode", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{}: journal mode is {mode}, not wal (replication needs WAL mode)",
                path.display()
            );
        }
        writer
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    value TEXT,
                    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ'))
                )",
                ident(table)
            ))
            .with_context(|| format!("{}: create table {table}", path.display()))?;
        let (key, columns) =
            schema(&writer, table).with_context(|| format!("{}: table {table}", path.display()))?;
        let mut pool = Vec::new();
        for _ in 0..readers.max(1) {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("open {} for reading", path.display()))?;
            configure(&c)?;
            pool.push(Arc::new(Mutex::new(c)));
        }
        Ok(Store {
            writer: Arc::new(Mutex::new(writer)),
            readers: pool,
            next_reader: AtomicUsize::new(0),
            name: table.to_string(),
            table: ident(table),
            key: ident(&key),
            columns,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The write connection, once the writes before are done.
    pub async fn writer(&self) -> OwnedMutexGuard<Connection> {
        self.writer.clone().lock_owned().await
    }

    /// A read connection (round robin).
    pub async fn reader(&self) -> OwnedMutexGuard<Connection> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].clone().lock_owned().await
    }

    pub fn list(&self, c: &Connection, limit: u32, offset: i64) -> Result<Vec<Row>, StoreError> {
        let sql = format!(
            "SELECT * FROM {} ORDER BY {} LIMIT ?1 OFFSET ?2",
            self.table, self.key
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params![limit, offset], to_json)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn get(&self, c: &Connection, id: i64) -> Result<Option<Row>, StoreError> {
        let sql = format!("SELECT * FROM {} WHERE {} = ?1", self.table, self.key);
        let mut stmt = c.prepare_cached(&sql)?;
        let mut rows = stmt.query_map([id], to_json)?;
        Ok(rows.next().transpose()?)
    }

    pub fn insert(&self, c: &Connection, body: &Json) -> Result<Row, StoreError> {
        let fields = self.fields(body)?;
        let sql = if fields.is_empty() {
            format!("INSERT INTO {} DEFAULT VALUES RETURNING *", self.table)
        } else {
            let names: Vec<String> = fields.iter().map(|(n, _)| ident(n)).collect();
            let marks: Vec<String> = (1..=fields.len()).map(|i| format!("?{i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({}) RETURNING *",
                self.table,
                names.join(", "),
                marks.join(", ")
            )
        };
        let mut stmt = c.prepare_cached(&sql)?;
        let params: Vec<&Value> = fields.iter().map(|(_, v)| v).collect();
        let row = stmt.query_row(rusqlite::params_from_iter(params), to_json)?;
        Ok(row)
    }

    pub fn update(&self, c: &Connection, id: i64, body: &Json) -> Result<Option<Row>, StoreError> {
        let fields = self.fields(body)?;
        if fields.is_empty() {
            return Err(StoreError::Refused(Refused::BadRequest(
                "nothing to update: the body names no column".into(),
            )));
        }
        let sets: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{} = ?{}", ident(n), i + 1))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = ?{} RETURNING *",
            self.table,
            sets.join(", "),
            self.key,
            fields.len() + 1
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let mut params: Vec<Value> = fields.into_iter().map(|(_, v)| v).collect();
        params.push(Value::Integer(id));
        let mut rows = stmt.query_map(rusqlite::params_from_iter(params), to_json)?;
        Ok(rows.next().transpose()?)
    }

    pub fn delete(&self, c: &Connection, id: i64) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE {} = ?1", self.table, self.key);
        Ok(c.prepare_cached(&sql)?.execute([id])? > 0)
    }

    /// A request body's columns and values, checked against the table.
    fn fields(&self, body: &Json) -> Result<Vec<(String, Value)>, StoreError> {
        let Json::Object(map) = body else {
            return Err(StoreError::Refused(Refused::BadRequest(
                "the body must be a JSON object of column values".into(),
            )));
        };
        map.iter()
            .map(|(k, v)| {
                if !self.columns.iter().any(|c| c == k) {
                    return Err(StoreError::Refused(Refused::BadRequest(format!(
                        "{k:?} is not a column of the table (columns: {})",
                        self.columns.join(", ")
                    ))));
                }
                Ok((k.clone(), to_sql(v)))
            })
            .collect()
    }
}

fn configure(c: &Connection) -> Result<()> {
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    // NORMAL is durable across application crashes in WAL mode; the
    // replica covers the machine.
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// The table's INTEGER PRIMARY KEY column and all its columns.
fn schema(c: &Connection, table: &str) -> Result<(String, Vec<String>)> {
    let mut stmt = c.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
    let cols: Vec<(String, String, i64)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if cols.is_empty() {
        bail!("no such table");
    }
    let pks: Vec<&(String, String, i64)> = cols.iter().filter(|c| c.2 > 0).collect();
    match pks.as_slice() {
        [(name, ty, _)] if ty.eq_ignore_ascii_case("INTEGER") => {
            Ok((name.clone(), cols.iter().map(|c| c.0.clone()).collect()))
        }
        _ => bail!("has no INTEGER PRIMARY KEY column; its rows are addressed by one"),
    }
}

fn to_sql(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        // Nested JSON is stored as its text (SQLite's JSON functions read it).
        other => Value::Text(other.to_string()),
    }
}

fn to_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let stmt = r.as_ref();
    let mut m = Map::new();
    for i in 0..stmt.column_count() {
        let v = match r.get_ref(i)? {
            ValueRef::Null => Json::Null,
            ValueRef::Integer(i) => Json::from(i),
            ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
            ValueRef::Text(t) => Json::String(String::from_utf8_lossy(t).into_owned()),
            // Blobs as lowercase hex (the REST interface is JSON).
            ValueRef::Blob(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        };
        m.insert(stmt.column_name(i)?.to_string(), v);
    }
    Ok(m)
}
