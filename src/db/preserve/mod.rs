//! Keeping the user's objects on a replicated table when dapsync replaces or rebuilds it.
//!
//! Analysts put views on replicated tables, grant them to reporting roles, add indexes and
//! comments. A snapshot swap drops the old copy (and so does SQLite's in-place rebuild), and
//! PostgreSQL refuses to drop a table or change a column type that a view uses. So the objects
//! are read from the catalogs first and recreated on the new copy, in the same transaction where
//! the database allows it:
//!
//! | object | PostgreSQL | MySQL / MariaDB | SQLite |
//! |---|---|---|---|
//! | views (and views over them) | dropped before, recreated after, with owner, grants, comments | follow the name | dropped before, recreated after |
//! | materialized views | the same, created `WITH DATA`, with their indexes | - | - |
//! | grants to other roles | granted again | follow the name | - |
//! | indexes the user created | built on the staging table, renamed after | built on the staging table before the rename | created again |
//! | comments | the user's kept (see below) | - | - |
//!
//! Comments: dapsync writes the schema's descriptions as comments on a new table. A comment on the
//! old copy that differs from what dapsync wrote for the old schema is the user's, and is kept.
//!
//! A user object that cannot be recreated never costs the data: each statement runs under a
//! savepoint, a failure undoes only that statement, the swap commits, and the object is recorded
//! as an [`ObjectWarning`] in the run's row (`runs.warnings`). An object whose columns are gone
//! from the new table is skipped the same way.
//!
//! Hooks (each a call or two where a table is replaced or altered):
//! - PostgreSQL and SQLite snapshot swap, in the swap's transaction: [`before_swap`] before the
//!   swap statements, [`after_swap`] after them.
//! - MySQL snapshot swap (also when a crashed swap is finished): [`Db::copy_user_indexes`]
//!   before the `RENAME TABLE`.
//! - In-place ALTERs: [`Db::alter_preserving`] instead of [`Db::apply_statements`].
//! - The run history: [`Db::run_warnings`] reads a run's warnings; [`parse_warnings`] reads
//!   the column.

use std::collections::HashSet;

use super::query::{Arg, Kind, Tx, Val};
use super::{Db, DbError};
use crate::run::ObjectWarning;
use crate::schema::TableSchema;
use crate::sql::{Dialect, Statement, TableNames};

mod mysql;
mod postgres;
mod sqlite;

use mysql::mysql_indexes;
use postgres::{pg_capture, pg_qualified, pg_retarget_index};
use sqlite::sqlite_capture;

/// The user's objects on a live table, read before dapsync replaces or alters it.
#[derive(Debug)]
pub(crate) struct UserObjects {
    /// The live table (the same names before and after a swap).
    table: TableNames,
    /// Views that depend on the table, directly or through other views: parents first.
    views: Vec<View>,
    /// Indexes the user created on the table.
    indexes: Vec<Index>,
    /// PostgreSQL: grants to other roles and the user's comments on the table and its columns.
    table_extras: Vec<Restore>,
    /// PostgreSQL swap: indexes already built on the staging table under a temporary name
    /// (index into `indexes`, temporary name), renamed once the staging table is live.
    staged: Vec<(usize, String)>,
    warnings: Vec<ObjectWarning>,
}

/// A view to drop before the table changes and create again after.
#[derive(Debug)]
struct View {
    /// `DROP VIEW` / `DROP MATERIALIZED VIEW`.
    drop: String,
    /// Creates the view, then its comments, grants, indexes and owner.
    restore: Restore,
}

/// An index the user created.
#[derive(Debug)]
struct Index {
    /// Unquoted.
    name: String,
    /// `CREATE INDEX` text as the database gives it (on the live table's name).
    create: String,
    /// The columns of the table it refers to.
    columns: Vec<String>,
    /// PostgreSQL: `COMMENT ON INDEX`, if it has a comment.
    comment: Option<String>,
}

