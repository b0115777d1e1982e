//! Named parameters in a configured query: `:username`, `:hash`,
//! `:subject`. sqlx binds by position, so the query is rewritten once, at
//! load, with the driver's placeholders (`$1` for PostgreSQL, `?` for MySQL
//! and SQLite), and the values are always bound, never spliced.
//!
//! A parameter is `:` and a name, outside quotes and comments; `::` (a
//! PostgreSQL cast) is not one.

use crate::credentials::SqlDriver;

/// One piece of a query: text, or a parameter's name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'q> {
    Text(&'q str),
    Param(&'q str),
}

fn pieces(query: &str) -> Result<Vec<Piece<'_>>, String> {
    let b = query.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut text) = (0, 0);
    while i < b.len() {
        match b[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    // A backslash escape (MySQL) or a doubled quote (SQL)
                    // stays inside the string.
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err("the query has an unclosed quote".into());
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = query[i + 2..].find("*/").ok_or("the query has an unclosed comment")?;
                i += end + 4;
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                out.push(Piece::Text(&query[text..i]));
                out.push(Piece::Param(&query[start..end]));
                i = end;
                text = end;
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Text(&query[text..]));
    Ok(out)
}

/// The parameters `query` names, in order (a name may repeat).
pub fn parameters(query: &str) -> Result<Vec<String>, String> {
    Ok(pieces(query)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Param(name) => Some(name.to_owned()),
            Piece::Text(_) => None,
        })
        .collect())
}

/// `query` with the driver's positional placeholders, and the parameter
/// bound at each position.
pub fn positional(query: &str, driver: SqlDriver) -> Result<(String, Vec<String>), String> {
    let mut sql = String::with_capacity(query.len());
    let mut order = Vec::new();
    for piece in pieces(query)? {
        match piece {
            Piece::Text(t) => sql.push_str(t),
            Piece::Param(name) => {
                order.push(name.to_owned());
                match driver {
                    SqlDriver::Postgres => sql.push_str(&format!("${}", order.len())),
                    SqlDriver::MySql | SqlDriver::Sqlite => sql.push('?'),
                }
            }
        }
    }
    Ok((sql, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_found_outside_quotes_comments_and_casts() {
        let q = "SELECT id::text AS subject, password AS hash FROM users -- :not\n\
                 WHERE login = :username AND note <> ':nope' AND /* :no */ lower(email) = lower(:username)";
        assert_eq!(parameters(q).unwrap(), ["username", "username"]);
        let (pg, order) = positional(q, SqlDriver::Postgres).unwrap();
        assert!(pg.contains("login = $1") && pg.contains("lower($2)") && pg.contains("id::text"), "{pg}");
        assert!(pg.contains("':nope'") && pg.contains("-- :not"), "{pg}");
        assert_eq!(order, ["username", "username"]);
        let (my, _) = positional("UPDATE u SET h = :hash WHERE id = :subject", SqlDriver::MySql).unwrap();
        assert_eq!(my, "UPDATE u SET h = ? WHERE id = ?");
        assert_eq!(parameters("SELECT 'it''s :x' FROM t WHERE a = :username").unwrap(), ["username"]);
        assert!(parameters("SELECT 'open FROM t").is_err());
    }
}
