//! systemd integration (`Type=notify`, sd-notify): `READY=1` after the first pass that follows
//! every source's first complete set, `WATCHDOG=1` from the reconcile loop itself (so a wedged
//! loop stops the pings and systemd restarts the agent), `STATUS=` with the last pass.
//!
//! Without `NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

/// The loop's systemd notifier.
pub struct Notifier {
    enabled: bool,
    ready_sent: bool,
    /// Half the watchdog timeout or less; `None` without `WATCHDOG_USEC`.
    watchdog_every: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` (microseconds) and `WATCHDOG_PID` (when set, it
    /// must be this process) from the environment.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok && enabled);
        Notifier {
            enabled,
            ready_sent: false,
            // A third of the timeout: systemd's advice is half, with room for a slow pass.
            watchdog_every: usec.map(|u| Duration::from_micros(u / 3)),
        }
    }

    /// How often the loop must call [`Notifier::watchdog`]; `None` when no watchdog is set.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog_every
    }

    fn send(&self, states: &[sd_notify::NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, states)
        {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// A pass ran: `READY=1` the first time, and `STATUS=` with its summary.
    pub fn passed(&mut self, status: &str) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.send(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(status),
            ]);
        } else {
            self.send(&[sd_notify::NotifyState::Status(status)]);
        }
    }

    /// `STATUS=` only (a failed pass does not make the agent ready).
    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// The loop is alive: `WATCHDOG=1`.
    pub fn watchdog(&self) {
        if self.watchdog_every.is_some() {
            self.send(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

/// Test hook: while the file named by `BERTH_TEST_STALL_FILE` exists, the loop waits here (as
/// a wedged loop would), so that tests can check that the watchdog pings stop.
pub async fn stall_hook() {
    let Some(path) = std::env::var_os("BERTH_TEST_STALL_FILE") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
