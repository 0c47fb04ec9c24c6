//! Per-table locks, so that several dapsync processes on one database (two replicas, or a manual
//! `dapsync sync` beside the daemon) never work on the same table at once. PostgreSQL uses a session
//! advisory lock, MySQL `GET_LOCK`, SQLite an exclusive lock on a file beside the database. A lock
//! dies with its process.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{MySql, Postgres};

use super::{Db, DbError, Pool};
use crate::table::TableId;

/// A held table lock. Release it with [`TableLock::release`]; dropping it also releases it (the
/// database connection holding it is closed rather than returned to the pool).
#[derive(Debug)]
pub struct TableLock {
    inner: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Postgres(PoolConnection<Postgres>, i64),
    Mysql(PoolConnection<MySql>, String),
    File(File),
    Memory(Arc<Mutex<HashSet<String>>>, String),
}

impl Db {
    /// Takes the lock of a table if nobody holds it; `None` if another run holds it.
    pub async fn try_lock_table(&self, table: &TableId) -> Result<Option<TableLock>, DbError> {
        let name = format!("dapsync:{table}");
        let context = format!("locking {table}");
        let held = match &self.pool {
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(DbError::sql(&context))?;
                let key = crate::hash::fnv1a(name.as_bytes()) as i64;
                let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(DbError::sql(&context))?;
                locked.then_some(Held::Postgres(conn, key))
            }
            Pool::Mysql(pool) => {
                let mut conn = pool.acquire().await.map_err(DbError::sql(&context))?;
                // Lock names are server-wide and at most 64 characters: scope them to this
                // database with a digest.
                let (lock_name, locked): (String, Option<i64>) = sqlx::query_as(
                    "SELECT n, GET_LOCK(n, 0) FROM (SELECT CONCAT('dapsync:', SHA1(CONCAT(DATABASE(), '/', ?))) AS n) AS t",
                )
                .bind(&name)
                .fetch_one(&mut *conn)
                .await
                .map_err(DbError::sql(&context))?;
                (locked == Some(1)).then_some(Held::Mysql(conn, lock_name))
            }
            Pool::Sqlite(_) => match self.locks_dir() {
                Some(dir) => {
                    let io = |source| DbError::Io {
                        context: context.clone(),
                        source,
                    };
                    std::fs::create_dir_all(&dir).map_err(io)?;
                    let file = File::options()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(
                            dir.join(format!("{:016x}.lock", crate::hash::fnv1a(name.as_bytes()))),
                        )
                        .map_err(io)?;
                    match file.try_lock() {
                        Ok(()) => Some(Held::File(file)),
                        Err(std::fs::TryLockError::WouldBlock) => None,
                        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
                    }
                }
                None => {
                    let locks = self.memory_locks.clone();
                    let inserted = locks
                        .lock()
                        .map(|mut set| set.insert(name.clone()))
                        .unwrap_or(false);
                    inserted.then_some(Held::Memory(locks, name))
                }
            },
        };
        Ok(held.map(|held| TableLock { inner: Some(held) }))
    }
}

impl Db {
    /// SQLite on a file: the folder beside it that holds the lock files (`<file>.locks`).
    pub(super) fn locks_dir(&self) -> Option<PathBuf> {
        let mut dir = self.sqlite_path.as_ref()?.clone().into_os_string();
        dir.push(".locks");
        Some(PathBuf::from(dir))
    }
}

impl TableLock {
    /// Releases the lock and returns its connection to the pool.
    pub async fn release(mut self) {
        let Some(held) = self.inner.take() else {
            return;
        };
        let released = match held {
            Held::Postgres(mut conn, key) => {
                let result = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                result.map(drop)
            }
            Held::Mysql(mut conn, name) => {
                let result = sqlx::query("SELECT RELEASE_LOCK(?)")
                    .bind(name)
                    .execute(&mut *conn)
                    .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                result.map(drop)
            }
            other => {
                drop_held(other);
                Ok(())
            }
        };
        if let Err(error) = released {
            tracing::warn!(%error, "releasing a table lock failed; its connection is closed instead");
        }
    }
}

fn drop_held(held: Held) {
    match held {
        // The lock is tied to the session: closing the connection releases it.
        Held::Postgres(mut conn, _) => conn.close_on_drop(),
        Held::Mysql(mut conn, _) => conn.close_on_drop(),
        Held::File(file) => {
            let _ = file.unlock();
        }
        Held::Memory(locks, name) => {
            if let Ok(mut set) = locks.lock() {
                set.remove(&name);
            }
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Some(held) = self.inner.take() {
            drop_held(held);
        }
    }
}
