//! Whether the Docker Engine answers, as the agent loop sees it, and the wait for it.
//!
//! A node agent waits for its engine: at start (berth started before dockerd, as at boot) and
//! mid-run (dockerd restarting, its socket gone, 500 answers). The agent never exits for it and
//! never plans on what it could not observe: a failed list is an unknown state, never "nothing
//! exists", so nothing is removed. Attempts are spaced by [`reconnect_backoff`] (250 ms
//! doubling to 5 s, without end); the loss and the return are each logged once, not every
//! attempt. When the engine answers again the next pass is a full resync (every pass relists
//! everything), which repairs whatever changed meanwhile.

use std::time::{Duration, Instant};

use berth_engine::{DockerEngine, reconnect_backoff};

/// The engine's reachability and when to try it next.
pub struct EngineLink {
    outage: Option<Outage>,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
}

struct Outage {
    since: Instant,
    retry_at: Instant,
    error: String,
}

impl Default for EngineLink {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineLink {
    /// An engine assumed reachable.
    pub fn new() -> Self {
        EngineLink {
            outage: None,
            delays: Box::new(reconnect_backoff()),
        }
    }

    /// An attempt to reach the engine failed at `now` with `error`: logs once when the engine
    /// becomes unreachable, and schedules the next attempt (capped back-off). Returns the delay
    /// until then.
    pub fn failed(&mut self, error: &str, now: Instant) -> Duration {
        let delay = self.delays.next().unwrap_or(berth_engine::RECONNECT_CAP);
        match &mut self.outage {
            Some(o) => {
                tracing::debug!(error, retry_in = ?delay, "Docker Engine still unreachable");
                o.retry_at = now + delay;
                o.error = error.to_string();
            }
            None => {
                tracing::warn!(
                    error,
                    retry_every_at_most = ?berth_engine::RECONNECT_CAP,
                    "Docker Engine unreachable; waiting for it (nothing is removed meanwhile; a full resync follows its return)"
                );
                self.outage = Some(Outage {
                    since: now,
                    retry_at: now + delay,
                    error: error.to_string(),
                });
            }
        }
        delay
    }

    /// The engine answered at `now`: logs once when this ends an outage. Returns true then (the
    /// pass that follows is the resync).
    pub fn answered(&mut self, now: Instant) -> bool {
        match self.outage.take() {
            Some(o) => {
                tracing::info!(
                    unreachable_for = ?now.saturating_duration_since(o.since),
                    "Docker Engine reachable again; full resync"
                );
                self.delays = Box::new(reconnect_backoff());
                true
            }
            None => false,
        }
    }

    /// `Some((how long the engine has not answered, the latest error))` during an outage.
    pub fn outage(&self, now: Instant) -> Option<(Duration, &str)> {
        self.outage
            .as_ref()
            .map(|o| (now.saturating_duration_since(o.since), o.error.as_str()))
    }

    /// True while the engine does not answer.
    pub fn is_down(&self) -> bool {
        self.outage.is_some()
    }

    /// When the next attempt falls due during an outage (`None` while the engine answers).
    pub fn retry_at(&self) -> Option<Instant> {
        self.outage.as_ref().map(|o| o.retry_at)
    }

    /// Connects to the engine, trying until it answers; `on_wait` is called after every failed
    /// attempt (the caller publishes not-ready and keeps its watchdog fed). Logs "Docker Engine
    /// reachable" once it answers (with the wait, if there was one).
    pub async fn connect(&mut self, mut on_wait: impl FnMut(&Self)) -> DockerEngine {
        loop {
            match DockerEngine::connect_once().await {
                Ok(engine) => {
                    if !self.answered(now()) {
                        tracing::debug!("Docker Engine reachable");
                    }
                    return engine;
                }
                Err(e) => {
                    let delay = self.failed(&format!("{e:#}"), now());
                    on_wait(self);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_and_retried_with_a_capped_back_off() {
        let mut link = EngineLink::new();
        let t0 = Instant::now();
        assert!(!link.answered(t0), "no outage to end");
        let delays: Vec<u128> = (0..8)
            .map(|_| link.failed("connection refused", t0).as_millis())
            .collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert!(link.is_down());
        assert_eq!(link.retry_at(), Some(t0 + Duration::from_secs(5)));
        let (for_, error) = link.outage(t0 + Duration::from_secs(9)).expect("down");
        assert_eq!(
            (for_, error),
            (Duration::from_secs(9), "connection refused")
        );
        assert!(
            link.answered(t0 + Duration::from_secs(10)),
            "ends the outage"
        );
        assert!(!link.is_down());
        assert_eq!(link.retry_at(), None);
        // The next outage starts its back-off afresh.
        assert_eq!(link.failed("500", t0).as_millis(), 250);
    }
}
