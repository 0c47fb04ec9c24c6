//! SQLite: the views that read a table (found by name, also through other views) and the
//! user's indexes, read from `sqlite_master`.

use super::*;

pub(super) async fn sqlite_capture(tx: &mut Tx, objects: &mut UserObjects) -> Result<(), DbError> {
    let context = || DbError::sql("reading the user's objects on the table");
    let table = objects.table.table.clone();
    let indexes = tx
        .fetch(
            "SELECT m.name, m.sql, (SELECT json_group_array(ii.name) FROM pragma_index_info(m.name) ii \
             WHERE ii.name IS NOT NULL) FROM sqlite_master m \
             WHERE m.type = 'index' AND m.tbl_name = ? AND m.sql IS NOT NULL ORDER BY m.rowid",
            &[Arg::Text(Some(table.clone()))],
            &[Kind::Text, Kind::Text, Kind::Text],
        )
        .await
        .map_err(context())?;
    objects.indexes = indexes
        .iter()
        .filter_map(|row| {
            Some(Index {
                name: row[0].text()?,
                create: row[1].text()?,
                columns: serde_json::from_str(&row[2].text().unwrap_or_default())
                    .unwrap_or_default(),
                comment: None,
            })
        })
        .collect();
    let views = tx
        .fetch(
            "SELECT name, sql FROM sqlite_master WHERE type = 'view' AND sql IS NOT NULL ORDER BY rowid",
            &[],
            &[Kind::Text, Kind::Text],
        )
        .await
        .map_err(context())?;
    let views: Vec<(String, String)> = views
        .iter()
        .filter_map(|r| Some((r[0].text()?, r[1].text()?)))
        .collect();
    let d = Dialect::Sqlite;
    objects.views = sqlite_dependents(&table, &views)
        .into_iter()
        .map(|(name, sql)| View {
            drop: format!("DROP VIEW IF EXISTS {}", d.quote_ident(&name)),
            restore: Restore {
                object: format!("view {}", d.quote_ident(&name)),
                columns: Vec::new(),
                statements: vec![sql],
                check: Some(format!("SELECT * FROM {} LIMIT 0", d.quote_ident(&name))),
            },
        })
        .collect();
    Ok(())
}

/// The views (name, SQL) among `views` that read `table`, directly or through other views,
/// parents first. SQLite keeps no dependencies: a view depends on a name it mentions as a
/// whole word (a false match only recreates a view as it was).
fn sqlite_dependents(table: &str, views: &[(String, String)]) -> Vec<(String, String)> {
    // The longest chain of mentions from the table to each view: its creation order.
    let mut depth: Vec<Option<usize>> = vec![None; views.len()];
    let mut frontier = vec![table.to_owned()];
    for level in 1..=views.len() {
        let mut next = Vec::new();
        for (i, (name, sql)) in views.iter().enumerate() {
            if frontier
                .iter()
                .any(|f| mentions(sql, f) && !f.eq_ignore_ascii_case(name))
            {
                depth[i] = Some(level);
                next.push(name.clone());
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    let mut found: Vec<(usize, usize)> = depth
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|d| (d, i)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, i)| views[i].clone()).collect()
}

/// Whether `sql` mentions `name` as a whole word, ignoring ASCII case.
fn mentions(sql: &str, name: &str) -> bool {
    let (sql, name) = (sql.to_ascii_lowercase(), name.to_ascii_lowercase());
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
    sql.match_indices(&name).any(|(i, m)| {
        !word(sql[..i].chars().next_back()) && !word(sql[i + m.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn sqlite_views_are_found_through_other_views_parents_first() {
        let all = views(&[
            ("w", "CREATE VIEW w AS SELECT count(*) FROM \"v\""),
            (
                "other",
                "CREATE VIEW other AS SELECT * FROM canvas__courses_extra",
            ),
            (
                "v",
                "CREATE VIEW v AS SELECT id FROM [Canvas__Courses] WHERE id > 1",
            ),
            ("x", "CREATE VIEW x AS SELECT * FROM w JOIN v USING (n)"),
        ]);
        let names: Vec<String> = sqlite_dependents("canvas__courses", &all)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["v", "w", "x"]);
    }

    #[test]
    fn whole_words_only() {
        assert!(mentions("select * from \"t\"", "t"));
        assert!(mentions("SELECT * FROM main.T", "t"));
        assert!(!mentions("select * from t_extra", "t"));
        assert!(!mentions("select total from x", "t"));
    }
}
