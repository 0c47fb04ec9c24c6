//! Per-table locks, so that several dapsync processes on one database (two replicas, or a manual
//! `dapsync sync` beside the daemon) never work on the same table at once. PostgreSQL uses a session
//! advisory lock, MySQL `GET_LOCK`, SQLite an exclusive lock on a file beside the database. A lock
//! dies with its process.
//!
//! A database lock lives as long as its session, and a session can end under a long run (an
//! operator's `pg_terminate_backend` or `KILL`, a server restart, a pooler that hands the
//! connection to someone else). So the lock is kept by a keeper task that pings its connection
//! while the run goes on, every load verifies just before its commit that the lock's session
//! still holds it ([`LockToken`]), and the lock is let go only when the run and every writer it
//! started have stopped: a run cut off at shutdown keeps its table locked until its writer has
//! rolled back.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{MySql, Postgres};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::query::{Arg, Kind, Tx};
use super::{Db, DbError, Pool};
use crate::table::TableId;

/// How often the lock's connection is pinged while a run holds it, so that idle timeouts of the
/// server or of the network between never end the session under a long load.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// A held table lock. Release it with [`TableLock::release`]; dropping it also lets it go, once
/// the writers holding a [`LockToken`] of it have stopped.
#[derive(Debug)]
pub struct TableLock {
    token: LockToken,
    keeper: Option<JoinHandle<()>>,
    /// Where this process finds the token of a table it holds (see [`Db::lock_token`]).
    registry: HeldLocks,
}

/// The tokens of the table locks this process holds, by table: a table's loads find their
/// lock's token there.
pub(crate) type HeldLocks = Arc<Mutex<std::collections::HashMap<TableId, LockToken>>>;

/// Proof of a table lock for a load: it keeps the lock held while the load's writer runs, and
/// verifies, inside the writer's transaction, that the lock's session still holds it.
#[derive(Debug, Clone)]
pub struct LockToken {
    check: Arc<Check>,
    /// The keeper releases the lock when every clone of this is gone.
    _hold: mpsc::Sender<()>,
}

#[derive(Debug)]
struct Check {
    table: TableId,
    session: Session,
    /// Set by the keeper when its connection failed or changed its server session.
    lost: AtomicBool,
}

#[derive(Debug)]
enum Session {
    Postgres {
        pid: i32,
        key: i64,
    },
    Mysql {
        connection_id: i64,
        name: String,
    },
    /// A lock file or an in-process lock: it cannot be lost while the process lives.
    Local,
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
                let (locked, pid): (bool, i32) =
                    sqlx::query_as("SELECT pg_try_advisory_lock($1), pg_backend_pid()")
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(DbError::sql(&context))?;
                locked.then_some((Held::Postgres(conn, key), Session::Postgres { pid, key }))
            }
            Pool::Mysql(pool) => {
                let mut conn = pool.acquire().await.map_err(DbError::sql(&context))?;
                // Lock names are server-wide and at most 64 characters: scope them to this
                // database with a digest.
                let (lock_name, locked, connection_id): (String, Option<i64>, i64) = sqlx::query_as(
                    "SELECT n, GET_LOCK(n, 0), CAST(CONNECTION_ID() AS SIGNED) FROM (SELECT CONCAT('dapsync:', SHA1(CONCAT(DATABASE(), '/', ?))) AS n) AS t",
                )
                .bind(&name)
                .fetch_one(&mut *conn)
                .await
                .map_err(DbError::sql(&context))?;
                (locked == Some(1)).then(|| {
                    let session = Session::Mysql {
                        connection_id,
                        name: lock_name.clone(),
                    };
                    (Held::Mysql(conn, lock_name), session)
                })
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
                        Ok(()) => Some((Held::File(file), Session::Local)),
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
                    inserted.then_some((Held::Memory(locks, name), Session::Local))
                }
            },
        };
        let Some((held, session)) = held else {
            return Ok(None);
        };
        let check = Arc::new(Check {
            table: table.clone(),
            session,
            lost: AtomicBool::new(false),
        });
        let (hold, holders) = mpsc::channel(1);
        let keeper = tokio::spawn(keep(held, check.clone(), holders));
        let token = LockToken { check, _hold: hold };
        if let Ok(mut held) = self.held_locks.lock() {
            held.insert(table.clone(), token.clone());
        }
        Ok(Some(TableLock {
            token,
            keeper: Some(keeper),
            registry: self.held_locks.clone(),
        }))
    }

    /// The token of a table lock this process holds, for a load or an ALTER of the table.
    pub(crate) fn lock_token(&self, table: &TableId) -> Option<LockToken> {
        self.held_locks
            .lock()
            .ok()
            .and_then(|held| held.get(table).cloned())
    }

    /// Verifies, outside any transaction, that `token`'s lock is still held (see
    /// [`LockToken::verify`]).
    pub async fn verify_lock(&self, token: &LockToken) -> Result<(), DbError> {
        if matches!(token.check.session, Session::Local) {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        token.verify(&mut tx).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("verifying the table lock"))
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
    /// Releases the lock once every load holding a token of it has stopped, and waits for that.
    pub async fn release(mut self) {
        let keeper = self.keeper.take();
        drop(self);
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        // The keeper lets the lock go once the loads' tokens are gone too.
        if let Ok(mut held) = self.registry.lock() {
            held.remove(&self.token.check.table);
        }
    }
}

