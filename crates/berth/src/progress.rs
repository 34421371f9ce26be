//! `berth apply`'s progress line on a terminal: objects done out of the objects the pass acts
//! on, and the slowest action in flight with how long it has been running. Drawn with
//! `indicatif` on standard error, and only when standard error is a terminal; otherwise it is
//! hidden and `apply` prints its plain per-pass lines alone.
//!
//! The line is cut to the terminal's width (a line that wraps cannot be redrawn in place): the
//! width is the terminal's column count even when its row count is unknown (a pseudo-terminal
//! whose size was set with `stty cols N` alone), where `console` would assume 80 columns. Other
//! lines written to standard error while the line is drawn (a build's steps) go through
//! [`StderrLines`], which prints them above it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use berth_api::ObjectKey;
use berth_core::Plan;
use berth_engine::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How often the slowest action's running time is redrawn.
pub const TICK: Duration = Duration::from_millis(200);

/// Redraws per second at most.
const REFRESH_HZ: u8 = 20;

/// Lines for standard error while a progress line may be drawn: printed above the line when one
/// is (so that neither garbles the other), else plainly.
#[derive(Clone, Default)]
pub struct StderrLines {
    current: Arc<Mutex<Option<ProgressBar>>>,
}

impl StderrLines {
    /// Prints `line` on standard error, above the progress line when one is drawn.
    pub fn println(&self, line: &str) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some(bar) => bar.println(line),
            None => crate::errln!("{line}"),
        }
    }

    fn set(&self, bar: Option<ProgressBar>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = bar;
    }
}

/// Standard error as `indicatif` draws on it, with the width [`columns`] reads.
#[derive(Debug)]
struct Stderr(console::Term);

