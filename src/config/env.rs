//! What the environment and the command line may say: which `DAPSYNC_*` variables are settings,
//! which look like one but are misspelt, and what a log level is.

use std::collections::HashMap;

use super::ConfigError;

/// The configuration's sections: a setting's variable is `DAPSYNC_<SECTION>__<KEY>`.
const SECTIONS: [&str; 7] = [
    "DAP",
    "DATABASE",
    "SYNC",
    "NAMESPACES",
    "HTTP",
    "LOG",
    "WEBHOOKS",
];

/// Whether a `DAPSYNC_*` variable is a setting: every key lives in a section, so settings read
/// `DAPSYNC_<SECTION>__<KEY>`. Others are left alone: Kubernetes service links of a Service named
/// `dapsync` (`DAPSYNC_SERVICE_HOST`, `DAPSYNC_PORT`), the tests' `DAPSYNC_CRASH_AT`.
pub(super) fn is_setting(variable: &str) -> bool {
    variable
        .strip_prefix("DAPSYNC_")
        .is_some_and(|rest| rest.contains("__"))
}

/// Refuses a variable that names a section and a key with one `_` between them
/// (`DAPSYNC_DATABASE_URL`): it looks like a setting, but is none, and would be ignored.
pub(super) fn check_misnamed(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix("DAPSYNC_") else {
            continue;
        };
        if is_setting(name) {
            continue;
        }
        let section = SECTIONS.iter().find(|section| {
            rest.strip_prefix(*section)
                .is_some_and(|key| key.len() > 1 && key.starts_with('_'))
        });
        if let Some(section) = section {
            let key = &rest[section.len() + 1..];
            return Err(ConfigError::Invalid {
                key: name.clone(),
                reason: format!(
                    "is not a setting: settings put two underscores between the section and the key (DAPSYNC_{section}__{key})"
                ),
            });
        }
    }
    Ok(())
}

/// A log level (`info`), or `tracing` directives that each end in one
/// (`dapsync=debug,sqlx=warn`): a bare word that is not a level would parse as a target and
/// silently turn logging off.
pub fn check_log_level(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())?;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "{level:?} is not a log level (one of {}, or target=level directives)",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(names: &[&str]) -> HashMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "x".to_owned()))
            .collect()
    }

    #[test]
    fn a_setting_with_one_underscore_is_refused_naming_it() {
        let error = check_misnamed(&env(&["DAPSYNC_DATABASE_URL"])).unwrap_err();
        let text = crate::error::chain(&error);
        assert!(text.contains("DAPSYNC_DATABASE_URL"), "{text}");
        assert!(text.contains("DAPSYNC_DATABASE__URL"), "{text}");
        for fine in [
            "DAPSYNC_SERVICE_HOST",
            "DAPSYNC_PORT",
            "DAPSYNC_PORT_8080_TCP_ADDR",
            "DAPSYNC_CRASH_AT",
            "DAPSYNC_DATABASE__URL",
            "DAPSYNC_DAPPER",
            "OTHER_DATABASE_URL",
        ] {
            assert!(check_misnamed(&env(&[fine])).is_ok(), "{fine}");
        }
    }
}