impl LockToken {
    /// Fails with [`DbError::LockLost`] unless the lock's session still holds the lock, asked
    /// inside `tx` (the transaction about to commit): PostgreSQL looks for the advisory lock of
    /// the lock session's pid in `pg_locks`, MySQL compares `IS_USED_LOCK` with the lock
    /// session's connection id.
    pub(crate) async fn verify(&self, tx: &mut Tx) -> Result<(), DbError> {
        let check = &self.check;
        let lost = |reason: &str| DbError::LockLost {
            table: check.table.clone(),
            reason: reason.to_owned(),
        };
        if check.lost.load(Ordering::SeqCst) {
            return Err(lost("its database session ended or changed"));
        }
        let context = "verifying the table lock";
        let held = match &check.session {
            Session::Local => return Ok(()),
            Session::Postgres { pid, key } => {
                let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                           AND pid = ? AND classid::int8 = ? AND objid::int8 = ? AND objsubid = 1 \
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
                let args = [
                    Arg::Int(Some(i64::from(*pid))),
                    Arg::Int(Some(i64::from((*key >> 32) as u32))),
                    Arg::Int(Some(i64::from(*key as u32))),
                ];
                tx.fetch(sql, &args, &[Kind::Int])
                    .await
                    .map_err(DbError::sql(context))?
            }
            Session::Mysql {
                connection_id,
                name,
            } => {
                let sql = "SELECT CAST(COALESCE(IS_USED_LOCK(?) = ?, 0) AS SIGNED)";
                let args = [
                    Arg::Text(Some(name.clone())),
                    Arg::Int(Some(*connection_id)),
                ];
                tx.fetch(sql, &args, &[Kind::Int])
                    .await
                    .map_err(DbError::sql(context))?
            }
        };
        if held.first().and_then(|row| row[0].int()).unwrap_or(0) > 0 {
            Ok(())
        } else {
            check.lost.store(true, Ordering::SeqCst);
            Err(lost("its database session no longer holds it"))
        }
    }
}

/// Holds the lock: pings its connection every [`KEEPALIVE`] until every holder is gone, then
/// releases it.
async fn keep(held: Held, check: Arc<Check>, mut holders: mpsc::Receiver<()>) {
    // Should the runtime stop this task (a one-shot command ending), the guard still lets go.
    let mut guard = Guard(Some(held));
    let mut ticks = tokio::time::interval(KEEPALIVE);
    ticks.tick().await;
    loop {
        tokio::select! {
            // Nothing is ever sent: this returns when the last holder is dropped.
            _ = holders.recv() => break,
            _ = ticks.tick() => {
                if !check.lost.load(Ordering::SeqCst)
                    && let Some(held) = guard.0.as_mut()
                    && let Err(reason) = ping(held, &check.session).await
                {
                    tracing::warn!(table = %check.table, reason, "the table lock's database session is gone; the run will not commit");
                    check.lost.store(true, Ordering::SeqCst);
                }
            }
        }
    }
    if let Some(held) = guard.0.take() {
        release(held).await;
    }
}

/// Lets a lock go when its keeper is dropped before releasing it: the connection is closed
/// (which ends the session and its lock) rather than returned to the pool.
struct Guard(Option<Held>);

impl Drop for Guard {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Held::Postgres(mut conn, _)) => conn.close_on_drop(),
            Some(Held::Mysql(mut conn, _)) => conn.close_on_drop(),
            Some(Held::File(file)) => {
                let _ = file.unlock();
            }
            Some(Held::Memory(locks, name)) => {
                if let Ok(mut set) = locks.lock() {
                    set.remove(&name);
                }
            }
            None => {}
        }
    }
}

/// Keeps the lock's session busy enough not to time out, and checks it is still the same
/// session (a pooler in transaction mode hands out another server session between statements).
async fn ping(held: &mut Held, session: &Session) -> Result<(), &'static str> {
    match (held, session) {
        (Held::Postgres(conn, _), Session::Postgres { pid, .. }) => {
            match sqlx::query_as::<_, (i32,)>("SELECT pg_backend_pid()")
                .fetch_one(&mut **conn)
                .await
            {
                Ok((now,)) if now == *pid => Ok(()),
                Ok(_) => {
                    Err("the connection changed its server session (a pooler in transaction mode?)")
                }
                Err(_) => Err("the lock's connection failed"),
            }
        }
        (Held::Mysql(conn, _), Session::Mysql { connection_id, .. }) => {
            match sqlx::query_as::<_, (i64,)>("SELECT CAST(CONNECTION_ID() AS SIGNED)")
                .fetch_one(&mut **conn)
                .await
            {
                Ok((now,)) if now == *connection_id => Ok(()),
                Ok(_) => Err("the connection changed its server session"),
                Err(_) => Err("the lock's connection failed"),
            }
        }
        _ => Ok(()),
    }
}

/// Releases the lock and returns its connection to the pool (or closes it, which releases the
/// lock too, when the release fails).
async fn release(held: Held) {
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
        Held::File(file) => {
            let _ = file.unlock();
            Ok(())
        }
        Held::Memory(locks, name) => {
            if let Ok(mut set) = locks.lock() {
                set.remove(&name);
            }
            Ok(())
        }
    };
    if let Err(error) = released {
        tracing::warn!(%error, "releasing a table lock failed; its connection is closed instead");
    }
}
