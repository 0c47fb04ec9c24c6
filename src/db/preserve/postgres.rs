//! PostgreSQL: the user's objects read from the catalogs (dependent views with their options,
//! owners, grants and comments; indexes; comments), and the statements that create them again.

use super::*;

/// The dependent views of table `t` (a CTE of one bind argument: the table's oid), with the
/// longest path from the table to each (`depth`): creating views by increasing depth creates
/// every view after the views it reads.
const PG_DEPENDENTS: &str = "WITH RECURSIVE t AS (SELECT CAST(? AS bigint)::oid AS oid), \
    deps(oid, depth) AS ( \
        SELECT r.ev_class, 1 FROM t JOIN pg_depend d ON d.refobjid = t.oid \
        JOIN pg_rewrite r ON r.oid = d.objid \
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> t.oid \
        UNION \
        SELECT r.ev_class, deps.depth + 1 FROM deps JOIN pg_depend d ON d.refobjid = deps.oid \
        JOIN pg_rewrite r ON r.oid = d.objid \
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
        AND r.ev_class <> deps.oid AND deps.depth < 100), \
    views AS (SELECT deps.oid, max(deps.depth) AS depth FROM deps JOIN pg_class c ON c.oid = deps.oid \
        WHERE c.relkind IN ('v', 'm') GROUP BY deps.oid), \
    rels AS (SELECT oid FROM t UNION SELECT oid FROM views) ";

pub(super) async fn pg_capture(
    tx: &mut Tx,
    objects: &mut UserObjects,
    old: Option<&TableSchema>,
) -> Result<(), DbError> {
    let context = || DbError::sql("reading the user's objects on the table");
    let table = objects.table.clone();
    let found = tx
        .fetch(
            "SELECT c.oid::bigint, obj_description(c.oid, 'pg_class') FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ? AND c.relname = ? AND c.relkind = 'r'",
            &[
                Arg::Text(table.schema.clone()),
                Arg::Text(Some(table.table.clone())),
            ],
            &[Kind::Int, Kind::Text],
        )
        .await
        .map_err(context())?;
    let Some(row) = found.first() else {
        return Ok(());
    };
    let (Some(table_oid), comment) = (row[0].int(), row[1].text()) else {
        return Ok(());
    };
    let table_oid = Some(table_oid);
    let oid = [Arg::Int(table_oid)];
    use Kind::{Int, Text};
    let views = pg_fetch(
        tx,
        &oid,
        "SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid), \
         pg_get_userbyid(c.relowner)::text, array_to_string(c.reloptions, ', '), obj_description(c.oid, 'pg_class'), \
         CASE WHEN c.relispopulated THEN 1 ELSE 0 END::bigint \
         FROM views v JOIN pg_class c ON c.oid = v.oid JOIN pg_namespace n ON n.oid = c.relnamespace \
         ORDER BY v.depth, c.oid",
        &[Int, Text, Text, Text, Text, Text, Text, Text, Int],
    )
    .await?;
    let grants = pg_fetch(
        tx,
        &oid,
        "SELECT c.oid::bigint, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, \
         a.privilege_type::text, CASE WHEN a.is_grantable THEN 1 ELSE 0 END::bigint \
         FROM rels JOIN pg_class c ON c.oid = rels.oid CROSS JOIN LATERAL aclexplode(c.relacl) a \
         WHERE a.grantee <> c.relowner ORDER BY 1, 2, 4, 3",
        &[Int, Text, Text, Int],
    )
    .await?;
    let column_comments = pg_fetch(
        tx,
        &oid,
        "SELECT d.objoid::bigint, a.attname::text, d.description FROM rels \
         JOIN pg_description d ON d.objoid = rels.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid > 0 \
         JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid ORDER BY 1, d.objsubid",
        &[Int, Text, Text],
    )
    .await?;
    // Indexes of the table and of materialized views, but the primary key and indexes that
    // belong to a constraint; with the columns each refers to (also in expressions, predicates).
    let indexes = pg_fetch(
        tx,
        &oid,
        "SELECT i.indrelid::bigint, ic.relname::text, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class'), \
         (SELECT COALESCE(json_agg(a.attname::text ORDER BY a.attnum), '[]')::text FROM pg_depend d \
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
          WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.refobjid = i.indrelid AND d.refobjsubid > 0) \
         FROM rels JOIN pg_index i ON i.indrelid = rels.oid JOIN pg_class ic ON ic.oid = i.indexrelid \
         WHERE NOT i.indisprimary \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) \
         ORDER BY 1, i.indexrelid",
        &[Int, Text, Text, Text, Text],
    )
    .await?;

    let catalog = PgCatalog {
        grants,
        column_comments,
        indexes,
    };
    objects.table_extras = catalog.table_extras(&table, table_oid, comment, old);
    objects.indexes = catalog
        .indexes
        .iter()
        .filter(|r| r[0].int() == table_oid)
        .filter_map(|r| pg_index(r, table.schema.as_deref()))
        .collect();
    objects.views = views.iter().filter_map(|r| catalog.view(r)).collect();
    Ok(())
}

