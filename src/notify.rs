//! systemd `Type=notify` support without libsystemd: `READY=1`, `STOPPING=1`, `STATUS=...` and
//! watchdog pings, sent as datagrams to the socket named by `NOTIFY_SOCKET`. Without that
//! variable (not started by systemd) every message is silently dropped.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Talks to the service manager, if there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for the socket and watchdog the process environment names.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    /// A notifier for `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` values. A socket that
    /// cannot be used is logged and ignored: the service runs on without notifications.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let target = socket.filter(|s| !s.is_empty()).and_then(|path| {
            match connect(path) {
                Ok(target) => Some(target),
                Err(error) => {
                    tracing::warn!(socket = path, %error, "cannot use NOTIFY_SOCKET; systemd will not hear from dapsync");
                    None
                }
            }
        });
        // The watchdog is ours when WATCHDOG_PID is unset or names this process.
        let ours = watchdog_pid.is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = watchdog_usec
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours && target.is_some())
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send [`Notifier::watchdog`]: half the watchdog timeout systemd set, if it set
    /// one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// Start-up is complete.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// The service is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// The service is alive (a watchdog ping).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(error) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::debug!(%error, message, "cannot notify systemd");
        }
    }
}

/// An unbound, non-blocking datagram socket and the address to send to: a path, or (Linux) an
/// abstract name written with a leading `@`.
fn connect(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => abstract_addr(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    // A notification must never hold up the runtime; one lost when the queue is full is fine.
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &str) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str(), Some("10000000"), None);
        assert!(notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(5)));
        notifier.ready();
        notifier.watchdog();
        notifier.status("syncing 3 tables\nnow");
        notifier.stopping();
        assert_eq!(receive(&listener), "READY=1");
        assert_eq!(receive(&listener), "WATCHDOG=1");
        assert_eq!(receive(&listener), "STATUS=syncing 3 tables now");
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("dapsync-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(Some(&format!("@{name}")), None, None);
        notifier.ready();
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_no_watchdog_runs() {
        let notifier = Notifier::new(None, Some("10000000"), None);
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready();
    }

    #[test]
    fn a_watchdog_for_another_process_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let other = (std::process::id() + 1).to_string();
        let notifier = Notifier::new(path.to_str(), Some("10000000"), Some(&other));
        assert_eq!(notifier.watchdog_interval(), None);
        let own = std::process::id().to_string();
        let notifier = Notifier::new(path.to_str(), Some("10000000"), Some(&own));
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(5)));
    }
}
