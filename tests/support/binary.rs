//! The real `dapsync` binary, run against the fake API and a test database.

use std::path::{Path, PathBuf};

use dapsync::fake::FakeDap;

use super::TestDb;

/// A configuration file for the binary in `dir`: the fake API and the test database.
pub fn write_config(dir: &Path, fake: &FakeDap, db: &TestDb) -> PathBuf {
    let path = dir.join("dapsync.toml");
    let text = format!(
        "[dap]\nbase_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\njob_poll_initial = \"5ms\"\n\
         job_poll_max = \"20ms\"\ninitial_backoff = \"5ms\"\nqueries_per_minute = 1000\n[database]\nurl = {:?}\n\
         [log]\nlevel = \"warn\"\n",
        fake.base_url(),
        fake.client_id(),
        fake.client_secret().expose(),
        db.url.expose()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `dapsync <subcommand> --namespace NS --table T` with `config`, killed at the crash point
/// `crash_at` if given; whether it succeeded.
pub async fn run(
    config: &Path,
    subcommand: &str,
    namespace: &str,
    table: &str,
    crash_at: Option<&str>,
) -> bool {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"));
    command.args([
        "--config",
        config.to_str().unwrap(),
        subcommand,
        "--namespace",
        namespace,
        "--table",
        table,
    ]);
    command.env_remove("DAPSYNC_CRASH_AT");
    if let Some(point) = crash_at {
        command.env("DAPSYNC_CRASH_AT", point);
    }
    command.output().await.unwrap().status.success()
}