/// What [`pg_capture`] read of the table and its dependent views, by relation oid (the first
/// column of each row).
#[derive(Debug)]
struct PgCatalog {
    /// oid, grantee (NULL for PUBLIC), privilege, grantable.
    grants: Vec<Vec<Val>>,
    /// oid, column, comment.
    column_comments: Vec<Vec<Val>>,
    /// oid, name, definition, comment, columns (a JSON array).
    indexes: Vec<Vec<Val>>,
}

impl PgCatalog {
    /// Grants on the table to other roles, then the user's comments on it and its columns:
    /// those that differ from what dapsync wrote for `old` (all of them when `old` is unknown).
    fn table_extras(
        &self,
        table: &TableNames,
        oid: Option<i64>,
        comment: Option<String>,
        old: Option<&TableSchema>,
    ) -> Vec<Restore> {
        let d = Dialect::Postgres;
        let qualified = table.qualified();
        let mut out = pg_grants(&self.grants, oid, &qualified);
        let generated = |column: Option<&str>| -> Option<String> {
            let old = old?;
            match column {
                None => old.comment.clone(),
                Some(physical) => old
                    .columns
                    .iter()
                    .find(|c| table.column(&c.name) == physical)
                    .and_then(|c| c.comment.clone()),
            }
        };
        if let Some(comment) = comment.filter(|c| Some(c) != generated(None).as_ref()) {
            out.push(Restore {
                object: format!("comment on table {qualified}"),
                columns: Vec::new(),
                check: None,
                statements: vec![format!(
                    "COMMENT ON TABLE {qualified} IS {}",
                    d.quote_literal(&comment)
                )],
            });
        }
        for row in self.column_comments.iter().filter(|r| r[0].int() == oid) {
            let (Some(column), Some(comment)) = (row[1].text(), row[2].text()) else {
                continue;
            };
            if Some(&comment) == generated(Some(&column)).as_ref() {
                continue;
            }
            let quoted = d.quote_ident(&column);
            out.push(Restore {
                object: format!("comment on column {qualified}.{quoted}"),
                columns: vec![column],
                check: None,
                statements: vec![format!(
                    "COMMENT ON COLUMN {qualified}.{quoted} IS {}",
                    d.quote_literal(&comment)
                )],
            });
        }
        out
    }

    /// A dependent view from its row (oid, schema, name, relkind, definition, owner, options,
    /// comment, populated), with what recreates its comments, grants, indexes and owner.
    fn view(&self, row: &[Val]) -> Option<View> {
        let d = Dialect::Postgres;
        let (oid, schema) = (row[0].int(), row[1].text()?);
        let spec = PgView {
            name: qualify(Some(&schema), &row[2].text()?),
            materialized: row[3].text()? == "m",
            definition: row[4].text()?,
            options: row[6].text().filter(|o| !o.is_empty()),
            populated: row[8].int() != Some(0),
        };
        let mut statements = vec![spec.create()];
        if let Some(comment) = row[7].text() {
            statements.push(format!(
                "COMMENT ON {} {} IS {}",
                spec.keyword(),
                spec.name,
                d.quote_literal(&comment)
            ));
        }
        for comment in self.column_comments.iter().filter(|r| r[0].int() == oid) {
            let (Some(column), Some(text)) = (comment[1].text(), comment[2].text()) else {
                continue;
            };
            statements.push(format!(
                "COMMENT ON COLUMN {}.{} IS {}",
                spec.name,
                d.quote_ident(&column),
                d.quote_literal(&text)
            ));
        }
        for grant in pg_grants(&self.grants, oid, &spec.name) {
            statements.extend(grant.statements);
        }
        for index in self.indexes.iter().filter(|r| r[0].int() == oid) {
            if let Some(index) = pg_index(index, Some(&schema)) {
                statements.push(index.create);
                statements.extend(index.comment);
            }
        }
        // Last: once the owner is someone else, dapsync may no longer grant or comment.
        if let Some(owner) = row[5].text() {
            statements.push(format!(
                "ALTER {} {} OWNER TO {}",
                spec.keyword(),
                spec.name,
                d.quote_ident(&owner)
            ));
        }
        Some(View {
            drop: format!("DROP {} IF EXISTS {}", spec.keyword(), spec.name),
            restore: Restore {
                object: format!("{} {}", spec.kind(), spec.name),
                columns: Vec::new(),
                statements,
                check: None,
            },
        })
    }
}

