//! Reading the look-up's first row by column name, whatever types the
//! table uses: `hash` (text, or bytes that are UTF-8), `subject` (text or
//! any integer), `disabled` (a boolean, any integer, or text such as
//! `"true"`, `"0"`, `"yes"`). Each driver turns a value into a [`Cell`] by
//! trying the Rust types it can decode, in order; sqlx checks each type
//! against the column's before decoding, so an odd value is an error here,
//! never a panic.

use super::Row;
use sqlx::{Column, Row as _, TypeInfo};

/// One value as the database sent it, whatever its SQL type.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cell {
    Null,
    Text(String),
    Int(i128),
    Bool(bool),
    Bytes(Vec<u8>),
    /// A type this module does not read, by its SQL name.
    Other(String),
}

/// The columns of a row that matter, read out of the driver's row.
#[derive(Debug)]
pub(super) struct Fetched {
    /// Every column's name, for the log of a query that lacks `hash`.
    pub columns: Vec<String>,
    pub hash: Option<Cell>,
    pub subject: Option<Cell>,
    pub disabled: Option<Cell>,
}

/// Why a row cannot become a [`Row`]: the table or the query does not fit.
/// The login then fails as an unknown user's would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Unfit {
    /// No column is named `hash` (the names found, no values).
    NoHashColumn(Vec<String>),
    /// The `hash` is NULL or empty: this user has no password here.
    NoHash,
    /// A column's value has a type (or text) that cannot be read.
    Unreadable { column: &'static str, found: String },
}

impl Unfit {
    /// Which kind, for logging each kind once per manager.
    pub(super) fn bit(&self) -> u8 {
        match self {
            Unfit::NoHashColumn(_) => 1,
            Unfit::NoHash => 2,
            Unfit::Unreadable { column: "hash", .. } => 4,
            Unfit::Unreadable { column: "subject", .. } => 8,
            Unfit::Unreadable { .. } => 16,
        }
    }
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::NoHashColumn(columns) => {
                write!(f, "the query returns no column named `hash` (its columns: {columns:?}); name it with `AS hash`")
            }
            Unfit::NoHash => f.write_str("a row's `hash` is NULL or empty: that user cannot log in"),
            Unfit::Unreadable { column, found } => write!(f, "the `{column}` column cannot be read: {found}"),
        }
    }
}

impl Fetched {
    /// Picks the three columns out of `row` by name (exactly, else ignoring
    /// ASCII case: MySQL keeps an alias's case, PostgreSQL folds it), each
    /// read with `cell`.
    pub(super) fn from_row<R>(row: &R, cell: fn(&R, usize) -> Cell) -> Fetched
    where
        R: sqlx::Row,
    {
        let columns: Vec<String> = row.columns().iter().map(|c| c.name().to_owned()).collect();
        let index = |want: &str| {
            columns.iter().position(|n| n == want).or_else(|| columns.iter().position(|n| n.eq_ignore_ascii_case(want)))
        };
        let read = |want: &str| index(want).map(|i| cell(row, i));
        let (hash, subject, disabled) = (read("hash"), read("subject"), read("disabled"));
        Fetched { columns, hash, subject, disabled }
    }

    /// The row, or why it does not fit.
    pub(super) fn into_row(self) -> Result<Row, Unfit> {
        let hash = match self.hash {
            None => return Err(Unfit::NoHashColumn(self.columns)),
            Some(cell) => hash(cell)?,
        };
        let subject = match self.subject {
            None => None,
            Some(cell) => subject(cell)?,
        };
        let disabled = match self.disabled {
            None => false,
            Some(cell) => disabled(cell)?,
        };
        Ok(Row { subject, hash, disabled })
    }
}

fn unreadable(column: &'static str, found: impl Into<String>) -> Unfit {
    Unfit::Unreadable { column, found: found.into() }
}

fn hash(cell: Cell) -> Result<String, Unfit> {
    let text = match cell {
        Cell::Null => return Err(Unfit::NoHash),
        Cell::Text(t) => t,
        Cell::Bytes(b) => String::from_utf8(b).map_err(|_| unreadable("hash", "bytes that are not UTF-8"))?,
        Cell::Int(_) | Cell::Bool(_) => return Err(unreadable("hash", "a number, not text")),
        Cell::Other(ty) => return Err(unreadable("hash", format!("type {ty}, not text"))),
    };
    // CHAR(n) pads with spaces; no hash format has any.
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Unfit::NoHash);
    }
    Ok(if trimmed.len() == text.len() { text } else { trimmed.to_owned() })
}

fn subject(cell: Cell) -> Result<Option<String>, Unfit> {
    let text = match cell {
        Cell::Null => return Ok(None),
        Cell::Int(i) => return Ok(Some(i.to_string())),
        Cell::Text(t) => t,
        Cell::Bytes(b) => String::from_utf8(b).map_err(|_| unreadable("subject", "bytes that are not UTF-8"))?,
        Cell::Bool(_) => return Err(unreadable("subject", "a boolean")),
        Cell::Other(ty) => return Err(unreadable("subject", format!("type {ty}, not text or an integer"))),
    };
    // An empty subject is refused rather than replaced by the username,
    // which may be another account's subject.
    if text.is_empty() {
        return Err(unreadable("subject", "an empty string"));
    }
    Ok(Some(text))
}

fn disabled(cell: Cell) -> Result<bool, Unfit> {
    let text = match cell {
        Cell::Null => return Ok(false),
        Cell::Bool(b) => return Ok(b),
        Cell::Int(i) => return Ok(i != 0),
        Cell::Text(t) => t,
        Cell::Bytes(b) => String::from_utf8(b).map_err(|_| unreadable("disabled", "bytes that are not UTF-8"))?,
        Cell::Other(ty) => return Err(unreadable("disabled", format!("type {ty}, not a boolean or an integer"))),
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "f" | "0" | "no" | "n" | "off" | "" => Ok(false),
        // Not shown: the value is the table's, not the query's.
        _ => Err(unreadable("disabled", "text that is not true/false, t/f, 1/0, yes/no, y/n or on/off")),
    }
}