/// Statements that recreate one object: the first creates it; the others (comments, grants,
/// owner) run only when it was created, each on its own.
#[derive(Debug, Clone, PartialEq)]
struct Restore {
    object: String,
    /// Columns of the new table the object needs: when one is missing it is skipped.
    columns: Vec<String>,
    statements: Vec<String>,
    /// A query that must compile once the object is created, or its creation is undone
    /// (SQLite does not check a view's names when it creates it, and one view it cannot
    /// resolve makes every later `ALTER TABLE ... RENAME` in the database fail).
    check: Option<String>,
}

/// The savepoint every restoring statement runs under.
const SAVEPOINT: &str = "dapsync_keep";

/// Reads the user's objects on `live` and drops its dependent views, in the transaction that
/// is about to replace `live` by `staging` (PostgreSQL and SQLite). `old` is the schema `live`
/// was created with, if known (it tells the user's comments from dapsync's). On PostgreSQL the
/// user's indexes are also built on `staging` now, while the old copy still serves reads.
///
/// Hook: the start of the snapshot swap. Pair with [`after_swap`].
pub(crate) async fn before_swap(
    tx: &mut Tx,
    live: &TableNames,
    staging: &TableNames,
    old: Option<&TableSchema>,
) -> Result<UserObjects, DbError> {
    let mut objects = capture(tx, live, old).await?;
    if objects.is_empty() {
        return Ok(objects);
    }
    if tx.dialect() == Dialect::Postgres {
        objects.stage_indexes(tx, staging).await?;
    }
    objects.drop_views(tx).await?;
    Ok(objects)
}

/// Recreates on the new live table what [`before_swap`] read, in the swap's transaction, and
/// records what could not be kept against run `run_id`.
///
/// Hook: the end of the snapshot swap, before the run is recorded and committed.
pub(crate) async fn after_swap(
    tx: &mut Tx,
    mut objects: UserObjects,
    run_id: i64,
) -> Result<(), DbError> {
    if objects.is_empty() {
        return Ok(());
    }
    objects.rename_staged(tx).await?;
    objects.restore_extras(tx).await?;
    objects.restore_missing_indexes(tx).await?;
    objects.restore_views(tx).await?;
    record_warnings(tx, run_id, &objects.table, &objects.warnings).await
}

impl Db {
    /// Runs in-place ALTER statements on `live` (see [`Db::apply_statements`]) so that the
    /// user's views survive them, and records what could not be kept against run `run_id`.
    ///
    /// - PostgreSQL refuses to change the type of (or drop) a column a view uses: a group of
    ///   statements that fails so is run again, in the same transaction, between dropping the
    ///   dependent views and creating them again with their owner, grants and comments. An index
    ///   the change dropped with its column is reported.
    /// - SQLite rebuilds a table in place by dropping it (and its indexes; renaming fails while a
    ///   view refers to the dropped name): views are dropped before and created after, indexes
    ///   created again, in the one transaction.
    /// - MySQL resolves views by name and keeps indexes across `ALTER TABLE`: nothing to do.
    ///
    /// Hook: `Engine::evolve`.
    pub async fn alter_preserving(
        &self,
        live: &TableNames,
        statements: &[Statement],
        run_id: i64,
        context: &str,
    ) -> Result<(), DbError> {
        match self.dialect() {
            Dialect::Mysql => self.apply_statements(statements, context).await,
            Dialect::Sqlite => {
                let _writer = self.sqlite_guard().await;
                let group: Vec<&Statement> = statements.iter().collect();
                self.alter_group(live, &group, run_id, context).await
            }
            Dialect::Postgres => {
                // As `apply_statements`: a statement that must commit on its own does.
                let mut group: Vec<&Statement> = Vec::new();
                for statement in statements {
                    if statement.own_transaction {
                        self.alter_group(live, &group, run_id, context).await?;
                        group.clear();
                        self.execute_one(&statement.sql, context).await?;
                    } else {
                        group.push(statement);
                    }
                }
                self.alter_group(live, &group, run_id, context).await
            }
        }
    }

