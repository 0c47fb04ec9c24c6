//! MySQL/MariaDB: the user's indexes, read from `information_schema` and rendered again for
//! the staging table.

use super::*;

/// The user's indexes on a MySQL table (all but `PRIMARY`, the only one dapsync creates).
pub(super) async fn mysql_indexes(db: &Db, names: &TableNames) -> Result<Vec<MysqlIndex>, DbError> {
    let rows = db
        .fetch(
            "SELECT CAST(index_name AS CHAR), CAST(non_unique AS SIGNED), CAST(column_name AS CHAR), \
             CAST(sub_part AS SIGNED), CAST(index_type AS CHAR), CAST(collation AS CHAR), CAST(index_comment AS CHAR) \
             FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? \
             AND index_name <> 'PRIMARY' ORDER BY index_name, seq_in_index",
            &[Arg::Text(Some(names.table.clone()))],
            &[
                Kind::Text,
                Kind::Int,
                Kind::Text,
                Kind::Int,
                Kind::Text,
                Kind::Text,
                Kind::Text,
            ],
            "reading the table's indexes",
        )
        .await?;
    let mut parts: Vec<MysqlIndex> = Vec::new();
    for row in &rows {
        let Some(name) = row[0].text() else { continue };
        if parts.last().is_none_or(|p| p.name != name) {
            parts.push(MysqlIndex {
                name,
                unique: row[1].int() == Some(0),
                kind: row[4].text().unwrap_or_default(),
                comment: row[6].text().filter(|c| !c.is_empty()),
                columns: Vec::new(),
            });
        }
        let index = parts.last_mut().expect("just pushed");
        index.columns.push(MysqlKeyPart {
            // A functional key part (MySQL 8) has no column: kept as `None`, never recreated.
            column: row[2].text(),
            prefix: row[3].int(),
            descending: row[5].text().as_deref() == Some("D"),
        });
    }
    Ok(parts)
}

#[derive(Debug)]
pub(super) struct MysqlIndex {
    pub(super) name: String,
    unique: bool,
    /// `BTREE`, `FULLTEXT`, `SPATIAL`, `HASH`.
    kind: String,
    comment: Option<String>,
    columns: Vec<MysqlKeyPart>,
}

#[derive(Debug)]
struct MysqlKeyPart {
    column: Option<String>,
    prefix: Option<i64>,
    descending: bool,
}

impl MysqlIndex {
    /// The columns of its key parts.
    pub(super) fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter_map(|p| p.column.clone())
            .collect()
    }

    /// `CREATE ... INDEX` on `target`; `None` with a functional key part (not kept).
    pub(super) fn create(&self, target: &TableNames) -> Option<String> {
        let d = Dialect::Mysql;
        let mut parts = Vec::new();
        for part in &self.columns {
            let mut text = d.quote_ident(part.column.as_ref()?);
            if let Some(prefix) = part.prefix {
                text.push_str(&format!("({prefix})"));
            }
            if part.descending {
                text.push_str(" DESC");
            }
            parts.push(text);
        }
        let kind = match self.kind.as_str() {
            "FULLTEXT" => "FULLTEXT ",
            "SPATIAL" => "SPATIAL ",
            _ if self.unique => "UNIQUE ",
            _ => "",
        };
        let mut create = format!(
            "CREATE {kind}INDEX {} ON {} ({})",
            d.quote_ident(&self.name),
            target.qualified(),
            parts.join(", ")
        );
        if let Some(comment) = &self.comment {
            create.push_str(&format!(" COMMENT {}", d.quote_literal(comment)));
        }
        Some(create)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_indexes_render_every_key_part() {
        let index = MysqlIndex {
            name: "ix`a".into(),
            unique: true,
            kind: "BTREE".into(),
            comment: Some("it's".into()),
            columns: vec![
                MysqlKeyPart {
                    column: Some("name".into()),
                    prefix: Some(10),
                    descending: false,
                },
                MysqlKeyPart {
                    column: Some("id".into()),
                    prefix: None,
                    descending: true,
                },
            ],
        };
        let staging = TableNames::staging(Dialect::Mysql, "canvas", "courses");
        assert_eq!(
            index.create(&staging).unwrap(),
            "CREATE UNIQUE INDEX `ix``a` ON `canvas__courses__dapsync_new` (`name`(10), `id` DESC) COMMENT 'it''s'"
        );
        assert_eq!(index.column_names(), ["name", "id"]);
        let fulltext = MysqlIndex {
            kind: "FULLTEXT".into(),
            unique: false,
            comment: None,
            columns: vec![MysqlKeyPart {
                column: None,
                prefix: None,
                descending: false,
            }],
            ..index
        };
        assert!(fulltext.create(&staging).is_none());
    }
}