/// Tries each `$ty` (as `Option<$ty>`, so that NULL decodes at the first)
/// and wraps the first that decodes; else the SQL type's name.
macro_rules! first_decoding {
    ($row:expr, $i:expr; $($ty:ty => $wrap:expr),+ $(,)?) => {{
        let (row, i) = ($row, $i);
        'found: {
            $(
                if let Ok(value) = row.try_get::<Option<$ty>, usize>(i) {
                    break 'found value.map($wrap).unwrap_or(Cell::Null);
                }
            )+
            Cell::Other(row.columns()[i].type_info().name().to_owned())
        }
    }};
}

/// A PostgreSQL value: `boolean`, `bigint`/`integer`/`smallint`/`"char"`,
/// `text`/`varchar`/`char(n)`/`name`/`citext`, `bytea`.
pub(super) fn postgres(row: &sqlx::postgres::PgRow, i: usize) -> Cell {
    first_decoding!(row, i;
        bool => Cell::Bool,
        i64 => |v| Cell::Int(v.into()),
        i32 => |v| Cell::Int(v.into()),
        i16 => |v| Cell::Int(v.into()),
        i8 => |v| Cell::Int(v.into()),
        String => Cell::Text,
        Vec<u8> => Cell::Bytes,
    )
}

/// A MySQL or MariaDB value: any integer, signed (`i64` reads them all) or
/// unsigned, `BIT`, text, and binary strings and blobs.
pub(super) fn mysql(row: &sqlx::mysql::MySqlRow, i: usize) -> Cell {
    first_decoding!(row, i;
        i64 => |v| Cell::Int(v.into()),
        u64 => |v| Cell::Int(v.into()),
        bool => Cell::Bool,
        String => Cell::Text,
        Vec<u8> => Cell::Bytes,
    )
}

/// A SQLite value, by its storage class: INTEGER, TEXT, BLOB (a declared
/// BOOLEAN is an integer).
pub(super) fn sqlite(row: &sqlx::sqlite::SqliteRow, i: usize) -> Cell {
    first_decoding!(row, i;
        i64 => |v| Cell::Int(v.into()),
        bool => Cell::Bool,
        String => Cell::Text,
        Vec<u8> => Cell::Bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(hash: Option<Cell>, subject: Option<Cell>, disabled: Option<Cell>) -> Fetched {
        Fetched { columns: vec!["a".into(), "b".into()], hash, subject, disabled }
    }

    #[test]
    fn cells_become_a_row_whatever_their_types() {
        let text = |s: &str| Some(Cell::Text(s.into()));
        let row = fetched(text("$2b$04$x  "), Some(Cell::Int(42)), Some(Cell::Int(0))).into_row().unwrap();
        assert_eq!(row, Row { subject: Some("42".into()), hash: "$2b$04$x".into(), disabled: false });
        let row = fetched(Some(Cell::Bytes(b"h".to_vec())), Some(Cell::Null), Some(Cell::Bool(true))).into_row();
        assert_eq!(row.unwrap(), Row { subject: None, hash: "h".into(), disabled: true });
        let row = fetched(text("h"), None, None).into_row().unwrap();
        assert_eq!((row.subject, row.disabled), (None, false), "absent columns: no subject, enabled");
        for (value, want) in [("true", true), ("T", true), ("1", true), ("yes", true), ("Y", true), ("on", true)]
            .into_iter()
            .chain([("false", false), ("f", false), ("0", false), ("No", false), ("n", false), ("off", false)])
        {
            assert_eq!(fetched(text("h"), None, text(value)).into_row().unwrap().disabled, want, "{value}");
        }
        assert!(fetched(text("h"), None, Some(Cell::Int(-1))).into_row().unwrap().disabled, "non-zero");
        assert!(!fetched(text("h"), None, Some(Cell::Null)).into_row().unwrap().disabled, "NULL: enabled");
    }

    #[test]
    fn what_does_not_fit_is_named_without_values() {
        let no_hash = Fetched { columns: vec!["password".into()], hash: None, subject: None, disabled: None };
        let e = no_hash.into_row().unwrap_err();
        assert_eq!(e, Unfit::NoHashColumn(vec!["password".into()]));
        assert!(e.to_string().contains("\"password\"") && e.to_string().contains("AS hash"), "{e}");
        for hash in [Cell::Null, Cell::Text("  ".into())] {
            assert_eq!(fetched(Some(hash), None, None).into_row().unwrap_err(), Unfit::NoHash);
        }
        let bad = [
            fetched(Some(Cell::Bytes(vec![0xff, 0xfe])), None, None),
            fetched(Some(Cell::Int(7)), None, None),
            fetched(Some(Cell::Other("NUMERIC".into())), None, None),
            fetched(Some(Cell::Text("h".into())), Some(Cell::Bool(true)), None),
            fetched(Some(Cell::Text("h".into())), Some(Cell::Text(String::new())), None),
            fetched(Some(Cell::Text("h".into())), Some(Cell::Other("UUID".into())), None),
            fetched(Some(Cell::Text("h".into())), None, Some(Cell::Text("secret-ish".into()))),
            fetched(Some(Cell::Text("h".into())), None, Some(Cell::Other("FLOAT8".into()))),
        ];
        for f in bad {
            let e = f.into_row().unwrap_err();
            assert!(matches!(e, Unfit::Unreadable { .. }), "{e:?}");
            assert!(!e.to_string().contains("secret-ish"), "{e}");
        }
    }
}