    /// One transaction of [`Db::alter_preserving`] (PostgreSQL, SQLite).
    async fn alter_group(
        &self,
        live: &TableNames,
        group: &[&Statement],
        run_id: i64,
        context: &str,
    ) -> Result<(), DbError> {
        if group.is_empty() {
            return Ok(());
        }
        let failed = |(source, sql): (sqlx::Error, String)| DbError::Sql {
            context: format!("{context}: {}", super::first_line(&sql)),
            source,
        };
        let mut tx = self.begin().await?;
        let mut objects = capture(&mut tx, live, None).await?;
        let dropped = match tx.dialect() {
            Dialect::Sqlite => {
                objects.drop_views(&mut tx).await?;
                run_group(&mut tx, group).await.map_err(failed)?;
                true
            }
            _ if objects.views.is_empty() => {
                run_group(&mut tx, group).await.map_err(failed)?;
                false
            }
            _ => {
                savepoint(&mut tx, "SAVEPOINT").await?;
                match run_group(&mut tx, group).await {
                    Ok(()) => {
                        savepoint(&mut tx, "RELEASE SAVEPOINT").await?;
                        false
                    }
                    Err((e, _)) if is_dependency_error(&e) => {
                        savepoint(&mut tx, "ROLLBACK TO SAVEPOINT").await?;
                        savepoint(&mut tx, "RELEASE SAVEPOINT").await?;
                        tracing::info!(table = %live.qualified(), views = objects.views.len(), "recreating the views on the table around its ALTER");
                        objects.drop_views(&mut tx).await?;
                        run_group(&mut tx, group).await.map_err(failed)?;
                        true
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
        };
        objects.restore_missing_indexes(&mut tx).await?;
        if dropped {
            objects.restore_views(&mut tx).await?;
        }
        record_warnings(&mut tx, run_id, live, &objects.warnings).await?;
        tx.commit().await.map_err(DbError::sql(context.to_owned()))
    }

    /// MySQL: builds the user's indexes of `live` on `staging`, which is about to replace it by
    /// `RENAME TABLE` (views and table grants follow the name; indexes do not). Indexes already
    /// on `staging` (a crashed swap being finished) are left; one whose columns are not all in
    /// `staging`, or that fails, is recorded against run `run_id`.
    ///
    /// Hook: `Db::mysql_swap`, before the rename.
    pub(crate) async fn copy_user_indexes(
        &self,
        live: &TableNames,
        staging: &TableNames,
        run_id: i64,
    ) -> Result<(), DbError> {
        let wanted = mysql_indexes(self, live).await?;
        if wanted.is_empty() {
            return Ok(());
        }
        let present: HashSet<String> = mysql_indexes(self, staging)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        let columns = self.table_columns(staging).await?;
        let mut warnings = Vec::new();
        for index in &wanted {
            if present.contains(&index.name) {
                continue;
            }
            let object = format!("index {}", Dialect::Mysql.quote_ident(&index.name));
            let Some(create) = index.create(staging) else {
                warnings.push(ObjectWarning {
                    object,
                    message: "not recreated: an index on an expression is not kept".into(),
                });
                continue;
            };
            if let Some(missing) = missing_column(&index.column_names(), &columns) {
                warnings.push(gone(&object, Dialect::Mysql, missing));
                continue;
            }
            match self.execute_one(&create, "creating a user's index").await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => warnings.push(ObjectWarning {
                    object,
                    message: format!("could not be recreated: {}", error_message(&e)),
                }),
            }
        }
        if warnings.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        record_warnings(&mut tx, run_id, live, &warnings).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("recording the run's warnings"))
    }

    /// The warnings recorded against a run (empty for an unknown run).
    pub async fn run_warnings(&self, run_id: i64) -> Result<Vec<ObjectWarning>, DbError> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT warnings FROM {} WHERE id = ?",
                    self.dialect().own_table("runs")
                ),
                &[Arg::Int(Some(run_id))],
                &[Kind::Text],
                "reading the run's warnings",
            )
            .await?;
        Ok(parse_warnings(rows.first().and_then(|r| r[0].text())))
    }
}

