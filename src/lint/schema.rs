//! What the migrations linted so far have built: tables and their columns' types.
//!
//! Only what rules need: whether a type change is binary-coercible depends on the column's
//! current type, which an earlier migration declared.

use std::collections::HashMap;

use crate::sql::{AlterAction, Name, ParsedFile, StmtKind, TypeName};

#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Table name (unqualified) -> column name -> type.
    tables: HashMap<String, HashMap<String, TypeName>>,
}

impl Schema {
    /// The declared type of `table.column`, if an earlier migration declared it.
    pub fn column_type(&self, table: &Name, column: &str) -> Option<&TypeName> {
        self.tables.get(&table.name)?.get(column)
    }

    pub fn has_table(&self, table: &Name) -> bool {
        self.tables.contains_key(&table.name)
    }

    /// Records what a file's statements build.
    pub fn apply(&mut self, parsed: &ParsedFile) {
        for stmt in &parsed.statements {
            match &stmt.kind {
                StmtKind::CreateTable { table, columns, .. } => {
                    let cols = columns
                        .iter()
                        .map(|c| (c.name.clone(), c.data_type.clone()))
                        .collect();
                    self.tables.insert(table.name.clone(), cols);
                }
                StmtKind::SelectInto { table, .. } => {
                    self.tables.entry(table.name.clone()).or_default();
                }
                StmtKind::DropTable { tables } => {
                    for table in tables {
                        self.tables.remove(&table.name);
                    }
                }
                StmtKind::AlterTable { table, actions } => {
                    for action in actions {
                        self.apply_action(table, action);
                    }
                }
                _ => {}
            }
        }
    }

    fn apply_action(&mut self, table: &Name, action: &AlterAction) {
        match action {
            AlterAction::AddColumn { column } => {
                self.tables
                    .entry(table.name.clone())
                    .or_default()
                    .insert(column.name.clone(), column.data_type.clone());
            }
            AlterAction::AlterColumnType {
                column, data_type, ..
            } => {
                self.tables
                    .entry(table.name.clone())
                    .or_default()
                    .insert(column.clone(), data_type.clone());
            }
            AlterAction::DropColumn { column } => {
                if let Some(cols) = self.tables.get_mut(&table.name) {
                    cols.remove(column);
                }
            }
            AlterAction::RenameColumn { from, to } => {
                if let Some(cols) = self.tables.get_mut(&table.name)
                    && let Some(ty) = cols.remove(from)
                {
                    cols.insert(to.clone(), ty);
                }
            }
            AlterAction::RenameTable { new_name } => {
                if let Some(cols) = self.tables.remove(&table.name) {
                    self.tables.insert(new_name.name.clone(), cols);
                }
            }
            _ => {}
        }
    }
}
