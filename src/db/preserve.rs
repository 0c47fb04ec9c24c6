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

// PostgreSQL.

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

async fn pg_capture(
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
fn pg_qualified(names: &TableNames) -> String {
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
fn pg_retarget_index(
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

// SQLite.

async fn sqlite_capture(tx: &mut Tx, objects: &mut UserObjects) -> Result<(), DbError> {
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

// MySQL.

/// The user's indexes on a MySQL table (all but `PRIMARY`, the only one dapsync creates).
async fn mysql_indexes(db: &Db, names: &TableNames) -> Result<Vec<MysqlIndex>, DbError> {
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
struct MysqlIndex {
    name: String,
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
    fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter_map(|p| p.column.clone())
            .collect()
    }

    /// `CREATE ... INDEX` on `target`; `None` with a functional key part (not kept).
    fn create(&self, target: &TableNames) -> Option<String> {
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