/// The warnings of a run as stored in `runs.warnings` (a JSON array; NULL or unreadable text
/// reads as none).
pub(crate) fn parse_warnings(text: Option<String>) -> Vec<ObjectWarning> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Adds `warnings` (those not there yet) to run `run_id`'s row, in the caller's transaction,
/// and logs them.
async fn record_warnings(
    tx: &mut Tx,
    run_id: i64,
    table: &TableNames,
    warnings: &[ObjectWarning],
) -> Result<(), DbError> {
    if warnings.is_empty() {
        return Ok(());
    }
    for warning in warnings {
        tracing::warn!(table = %table.qualified(), run_id, object = %warning.object, message = %warning.message, "a user object was not kept");
    }
    let runs = tx.dialect().own_table("runs");
    let context = "recording the run's warnings";
    let rows = tx
        .fetch(
            &format!("SELECT warnings FROM {runs} WHERE id = ?"),
            &[Arg::Int(Some(run_id))],
            &[Kind::Text],
        )
        .await
        .map_err(DbError::sql(context))?;
    let mut all = parse_warnings(rows.first().and_then(|r| r[0].text()));
    for warning in warnings {
        if !all.contains(warning) {
            all.push(warning.clone());
        }
    }
    let json = serde_json::to_string(&all).unwrap_or_default();
    tx.execute(
        &format!("UPDATE {runs} SET warnings = ? WHERE id = ?"),
        &[Arg::Text(Some(json)), Arg::Int(Some(run_id))],
    )
    .await
    .map_err(DbError::sql(context))?;
    Ok(())
}

/// Reads the user's objects on `live` (nothing if it does not exist).
async fn capture(
    tx: &mut Tx,
    live: &TableNames,
    old: Option<&TableSchema>,
) -> Result<UserObjects, DbError> {
    let mut objects = UserObjects {
        table: live.clone(),
        views: Vec::new(),
        indexes: Vec::new(),
        table_extras: Vec::new(),
        staged: Vec::new(),
        warnings: Vec::new(),
    };
    match tx.dialect() {
        Dialect::Postgres => pg_capture(tx, &mut objects, old).await?,
        Dialect::Sqlite => sqlite_capture(tx, &mut objects).await?,
        Dialect::Mysql => {}
    }
    Ok(objects)
}

impl UserObjects {
    fn is_empty(&self) -> bool {
        self.views.is_empty() && self.indexes.is_empty() && self.table_extras.is_empty()
    }

    /// Drops the dependent views, children first.
    async fn drop_views(&self, tx: &mut Tx) -> Result<(), DbError> {
        for view in self.views.iter().rev() {
            tx.execute_raw(&view.drop)
                .await
                .map_err(DbError::sql(format!(
                    "dropping {} to replace {}",
                    view.restore.object,
                    self.table.qualified()
                )))?;
        }
        Ok(())
    }

    /// PostgreSQL: builds the user's indexes on `staging` under temporary names (the old ones
    /// still hold theirs), skipping those whose columns `staging` lacks. An index whose
    /// definition does not read as expected, or that fails here, is left for
    /// [`Self::restore_missing_indexes`].
    async fn stage_indexes(&mut self, tx: &mut Tx, staging: &TableNames) -> Result<(), DbError> {
        if self.indexes.is_empty() {
            return Ok(());
        }
        let columns = super::inspect::columns_tx(tx, staging).await?;
        let live_table = pg_qualified(&self.table);
        for (i, index) in self.indexes.iter().enumerate() {
            let object = format!("index {}", Dialect::Postgres.quote_ident(&index.name));
            if let Some(missing) = missing_column(&index.columns, &columns) {
                self.warnings
                    .push(gone(&object, Dialect::Postgres, missing));
                continue;
            }
            let temporary = format!("dapsync_keep_{i}");
            let Some(create) = pg_retarget_index(
                &index.create,
                &index.name,
                &live_table,
                &temporary,
                &staging.qualified(),
            ) else {
                continue;
            };
            // One that fails here (an expression naming the old copy's enum type, say) is
            // tried again on the new live table after the swap.
            if attempt(tx, &[create.as_str()]).await?.is_ok() {
                self.staged.push((i, temporary));
            }
        }
        Ok(())
    }

