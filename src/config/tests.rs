use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dapsync.toml");
    std::fs::write(&path, toml).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_with_env(Some(&path), &env)
}

#[test]
fn defaults_need_no_file() {
    let config = load("", &[]).unwrap();
    assert_eq!(config.dap.base_url, "https://api-gateway.instructure.com");
    assert_eq!(config.database.url.dialect().unwrap(), Dialect::Sqlite);
    assert_eq!(config.sync.schedule.as_str(), "0 0 * * * *");
    assert_eq!(config.dap.queries_per_minute, 5);
}

#[test]
fn file_then_official_env_then_dapsync_env() {
    let toml = r#"
            [dap]
            base_url = "http://file.example"
            client_id = "from-file"
            client_secret = "file-secret"
        "#;
    let config = load(toml, &[("DAP_API_URL", "http://official.example")]).unwrap();
    assert_eq!(config.dap.base_url, "http://official.example");
    assert_eq!(config.dap.client_id.as_deref(), Some("from-file"));
    let config = load(
        toml,
        &[
            ("DAP_API_URL", "http://official.example"),
            ("DAPSYNC_DAP__BASE_URL", "http://dapsync.example"),
            ("DAP_CLIENT_SECRET", "official-secret"),
            ("DAP_CONNECTION_STRING", "postgresql://u:pw@localhost/db"),
            ("DAPSYNC_SYNC__MAX_CONCURRENT_TABLES", "7"),
            ("DAPSYNC_NAMESPACES__CANVAS__TABLES", "courses, users"),
        ],
    )
    .unwrap();
    assert_eq!(config.dap.base_url, "http://dapsync.example");
    assert_eq!(
        config.dap.client_secret.as_ref().unwrap().expose(),
        "official-secret"
    );
    assert_eq!(config.database.url.dialect().unwrap(), Dialect::Postgres);
    assert_eq!(config.sync.max_concurrent_tables, 7);
    assert_eq!(config.namespaces["canvas"].tables, ["courses", "users"]);
}

#[test]
fn unknown_keys_are_named() {
    let err = load("[dap]\nclient_idd = \"x\"\n", &[]).unwrap_err();
    assert!(
        crate::error::chain(&err).contains("client_idd"),
        "{}",
        crate::error::chain(&err)
    );
    let err = load("", &[("DAPSYNC_SYNC__SCHEDULEE", "x")]).unwrap_err();
    assert!(
        crate::error::chain(&err).contains("schedulee"),
        "{}",
        crate::error::chain(&err)
    );
    // Variables that are no settings are left alone (Kubernetes service links).
    let env = [
        ("DAPSYNC_SERVICE_HOST", "10.0.0.1"),
        ("DAPSYNC_PORT", "tcp://10.0.0.1:8080"),
    ];
    assert!(load("", &env).is_ok());
}

#[test]
fn bad_values_are_named() {
    let cases = [
        ("[dap]\nbase_url = \"not a url\"\n", "dap.base_url"),
        ("[database]\nurl = \"oracle://x\"\n", "database.url"),
        ("[sync]\nschedule = \"61 * * * *\"\n", "61 * * * *"),
        ("[sync]\nschedule = \"every hour\"\n", "every hour"),
        ("[dap]\nclient_id = \"abc\"\n", "dap.client_secret"),
        (
            "[sync]\nmax_concurrent_tables = 0\n",
            "sync.max_concurrent_tables",
        ),
        ("[dap]\njob_timeout = \"ten minutes\"\n", "ten minutes"),
        ("[dap]\njob_poll_max = \"0s\"\n", "dap.job_poll_max"),
        ("[dap]\nmax_backoff = \"100ms\"\n", "dap.max_backoff"),
        ("[dap]\nrequest_timeout = \"0s\"\n", "dap.request_timeout"),
        (
            "[sync]\nmax_rejected_fraction = 1.5\n",
            "sync.max_rejected_fraction",
        ),
    ];
    for (toml, expected) in cases {
        let err = load(toml, &[]).unwrap_err();
        assert!(
            crate::error::chain(&err).contains(expected),
            "{toml}: {}",
            crate::error::chain(&err)
        );
    }
}

#[test]
fn cron_accepts_five_and_six_fields() {
    assert_eq!(
        CronSchedule::parse("*/15 * * * *").unwrap().as_str(),
        "0 */15 * * * *"
    );
    assert_eq!(
        CronSchedule::parse("*/2 * * * * *").unwrap().as_str(),
        "*/2 * * * * *"
    );
    assert!(CronSchedule::parse("* * *").is_err());
    let hourly = CronSchedule::hourly();
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:20:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(
        hourly.next_after(now).unwrap().to_rfc3339(),
        "2026-01-01T11:00:00+00:00"
    );
}