/// The terminal's column count on standard error; 80 when it is not known.
fn columns() -> u16 {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(size) if size.ws_col > 0 => size.ws_col,
        _ => 80,
    }
}

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        columns()
    }
    fn height(&self) -> u16 {
        self.0.size_checked().map_or(24, |(rows, _)| rows)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The progress line of one pass.
pub struct ApplyProgress {
    bar: ProgressBar,
    state: Mutex<State>,
    /// Where other lines go while this one is drawn.
    lines: StderrLines,
}

#[derive(Default)]
struct State {
    /// Set from the first event: actions not yet ended, per object.
    remaining: Option<BTreeMap<ObjectKey, usize>>,
    /// Actions in flight: when each started and what it is.
    in_flight: BTreeMap<usize, (Instant, String)>,
}

impl ApplyProgress {
    /// A line on standard error, hidden when standard error is not a terminal; while it is
    /// drawn, `lines` prints above it.
    pub fn on_stderr(lines: &StderrLines) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::term_like_with_hz(
                Box::new(Stderr(console::Term::buffered_stderr())),
                REFRESH_HZ,
            )
        } else {
            ProgressDrawTarget::hidden()
        };
        Self::with_target(target, lines)
    }

    /// A line that is never drawn (tests read its position and message).
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden(), &StderrLines::default())
    }

    fn with_target(target: ProgressDrawTarget, lines: &StderrLines) -> Self {
        let bar = ProgressBar::with_draw_target(None, target);
        // `wide_msg` fills what the terminal's width leaves and is cut to it.
        let style = ProgressStyle::with_template("{spinner} {pos}/{len} objects  {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        if !bar.is_hidden() {
            lines.set(Some(bar.clone()));
        }
        ApplyProgress {
            bar,
            state: Mutex::new(State::default()),
            lines: lines.clone(),
        }
    }

    /// False when nothing will be drawn (standard error is not a terminal).
    pub fn is_drawn(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Takes one executor event of `plan`.
    pub fn on(&self, plan: &Plan, event: Progress) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let remaining = st.remaining.get_or_insert_with(|| {
            let mut per_object = BTreeMap::new();
            for a in &plan.actions {
                *per_object.entry(a.owner.key.clone()).or_insert(0) += 1;
            }
            self.bar.set_length(per_object.len() as u64);
            self.bar.set_position(0);
            per_object
        });
        match event {
            Progress::Started { id } => {
                if let Some(a) = plan.actions.get(id) {
                    let what = format!("{} ({})", a.action, a.owner);
                    st.in_flight.insert(id, (Instant::now(), what));
                }
            }
            Progress::Finished { id, .. } => {
                if let Some(left) = plan
                    .actions
                    .get(id)
                    .and_then(|a| remaining.get_mut(&a.owner.key))
                {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.bar.inc(1);
                    }
                }
                st.in_flight.remove(&id);
            }
        }
        drop(st);
        self.tick();
    }

    /// Redraws the slowest action in flight with its running time.
    pub fn tick(&self) {
        let Ok(st) = self.state.lock() else {
            return;
        };
        let msg = match st.in_flight.values().min_by_key(|(started, _)| *started) {
            Some((started, what)) => {
                format!("slowest: {what}, {:.1} s", started.elapsed().as_secs_f64())
            }
            None => String::new(),
        };
        self.bar.set_message(msg);
        self.bar.tick();
    }

    /// Objects whose actions have all ended, and the objects the pass acts on.
    pub fn objects(&self) -> (u64, u64) {
        (self.bar.position(), self.bar.length().unwrap_or(0))
    }

    /// The current message (the slowest action in flight).
    pub fn message(&self) -> String {
        self.bar.message().to_string()
    }

    /// Clears the line (the pass's plain lines follow); other lines print plainly again.
    pub fn finish(&self) {
        if !self.bar.is_hidden() {
            self.lines.set(None);
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::{Kind, PullPolicy};
    use berth_core::{Action, Intent, Owner, PlannedAction};

    use super::*;

    fn plan() -> Plan {
        let web = ObjectKey::new(Kind::Container, "default", "web");
        let db = ObjectKey::new(Kind::Container, "default", "db");
        let action = |id, key: &ObjectKey, replica, action| PlannedAction {
            id,
            owner: Owner::replica(key.clone(), replica),
            hash: "v1-a".into(),
            intent: Intent::Create,
            action,
            after: vec![],
        };
        let create = |name: &str| Action::CreateContainer {
            name: name.into(),
            config: Box::default(),
            labels: BTreeMap::new(),
        };
        let pull = Action::EnsureImage {
            image: "r:5000/db:1".into(),
            policy: PullPolicy::IfNotPresent,
            pull_secrets: vec![],
        };
        Plan {
            actions: vec![
                action(0, &web, 0, create("default_web_0")),
                action(1, &web, 1, create("default_web_1")),
                action(2, &db, 0, pull),
            ],
            waiting: vec![],
        }
    }

    #[test]
    fn counts_objects_not_replicas_and_names_the_slowest_action_in_flight() {
        let p = plan();
        let line = ApplyProgress::hidden();
        line.on(&p, Progress::Started { id: 2 });
        line.on(&p, Progress::Started { id: 0 });
        assert_eq!(
            line.objects(),
            (0, 2),
            "two objects: web (2 replicas) and db"
        );
        let msg = line.message();
        assert!(
            msg.starts_with("slowest: ensure image r:5000/db:1") && msg.ends_with(" s"),
            "{msg}"
        );
        line.on(&p, Progress::Finished { id: 0, ok: true });
        assert_eq!(line.objects(), (0, 2), "web has a replica left");
        line.on(&p, Progress::Finished { id: 2, ok: false });
        assert_eq!(
            line.objects(),
            (1, 2),
            "a failed action ends its object too"
        );
        line.on(&p, Progress::Started { id: 1 });
        assert!(
            line.message().contains("default_web_1"),
            "{}",
            line.message()
        );
        line.on(&p, Progress::Finished { id: 1, ok: true });
        assert_eq!(line.objects(), (2, 2));
        assert_eq!(line.message(), "");
    }
}