/// An index from its row in [`PgCatalog::indexes`]; it lives in `schema`, that of its table
/// or materialized view.
fn pg_index(row: &[Val], schema: Option<&str>) -> Option<Index> {
    let name = row[1].text()?;
    Some(Index {
        comment: row[3].text().map(|c| {
            format!(
                "COMMENT ON INDEX {} IS {}",
                qualify(schema, &name),
                Dialect::Postgres.quote_literal(&c)
            )
        }),
        create: row[2].text()?,
        columns: serde_json::from_str(&row[4].text().unwrap_or_default()).unwrap_or_default(),
        name,
    })
}

/// Runs `select` after [`PG_DEPENDENTS`] for the table `oid`.
async fn pg_fetch(
    tx: &mut Tx,
    oid: &[Arg],
    select: &str,
    kinds: &[Kind],
) -> Result<Vec<Vec<Val>>, DbError> {
    tx.fetch(&format!("{PG_DEPENDENTS}{select}"), oid, kinds)
        .await
        .map_err(DbError::sql("reading the user's objects on the table"))
}

/// `"schema"."name"` (or `"name"`), quoted for PostgreSQL.
fn qualify(schema: Option<&str>, name: &str) -> String {
    let d = Dialect::Postgres;
    match schema {
        Some(schema) => format!("{}.{}", d.quote_ident(schema), d.quote_ident(name)),
        None => d.quote_ident(name),
    }
}

/// A dependent view as PostgreSQL describes it.
#[derive(Debug)]
struct PgView {
    /// Quoted and qualified.
    name: String,
    materialized: bool,
    /// `pg_get_viewdef`: the query, as PostgreSQL prints it.
    definition: String,
    /// `reloptions`, `key=value, ...` (`security_barrier=true`, `check_option=local`).
    options: Option<String>,
    /// A materialized view holding data (not created `WITH NO DATA`).
    populated: bool,
}

impl PgView {
    fn keyword(&self) -> &'static str {
        if self.materialized {
            "MATERIALIZED VIEW"
        } else {
            "VIEW"
        }
    }

    fn kind(&self) -> &'static str {
        if self.materialized {
            "materialized view"
        } else {
            "view"
        }
    }

    /// `CREATE [MATERIALIZED] VIEW`. A materialized view that held data is created `WITH DATA`:
    /// its query runs once over the new copy, inside the swap's transaction.
    fn create(&self) -> String {
        let query = self.definition.trim().trim_end_matches(';').trim_end();
        let options = self
            .options
            .as_ref()
            .map(|o| format!(" WITH ({o})"))
            .unwrap_or_default();
        let mut sql = format!(
            "CREATE {} {}{options} AS\n{query}",
            self.keyword(),
            self.name
        );
        if self.materialized {
            sql.push_str(if self.populated {
                "\nWITH DATA"
            } else {
                "\nWITH NO DATA"
            });
        }
        sql
    }
}

/// `GRANT` statements for the rows of `grants` (oid, grantee or NULL for PUBLIC, privilege,
/// grantable) of relation `oid`, named `name`: one per grantee and grant option. A privilege
/// that is not a plain keyword is left out.
fn pg_grants(grants: &[Vec<Val>], oid: Option<i64>, name: &str) -> Vec<Restore> {
    let d = Dialect::Postgres;
    let mut out: Vec<(Option<String>, bool, Vec<String>)> = Vec::new();
    for row in grants.iter().filter(|r| r[0].int() == oid) {
        let (grantee, grantable) = (row[1].text(), row[3].int() == Some(1));
        let Some(privilege) = row[2]
            .text()
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c == ' '))
        else {
            continue;
        };
        match out
            .iter_mut()
            .find(|(g, o, _)| *g == grantee && *o == grantable)
        {
            Some((_, _, privileges)) => privileges.push(privilege),
            None => out.push((grantee, grantable, vec![privilege])),
        }
    }
    out.into_iter()
        .map(|(grantee, grantable, privileges)| {
            let to = grantee.map_or_else(|| "PUBLIC".to_owned(), |g| d.quote_ident(&g));
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            Restore {
                object: format!("grant on {name} to {to}"),
                columns: Vec::new(),
                check: None,
                statements: vec![format!(
                    "GRANT {} ON {name} TO {to}{option}",
                    privileges.join(", ")
                )],
            }
        })
        .collect()
}

/// The table's name as `pg_get_indexdef` prints it (PostgreSQL's own quoting: only where
/// needed).
pub(super) fn pg_qualified(names: &TableNames) -> String {
    let schema = names.schema.as_deref().unwrap_or("public");
    format!(
        "{}.{}",
        pg_quote_if_needed(schema),
        pg_quote_if_needed(&names.table)
    )
}

