//! Names and type names as the neutral view spells them.
//!
//! SQLite compares identifiers without regard to ASCII case whether or not they are quoted
//! (`"Users"` and `users` are the same table), so every identifier is ASCII-lower-cased, quoted or
//! not: that is "normalized the way the database compares them" for this dialect.

use sqlparser::ast::{DataType, Ident, ObjectName, ObjectNamePart};

use crate::sql::{Name, TypeName};

pub(super) fn ident(i: &Ident) -> String {
    i.value.to_ascii_lowercase()
}

fn part(p: &ObjectNamePart) -> String {
    match p {
        ObjectNamePart::Identifier(i) => ident(i),
        ObjectNamePart::Function(f) => f.to_string().to_ascii_lowercase(),
    }
}

/// `main.users` is `{ schema: main, name: users }`; SQLite names have at most two parts.
pub(super) fn object_name(n: &ObjectName) -> Name {
    let parts = &n.0;
    match parts.len() {
        0 => Name::new(""),
        1 => Name::new(part(&parts[0])),
        len => Name::qualified(part(&parts[len - 2]), part(&parts[len - 1])),
    }
}

/// The type as written, lower-cased, split into name and modifiers. SQLite takes any sequence
/// of names as a type (`UNSIGNED BIG INT`) and none at all: that is an empty name.
pub(super) fn type_name(t: &DataType) -> TypeName {
    if matches!(t, DataType::Unspecified) {
        return TypeName::new("");
    }
    let written = t.to_string().to_lowercase();
    let (mut head, array) = match written.strip_suffix("[]") {
        Some(head) => (head.to_string(), true),
        None => (written.clone(), false),
    };
    let mut modifiers = Vec::new();
    if let (Some(open), Some(close)) = (head.find('('), head.rfind(')'))
        && open < close
    {
        modifiers = head[open + 1..close]
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        // `timestamp(3) with time zone`: the words after the modifiers belong to the name.
        head = format!("{} {}", head[..open].trim(), head[close + 1..].trim());
    }
    let name = head
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '`'))
        .collect::<Vec<_>>()
        .join(" ");
    let name = match name.as_str() {
        "character varying" | "char varying" => "varchar".to_string(),
        "timestamp with time zone" => "timestamptz".to_string(),
        "timestamp without time zone" => "timestamp".to_string(),
        "time with time zone" => "timetz".to_string(),
        "time without time zone" => "time".to_string(),
        "bit varying" => "varbit".to_string(),
        _ => name,
    };
    TypeName {
        name,
        modifiers,
        array,
    }
}
