//! The standard `process_*` metrics of Prometheus' client libraries, read from `/proc/self` (on
//! other systems there are none).

use std::fs;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`: `USER_HZ`, which Linux fixes at
/// 100 for user space on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of this process; each figure is `None` when it could not be read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; on a system without it, every figure is `None`.
    pub(super) fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        let status = fs::read_to_string("/proc/self/status").ok();
        Self {
            // utime and stime (fields 14 and 15 of proc(5), counted from 1).
            cpu_seconds: field(13)
                .zip(field(14))
                .map(|(user, system)| (user + system) / TICKS_PER_SECOND),
            resident_memory_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmRSS:"))
                .map(|kib| kib * 1024.0),
            virtual_memory_bytes: field(22),
            // starttime (field 22) is in ticks since boot.
            start_time_seconds: field(21)
                .zip(boot_time)
                .map(|(ticks, boot)| boot + ticks / TICKS_PER_SECOND),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| max_open_files(&text)),
        }
    }
}

/// The fields of `/proc/<pid>/stat` from the state on (index 2 is field 3 of proc(5)); the
/// command name in parentheses may hold spaces and parentheses itself, so it is skipped whole.
fn stat_fields(text: &str) -> Vec<&str> {
    let Some((_, after_name)) = text.rsplit_once(')') else {
        return Vec::new();
    };
    ["pid", "comm"]
        .into_iter()
        .chain(after_name.split_whitespace())
        .collect()
}

/// `btime` of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// A `kB` figure of `/proc/<pid>/status`.
fn status_kib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
fn max_open_files(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    8 0 123456 987654321 5000 18446744073709551615";
        let fields = stat_fields(stat);
        assert_eq!(fields[2], "S");
        assert_eq!((fields[13], fields[14]), ("250", "50"));
        assert_eq!((fields[21], fields[22]), ("123456", "987654321"));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1.7e9)
        );
        let status = "Name:\tdapsync\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(stat_fields("garbage"), Vec::<&str>::new());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.unwrap() > 0.0);
        assert!(stats.open_fds.unwrap() >= 3.0);
        assert!(stats.cpu_seconds.unwrap() >= 0.0);
        let start = stats.start_time_seconds.unwrap();
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(start > 1.6e9 && start <= now + 1.0, "{start}");
    }
}