#[test]
fn globs_select_tables() {
    assert!(glob_match("quiz_*", "quiz_questions"));
    assert!(glob_match("*_logs", "web_logs"));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("*", ""));
    assert!(!glob_match("quiz_*", "quizzes"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*a*b*", "xxaxxbxx"));
    let namespace = NamespaceConfig {
        tables: vec!["all".into()],
        exclude: vec!["web_logs".into(), "quiz_*".into()],
        ..Default::default()
    };
    assert!(namespace.selects("courses"));
    assert!(!namespace.selects("quiz_questions"));
    assert!(!namespace.selects("web_logs"));
    assert!(namespace.needs_listing());
    let listed = NamespaceConfig {
        tables: vec!["courses".into()],
        ..Default::default()
    };
    assert!(!listed.needs_listing());
    assert!(!listed.selects("users"));
}

#[test]
fn durations() {
    assert_eq!(
        HumanDuration::parse("500ms").unwrap().0,
        Duration::from_millis(500)
    );
    assert_eq!(
        HumanDuration::parse("2h").unwrap().0,
        Duration::from_secs(7200)
    );
    assert_eq!(
        HumanDuration::parse("90").unwrap().0,
        Duration::from_secs(90)
    );
    assert_eq!(HumanDuration::secs(300).to_string(), "5m");
    assert!(HumanDuration::parse("5 parsecs").is_err());
}

#[test]
fn secrets_come_from_files_and_never_show() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dap_client_secret"),
        "s3cret-from-systemd\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("database_password"), "db-pa55").unwrap();
    let toml = "[dap]\nclient_id = \"us-east-1#abc\"\n[database]\nurl = \"postgresql://app@db.example/dap\"\n";
    let config = load(
        toml,
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(
        config.dap_credentials().unwrap().1.expose(),
        "s3cret-from-systemd"
    );
    assert_eq!(
        config.database.url.expose(),
        "postgresql://app:db-pa55@db.example/dap"
    );
    for shown in [format!("{config:?}"), config.to_toml()] {
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("db-pa55"), "{shown}");
        assert!(
            shown.contains("postgresql://app:%5Bredacted%5D@db.example/dap")
                || shown.contains("[redacted]")
        );
    }
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "from-file").unwrap();
    let toml = format!(
        "[dap]\nclient_id = \"x\"\nclient_secret_file = {:?}\n",
        secret_file.to_str().unwrap()
    );
    assert_eq!(
        load(&toml, &[])
            .unwrap()
            .dap_credentials()
            .unwrap()
            .1
            .expose(),
        "from-file"
    );

    // A password in the query string (sqlx takes it there too) never shows either.
    let url = DatabaseUrl::new("postgresql://app@db/dap?sslmode=require&password=hunter2");
    for shown in [url.to_string(), format!("{url:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }
    assert_eq!(
        DatabaseUrl::new("sqlite://dapsync.db").to_string(),
        "sqlite://dapsync.db"
    );

    // Environment values are strings: a numeric-looking secret keeps its leading zeros.
    let config = load(
        "[dap]\nclient_id = \"x\"\n",
        &[("DAPSYNC_DAP__CLIENT_SECRET", "00123")],
    )
    .unwrap();
    assert_eq!(config.dap_credentials().unwrap().1.expose(), "00123");
}

#[test]
fn missing_credentials_name_the_key() {
    let config = load("", &[]).unwrap();
    assert!(
        config
            .dap_credentials()
            .unwrap_err()
            .to_string()
            .starts_with("dap.client_id is not set")
    );
}

#[test]
fn the_example_file_is_complete_and_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dapsync.toml");
    let env = HashMap::new();
    let config = Config::load_with_env(Some(&path), &env).unwrap();
    assert!(config.namespaces.contains_key("canvas"));
}

#[test]
fn the_control_token_comes_from_a_file_or_a_credential_and_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("control_token"), "t0ken-from-systemd\n").unwrap();
    let credentials = dir.path().to_str().unwrap();
    let config = load("", &[("CREDENTIALS_DIRECTORY", credentials)]).unwrap();
    assert_eq!(
        config.http.control_token.as_ref().unwrap().expose(),
        "t0ken-from-systemd"
    );
    let file = dir.path().join("token.txt");
    std::fs::write(&file, "t0ken-from-file\n").unwrap();
    let toml = format!(
        "[http]\ncontrol_token_file = {:?}\n",
        file.to_str().unwrap()
    );
    let config = load(&toml, &[]).unwrap();
    assert_eq!(
        config.http.control_token.as_ref().unwrap().expose(),
        "t0ken-from-file"
    );
    assert!(!format!("{config:?}").contains("t0ken"));
    assert!(!config.to_toml().contains("t0ken"));
    std::fs::write(&file, "\n").unwrap();
    assert!(load(&toml, &[]).is_err());
    assert!(load("", &[]).unwrap().http.control_token.is_none());
}

#[test]
fn an_unknown_log_level_is_refused_naming_the_key() {
    for good in [
        "info",
        "DEBUG",
        "dapsync=debug,sqlx=warn",
        "warn,dapsync::scheduler=info",
    ] {
        assert_eq!(check_log_level(good), Ok(()), "{good}");
    }
    for bad in ["verbose", "warning", "dapsync=loud", "dapsync"] {
        assert!(check_log_level(bad).is_err(), "{bad}");
    }
    let err = load("[log]\nlevel = \"verbose\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("log.level"), "{err}");
}

#[test]
fn a_files_url_names_a_directory_and_a_format() {
    let target = |url: &str| DatabaseUrl::new(url).target();
    assert_eq!(
        target("files:///var/lib/lake?format=parquet").unwrap(),
        Target::Files(FilesTarget {
            directory: PathBuf::from("/var/lib/lake"),
            format: FileFormat::Parquet,
        })
    );
    assert_eq!(
        target("files://lake").unwrap(),
        Target::Files(FilesTarget {
            directory: PathBuf::from("lake"),
            format: FileFormat::Jsonl,
        })
    );
    assert_eq!(
        target("sqlite://x.db").unwrap(),
        Target::Database(Dialect::Sqlite)
    );
    for (url, says) in [
        ("files://lake?format=xml", "format=xml"),
        ("files://lake?compress=yes", "compress=yes"),
        ("files://", "needs a directory"),
    ] {
        let error = crate::error::chain(&target(url).unwrap_err());
        assert!(
            error.contains("database.url") && error.contains(says),
            "{url}: {error}"
        );
    }
    let error = DatabaseUrl::new("files://lake").dialect().unwrap_err();
    assert!(crate::error::chain(&error).contains("needs a database"));
}