/// PostgreSQL's `quote_ident`: quotes unless the name is a lowercase identifier. (Keywords are
/// quoted by PostgreSQL too; such a table name makes [`pg_retarget_index`] find no match, and
/// the index is then created after the swap instead.)
fn pg_quote_if_needed(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        Dialect::Postgres.quote_ident(name)
    }
}

/// `create` (`pg_get_indexdef` of index `name` on `table`) rewritten to build the index as
/// `temporary` on `target`; `None` if it does not read as `CREATE [UNIQUE] INDEX <name> ON
/// <table> USING ...`.
pub(super) fn pg_retarget_index(
    create: &str,
    name: &str,
    table: &str,
    temporary: &str,
    target: &str,
) -> Option<String> {
    let (unique, rest) = match create.strip_prefix("CREATE UNIQUE INDEX ") {
        Some(rest) => ("UNIQUE ", rest),
        None => ("", create.strip_prefix("CREATE INDEX ")?),
    };
    let rest = rest
        .strip_prefix(&pg_quote_if_needed(name))?
        .strip_prefix(" ON ")?
        .strip_prefix(table)?;
    rest.starts_with(" USING ").then(|| {
        format!(
            "CREATE {unique}INDEX {} ON {target}{rest}",
            Dialect::Postgres.quote_ident(temporary)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_views_render_with_options_and_data() {
        let view = PgView {
            name: r#""public"."v""#.into(),
            materialized: false,
            definition: " SELECT t.id\n   FROM canvas.t;".into(),
            options: Some("security_barrier=true".into()),
            populated: true,
        };
        assert_eq!(
            view.create(),
            "CREATE VIEW \"public\".\"v\" WITH (security_barrier=true) AS\nSELECT t.id\n   FROM canvas.t"
        );
        let matview = PgView {
            materialized: true,
            options: None,
            ..view
        };
        assert!(
            matview
                .create()
                .starts_with("CREATE MATERIALIZED VIEW \"public\".\"v\" AS\n")
        );
        assert!(matview.create().ends_with("\nWITH DATA"));
    }

    #[test]
    fn pg_grants_group_by_grantee() {
        let row = |grantee: Option<&str>, privilege: &str, grantable: i64| {
            vec![
                Val::Int(7),
                grantee.map_or(Val::Null, |g| Val::Text(g.into())),
                Val::Text(privilege.into()),
                Val::Int(grantable),
            ]
        };
        let rows = vec![
            row(Some("reporting"), "SELECT", 0),
            row(Some("reporting"), "UPDATE", 0),
            row(Some("a\"b"), "SELECT", 1),
            row(None, "SELECT", 0),
            row(Some("x"), "SELECT; DROP", 0),
        ];
        let sql: Vec<String> = pg_grants(&rows, Some(7), "\"ns\".\"t\"")
            .into_iter()
            .flat_map(|r| r.statements)
            .collect();
        assert_eq!(
            sql,
            [
                r#"GRANT SELECT, UPDATE ON "ns"."t" TO "reporting""#,
                r#"GRANT SELECT ON "ns"."t" TO "a""b" WITH GRANT OPTION"#,
                r#"GRANT SELECT ON "ns"."t" TO PUBLIC"#,
            ]
        );
        assert!(pg_grants(&rows, Some(8), "t").is_empty());
    }

    #[test]
    fn pg_index_definitions_are_retargeted() {
        let names = TableNames::live(Dialect::Postgres, "canvas", "courses");
        let table = pg_qualified(&names);
        assert_eq!(table, "canvas.courses");
        assert_eq!(
            pg_retarget_index(
                "CREATE INDEX ix_name ON canvas.courses USING btree (lower((name)::text)) WHERE (id > 0)",
                "ix_name",
                &table,
                "dapsync_keep_0",
                r#""canvas"."courses__dapsync_new""#
            )
            .unwrap(),
            r#"CREATE INDEX "dapsync_keep_0" ON "canvas"."courses__dapsync_new" USING btree (lower((name)::text)) WHERE (id > 0)"#
        );
        assert_eq!(
            pg_retarget_index(
                r#"CREATE UNIQUE INDEX "Ix" ON canvas.courses USING btree (uuid)"#,
                "Ix",
                &table,
                "k",
                "s"
            )
            .unwrap(),
            r#"CREATE UNIQUE INDEX "k" ON s USING btree (uuid)"#
        );
        assert_eq!(
            pg_retarget_index(
                "CREATE INDEX ix ON canvas.other USING btree (a)",
                "ix",
                &table,
                "k",
                "s"
            ),
            None
        );
        let odd = TableNames::live(Dialect::Postgres, "Canvas", "my table");
        assert_eq!(pg_qualified(&odd), r#""Canvas"."my table""#);
    }
}