    /// PostgreSQL: gives the indexes [`Self::stage_indexes`] built their own names, and their
    /// comments.
    async fn rename_staged(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        let d = Dialect::Postgres;
        for (i, temporary) in std::mem::take(&mut self.staged) {
            let (name, comment) = (
                self.indexes[i].name.clone(),
                self.indexes[i].comment.clone(),
            );
            let mut qualified = self.table.clone();
            qualified.table = temporary;
            let rename = format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified.qualified(),
                d.quote_ident(&name)
            );
            tx.execute_raw(&rename)
                .await
                .map_err(DbError::sql("naming a recreated index"))?;
            if let Some(comment) = comment {
                let object = format!("index {}", d.quote_ident(&name));
                self.run_follow_ups(tx, &object, &[comment]).await?;
            }
        }
        Ok(())
    }

    /// PostgreSQL: grants to other roles and the user's comments on the new table.
    async fn restore_extras(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        if self.table_extras.is_empty() {
            return Ok(());
        }
        let columns = super::inspect::columns_tx(tx, &self.table).await?;
        for restore in std::mem::take(&mut self.table_extras) {
            self.restore(tx, &restore, &columns).await?;
        }
        Ok(())
    }

    /// Creates the captured indexes the table no longer has (all of them after a SQLite
    /// swap; after an in-place change, those dropped with a column, which are then skipped).
    async fn restore_missing_indexes(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        if self.indexes.is_empty() {
            return Ok(());
        }
        let d = tx.dialect();
        let present: HashSet<String> = index_names(tx, &self.table).await?.into_iter().collect();
        let columns = super::inspect::columns_tx(tx, &self.table).await?;
        let missing: Vec<Restore> = self
            .indexes
            .iter()
            .filter(|index| !present.contains(&index.name))
            .map(|index| Restore {
                object: format!("index {}", d.quote_ident(&index.name)),
                columns: index.columns.clone(),
                check: None,
                statements: std::iter::once(index.create.clone())
                    .chain(index.comment.clone())
                    .collect(),
            })
            .collect();
        for restore in &missing {
            // Already reported when it could not be built on the staging table.
            if self.warnings.iter().any(|w| w.object == restore.object) {
                continue;
            }
            self.restore(tx, restore, &columns).await?;
        }
        Ok(())
    }

    /// Creates the dependent views again, parents first.
    async fn restore_views(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        let views: Vec<Restore> = self.views.iter().map(|v| v.restore.clone()).collect();
        for restore in &views {
            self.restore(tx, restore, &[]).await?;
        }
        Ok(())
    }

    /// Runs one object's statements (see [`Restore`]); `columns` are the table's columns now.
    async fn restore(
        &mut self,
        tx: &mut Tx,
        restore: &Restore,
        columns: &[String],
    ) -> Result<(), DbError> {
        let Some((create, follow_ups)) = restore.statements.split_first() else {
            return Ok(());
        };
        if let Some(missing) = missing_column(&restore.columns, columns) {
            let warning = gone(&restore.object, tx.dialect(), missing);
            self.warnings.push(warning);
            return Ok(());
        }
        let mut created = vec![create.as_str()];
        created.extend(restore.check.as_deref());
        match attempt(tx, &created).await? {
            Ok(()) => self.run_follow_ups(tx, &restore.object, follow_ups).await,
            Err(message) => {
                self.warnings.push(ObjectWarning {
                    object: restore.object.clone(),
                    message: format!("could not be recreated: {message}"),
                });
                Ok(())
            }
        }
    }

    async fn run_follow_ups(
        &mut self,
        tx: &mut Tx,
        object: &str,
        statements: &[String],
    ) -> Result<(), DbError> {
        for statement in statements {
            if let Err(message) = attempt(tx, &[statement.as_str()]).await? {
                self.warnings.push(ObjectWarning {
                    object: object.to_owned(),
                    message: format!("{}: {message}", super::first_line(statement)),
                });
            }
        }
        Ok(())
    }
}

