//! The source's catalog, as far as a capture needs it: the tables of one schema, their columns
//! and keys, and the foreign keys between them. Each source reads it from its own catalog
//! (`pg_catalog`, SQLite's pragmas), in the capture's snapshot; the selection only sees this.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    pub name: String,
    /// `format_type`: what a text value is cast to (`bigint`, `character varying(20)`).
    pub type_name: String,
    /// Strings, network addresses and JSON: what personal data is stored as.
    pub text_like: bool,
    pub not_null: bool,
    /// A generated column is computed again where the fixtures load: never captured.
    pub generated: bool,
    /// Integer-valued (`smallint`, `integer`, `bigint`; SQLite's INTEGER affinity): as a key
    /// column it orders as a number.
    pub integer: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTable {
    pub name: String,
    pub columns: Vec<CatalogColumn>,
    /// Indices into `columns`: the primary key, or, for a table without one, the columns of a
    /// unique index over NOT NULL columns ([`unique_key()`]); empty when it has neither.
    pub primary_key: Vec<usize>,
    /// The unique index `primary_key` comes from, when the table has no primary key.
    pub unique_index: Option<String>,
}

impl CatalogTable {
    pub fn column(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn key_columns(&self) -> Vec<&CatalogColumn> {
        self.primary_key.iter().map(|&i| &self.columns[i]).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    pub name: String,
    pub child: String,
    pub child_columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub schema: String,
    pub tables: BTreeMap<String, CatalogTable>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&CatalogTable> {
        self.tables.get(name)
    }

    /// The schema-qualified, quoted name of `table`.
    pub fn qualified(&self, table: &str) -> String {
        format!(
            "{}.{}",
            crate::backfill::db::quote_ident(&self.schema),
            crate::backfill::db::quote_ident(table)
        )
    }

    /// The foreign keys going out of `table`.
    pub fn outgoing(&self, table: &str) -> Vec<&ForeignKey> {
        self.foreign_keys
            .iter()
            .filter(|fk| fk.child == table)
            .collect()
    }
}

/// The key of a table without a primary key: among its unique indexes whose columns are all NOT
/// NULL (`(name, column indices)`; partial and expression indexes already left out), the one
/// with the fewest columns, then the first by name, so every capture picks the same one. Such an
/// index identifies a row as a primary key would.
pub fn unique_key(
    columns: &[CatalogColumn],
    candidates: Vec<(String, Vec<usize>)>,
) -> Option<(String, Vec<usize>)> {
    candidates
        .into_iter()
        .filter(|(_, cols)| !cols.is_empty() && cols.iter().all(|&i| columns[i].not_null))
        .min_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.0.cmp(&b.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, not_null: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            type_name: "text".into(),
            text_like: true,
            not_null,
            generated: false,
            integer: false,
        }
    }

    #[test]
    fn a_unique_index_over_not_null_columns_stands_in_for_a_primary_key() {
        let columns = [column("a", true), column("b", true), column("c", false)];
        let pick = |c: Vec<(&str, Vec<usize>)>| {
            unique_key(
                &columns,
                c.into_iter().map(|(n, i)| (n.to_string(), i)).collect(),
            )
        };
        // Fewest columns first, then by name; a nullable column disqualifies an index.
        assert_eq!(
            pick(vec![
                ("z_ab", vec![0, 1]),
                ("y_c", vec![2]),
                ("x_b", vec![1]),
                ("w_a", vec![0])
            ]),
            Some(("w_a".to_string(), vec![0]))
        );
        assert_eq!(pick(vec![("only_c", vec![2])]), None);
        assert_eq!(pick(vec![]), None);
    }
}
