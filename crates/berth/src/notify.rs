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
    /// [`watchdog_interval`] of `WATCHDOG_USEC`; `None` without it.
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
            watchdog_every: usec.map(watchdog_interval),
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

/// How often the loop pings the watchdog, given `WATCHDOG_USEC`: a quarter of the timeout
/// (250 ms for 1 s). systemd advises half (sd_watchdog_enabled(3)); the pings come from the
/// loop itself, so a pass holding the loop delays the next one, and a quarter leaves the rest
/// of the half for that pass on a loaded host.
pub fn watchdog_interval(usec: u64) -> Duration {
    Duration::from_micros(usec / 4)
}

/// Whether an iteration of the loop pings, `since` the last ping, when it pings `every`
/// ([`watchdog_interval`]): from a quarter of the interval on, so that an iteration about to
/// run a pass pings before it (the pass then has the rest of the time), without a datagram on
/// every iteration of a burst.
pub fn ping_due(every: Duration, since: Duration) -> bool {
    since >= every / 4
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `WATCHDOG_USEC=1000000` (the e2e test's) the loop pings every 250 ms, and an
    /// iteration 100 ms after a ping pings again before its pass: a pass of up to ~430 ms
    /// still keeps the gap under half the timeout.
    #[test]
    fn the_watchdog_is_pinged_at_a_quarter_of_its_timeout() {
        let every = watchdog_interval(1_000_000);
        assert_eq!(every, Duration::from_millis(250));
        assert!(ping_due(every, Duration::from_millis(100)));
        assert!(
            !ping_due(every, Duration::from_millis(50)),
            "not on every iteration"
        );
    }
}