/// Runs a group of statements; a failure comes with its statement.
async fn run_group(tx: &mut Tx, group: &[&Statement]) -> Result<(), (sqlx::Error, String)> {
    for statement in group {
        if let Err(e) = tx.execute_raw(&statement.sql).await {
            return Err((e, statement.sql.clone()));
        }
    }
    Ok(())
}

/// Runs restoring statements under one savepoint. `Ok(Err(message))`: one failed, they were
/// undone, and the transaction goes on. A failure that may pass on its own (a deadlock, a
/// lock timeout, a lost connection) is an error instead: the whole swap is tried again later
/// rather than the object lost.
async fn attempt(tx: &mut Tx, statements: &[&str]) -> Result<Result<(), String>, DbError> {
    savepoint(tx, "SAVEPOINT").await?;
    let mut failed = None;
    for sql in statements {
        if let Err(source) = tx.execute_raw(sql).await {
            failed = Some((source, *sql));
            break;
        }
    }
    let Some((source, sql)) = failed else {
        savepoint(tx, "RELEASE SAVEPOINT").await?;
        return Ok(Ok(()));
    };
    let message = db_message(&source);
    let error = DbError::Sql {
        context: format!("recreating a user's object: {}", super::first_line(sql)),
        source,
    };
    if error.is_transient() {
        return Err(error);
    }
    savepoint(tx, "ROLLBACK TO SAVEPOINT").await?;
    savepoint(tx, "RELEASE SAVEPOINT").await?;
    Ok(Err(message))
}

async fn savepoint(tx: &mut Tx, command: &str) -> Result<(), DbError> {
    tx.execute_raw(&format!("{command} {SAVEPOINT}"))
        .await
        .map_err(DbError::sql(format!("{command} {SAVEPOINT}")))
}

/// The database's message in a failed [`Db::execute_one`].
fn error_message(error: &DbError) -> String {
    match error {
        DbError::Sql { source, .. } => db_message(source),
        other => other.to_string(),
    }
}

/// The database's own message for a failed statement.
fn db_message(error: &sqlx::Error) -> String {
    error
        .as_database_error()
        .map_or_else(|| error.to_string(), |e| e.message().to_owned())
}

/// PostgreSQL's refusal to change or drop a column that a view uses: `0A000` (cannot alter
/// type of a column used by a view or rule), `2BP01` (dependent objects still exist).
fn is_dependency_error(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "0A000" || code == "2BP01")
}

/// The first of `needed` that is not among `columns`.
fn missing_column<'a>(needed: &'a [String], columns: &[String]) -> Option<&'a str> {
    needed
        .iter()
        .find(|c| !columns.contains(c))
        .map(String::as_str)
}

fn gone(object: &str, dialect: Dialect, column: &str) -> ObjectWarning {
    ObjectWarning {
        object: object.to_owned(),
        message: format!(
            "not recreated: column {} is gone from the new table",
            dialect.quote_ident(column)
        ),
    }
}

/// The names of a table's indexes, seen from inside the transaction.
async fn index_names(tx: &mut Tx, names: &TableNames) -> Result<Vec<String>, DbError> {
    let table = Arg::Text(Some(names.table.clone()));
    let (sql, args) = match tx.dialect() {
        Dialect::Postgres => (
            "SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ? AND c.relname = ?",
            vec![Arg::Text(names.schema.clone()), table],
        ),
        _ => (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            vec![table],
        ),
    };
    let rows = tx
        .fetch(sql, &args, &[Kind::Text])
        .await
        .map_err(DbError::sql("reading the table's indexes"))?;
    Ok(rows.into_iter().filter_map(|r| r[0].text()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_round_trip_and_tolerate_garbage() {
        let warning = ObjectWarning {
            object: "view \"v\"".into(),
            message: "could not be recreated: boom".into(),
        };
        let text = serde_json::to_string(&vec![warning.clone()]).unwrap();
        assert_eq!(parse_warnings(Some(text)), [warning]);
        assert!(parse_warnings(Some("not json".into())).is_empty());
        assert!(parse_warnings(None).is_empty());
    }
}
