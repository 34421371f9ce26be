//! Status computation: where this host stands with each object ([`host_states`]), the aggregate
//! conditions over all hosts ([`aggregate`]), and whether a status write is needed at all
//! ([`status_update`]). Pure and deterministic: every host that computes the aggregate from the
//! same entries gets the same result, so concurrent writers agree and writes stop.

use std::collections::BTreeMap;

use berth_api::{Condition, HostEntry, HostObjectState, Kind, ObjectKey, ObjectStatus};

use crate::backoff::{RetryBook, RetryKind};
use crate::desired::DesiredState;
use crate::observed::{ObservedState, RunState};
use crate::plan::Plan;
use crate::reason::{HostEffect, WaitReason};

/// This host's view of one object, before it gets a generation and a transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostState {
    /// Where the host stands.
    pub state: HostObjectState,
    /// CamelCase reason.
    pub reason: String,
    /// Detail.
    pub message: String,
    /// Containers: replicas declared.
    pub replicas: Option<u32>,
    /// Containers: replicas running with the desired spec hash.
    pub ready_replicas: Option<u32>,
    /// Containers: restarts counted by the retry book (sum over replicas), when any.
    pub restart_count: Option<u32>,
    /// Containers: exit code before the latest restart, when known.
    pub last_exit_code: Option<i64>,
}

/// The state of every desired (or blocked) object on this host, from the observed state the
/// plan was made from and the plan itself: `Degraded` when the plan says the object waits for a
/// reason that [degrades](WaitReason::host_effect) it, `Progressing` while actions are planned for it or replicas are
/// not all running (and healthy, when they have checks) with the current spec, `Ready`
/// otherwise.
pub fn host_states(
    desired: &DesiredState,
    observed: &ObservedState,
    plan: &Plan,
    retries: &RetryBook,
) -> BTreeMap<ObjectKey, HostState> {
    let mut out = BTreeMap::new();
    let ready = |reason: &str| HostState {
        state: HostObjectState::Ready,
        reason: reason.into(),
        message: String::new(),
        replicas: None,
        ready_replicas: None,
        restart_count: None,
        last_exit_code: None,
    };
    for key in desired.networks.keys() {
        out.insert(key.clone(), ready("Created"));
    }
    for key in desired.volumes.keys() {
        out.insert(key.clone(), ready("Created"));
    }
    for (key, dc) in &desired.containers {
        let running = observed
            .containers
            .iter()
            .filter(|c| {
                // Running with the current spec, not failing, and healthy when it has checks
                // (engine health check or readiness probe), as a Kubernetes ready Pod.
                let checked =
                    c.health.is_some() || c.probe.as_ref().and_then(|p| p.ready).is_some();
                c.key.as_ref() == Some(key)
                    && c.replica.is_some_and(|r| r < dc.replicas)
                    && c.hash.as_deref() == Some(dc.hash.as_str())
                    && c.state == RunState::Running
                    && !c.failing()
                    && (!checked || c.healthy())
            })
            .count() as u32;
        let mut s = ready("Running");
        s.replicas = Some(dc.replicas);
        s.ready_replicas = Some(running);
        let restarts: Vec<&crate::backoff::RetryEntry> = (0..dc.replicas)
            .filter_map(|r| {
                retries.get(
                    &crate::Owner::replica(key.clone(), r),
                    &dc.hash,
                    RetryKind::Restart,
                )
            })
            .collect();
        if !restarts.is_empty() {
            s.restart_count = Some(restarts.iter().map(|e| e.attempts).sum());
            s.last_exit_code = restarts
                .iter()
                .max_by_key(|e| e.last_attempt)
                .and_then(|e| e.exit_code);
        }
        if running < dc.replicas {
            s.state = HostObjectState::Progressing;
            s.reason = "ReplicasNotReady".into();
            s.message = format!("{running}/{} replicas running", dc.replicas);
        }
        out.insert(key.clone(), s);
    }
    let blocked = (desired
        .blocked
        .iter()
        .map(|(k, w)| (k, w, WaitReason::InvalidReference)))
    .chain(
        desired
            .refused
            .iter()
            .map(|(k, w)| (k, w, WaitReason::PolicyViolation)),
    );
    for (key, why, reason) in blocked {
        out.insert(
            key.clone(),
            HostState {
                state: HostObjectState::Degraded,
                reason: reason.as_str().into(),
                message: why.clone(),
                replicas: None,
                ready_replicas: None,
                restart_count: None,
                last_exit_code: None,
            },
        );
    }
    for a in &plan.actions {
        if let Some(s) = out.get_mut(&a.owner.key)
            && s.state != HostObjectState::Degraded
            && s.reason != "Reconciling"
        {
            s.state = HostObjectState::Progressing;
            s.reason = "Reconciling".into();
            s.message = a.intent.to_string();
        }
    }
    for w in &plan.waiting {
        let state = match w.reason.host_effect() {
            HostEffect::Degraded => HostObjectState::Degraded,
            HostEffect::Progressing => HostObjectState::Progressing,
            HostEffect::None => continue,
        };
        if let Some(s) = out.get_mut(&w.owner.key)
            && s.state != HostObjectState::Degraded
        {
            s.state = state;
            s.reason = w.reason.as_str().into();
            s.message = w.message.clone();
        }
    }
    out
}

/// Counts of objects by state (for the `Host` status).
pub fn counts(states: &BTreeMap<ObjectKey, HostState>) -> berth_api::ObjectCounts {
    let mut c = berth_api::ObjectCounts::default();
    for s in states.values() {
        c.total += 1;
        match s.state {
            HostObjectState::Ready => c.ready += 1,
            HostObjectState::Progressing => c.progressing += 1,
            HostObjectState::Degraded => c.degraded += 1,
        }
    }
    c
}

/// This host's new entry for an object at `generation`: the transition time is kept from
/// `previous` while the state stays the same, else set to `now` (RFC 3339).
pub fn entry(
    host: &str,
    generation: i64,
    s: &HostState,
    previous: Option<&HostEntry>,
    now: &str,
) -> HostEntry {
    let since = previous
        .filter(|p| p.state == s.state)
        .and_then(|p| p.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    HostEntry {
        name: host.to_string(),
        observed_generation: generation,
        state: s.state,
        reason: s.reason.clone(),
        message: s.message.clone(),
        replicas: s.replicas,
        ready_replicas: s.ready_replicas,
        restart_count: s.restart_count,
        last_exit_code: s.last_exit_code,
        last_transition_time: Some(since),
    }
}

fn condition(
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &str,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

fn summary(entries: &[&HostEntry], state: HostObjectState) -> String {
    let hit: Vec<String> = entries
        .iter()
        .filter(|e| e.state == state)
        .take(3)
        .map(|e| {
            if e.reason.is_empty() {
                e.name.clone()
            } else {
                format!("{} ({})", e.name, e.reason)
            }
        })
        .collect();
    let n = entries.iter().filter(|e| e.state == state).count();
    let more = if n > hit.len() {
        format!(" and {} more", n - hit.len())
    } else {
        String::new()
    };
    format!("{}{more}", hit.join(", "))
}

/// The aggregate conditions and `observedGeneration` over all `entries` of an object at
/// `generation`. Transition times are kept from `previous` while a condition's status stays.
///
/// - `Ready`: every host is `Ready` at the current generation (and there is at least one);
/// - `Progressing` (and `Reconciling`): a host is `Progressing`, or has not yet acted on the
///   current generation;
/// - `Degraded` (and `Stalled`): a host is `Degraded`;
/// - `observedGeneration`: the lowest generation every host has acted on.
pub fn aggregate(
    generation: i64,
    entries: &[HostEntry],
    previous: &[Condition],
    now: &str,
) -> (Vec<Condition>, Option<i64>) {
    let mut sorted: Vec<&HostEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let observed = sorted.iter().map(|e| e.observed_generation).min();
    let total = sorted.len();
    let current = |e: &&&HostEntry| e.observed_generation >= generation;
    let ready_n = sorted
        .iter()
        .filter(|e| e.state == HostObjectState::Ready && current(e))
        .count();
    let stale_n = sorted.iter().filter(|e| !current(e)).count();
    let progressing = sorted
        .iter()
        .any(|e| e.state == HostObjectState::Progressing)
        || stale_n > 0;
    let degraded = sorted.iter().any(|e| e.state == HostObjectState::Degraded);
    let ready = total > 0 && ready_n == total;
    let (r_reason, r_msg) = if total == 0 {
        ("NoHosts", "no host runs this object".to_string())
    } else if ready {
        ("AllHostsReady", format!("{ready_n}/{total} hosts ready"))
    } else {
        ("HostsNotReady", format!("{ready_n}/{total} hosts ready"))
    };
    let (p_reason, p_msg) = if sorted
        .iter()
        .any(|e| e.state == HostObjectState::Progressing)
    {
        (
            "HostsProgressing",
            summary(&sorted, HostObjectState::Progressing),
        )
    } else if stale_n > 0 {
        (
            "NewGeneration",
            format!("{stale_n}/{total} hosts have not acted on generation {generation} yet"),
        )
    } else {
        ("Converged", String::new())
    };
    let (d_reason, d_msg) = if degraded {
        ("HostsDegraded", summary(&sorted, HostObjectState::Degraded))
    } else {
        ("NoFailures", String::new())
    };
    let g = Some(generation);
    let conditions = vec![
        condition("Ready", ready, r_reason, r_msg, g, previous, now),
        condition(
            "Progressing",
            progressing,
            p_reason,
            p_msg.clone(),
            g,
            previous,
            now,
        ),
        condition(
            "Degraded",
            degraded,
            d_reason,
            d_msg.clone(),
            g,
            previous,
            now,
        ),
        condition(
            "Reconciling",
            progressing,
            p_reason,
            p_msg,
            g,
            previous,
            now,
        ),
        condition("Stalled", degraded, d_reason, d_msg, g, previous, now),
    ];
    (conditions, observed)
}

/// What a host should write for one object, or `None` when the cluster already holds it.
///
/// `current` is the object's status as the cluster holds it now; `own` this host's new entry
/// (`None` when the object no longer targets this host: its entry is removed). The returned
/// status holds only this host's entry (server-side apply with the host's own field manager
/// owns just that entry) plus the aggregate computed over the cluster's entries with this
/// host's replaced. A host whose own entry is unchanged writes only when the aggregate is
/// stale *and* it is the first host by name (`fix_aggregate`), so a fleet does not stampede to
/// correct the same aggregate.
pub fn status_update(
    host: &str,
    generation: i64,
    own: Option<HostEntry>,
    current: &ObjectStatus,
    now: &str,
) -> Option<ObjectStatus> {
    let mut entries: Vec<HostEntry> = current
        .hosts
        .iter()
        .filter(|e| e.name != host)
        .cloned()
        .collect();
    if let Some(e) = &own {
        entries.push(e.clone());
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let (conditions, observed) = aggregate(generation, &entries, &current.conditions, now);
    let old_own = current.hosts.iter().find(|e| e.name == host);
    let own_changed = old_own != own.as_ref();
    let aggregate_changed =
        conditions != current.conditions || observed != current.observed_generation;
    let fix_aggregate = entries.first().is_some_and(|e| e.name == host);
    if own_changed || (aggregate_changed && fix_aggregate) {
        Some(ObjectStatus {
            observed_generation: observed,
            conditions,
            hosts: own.into_iter().collect(),
        })
    } else {
        None
    }
}

/// True for the kinds whose objects get a status (all three).
pub fn has_status(kind: Kind) -> bool {
    matches!(kind, Kind::Container | Kind::Network | Kind::Volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn e(name: &str, generation: i64, state: HostObjectState) -> HostEntry {
        HostEntry {
            name: name.into(),
            observed_generation: generation,
            state,
            reason: String::new(),
            message: String::new(),
            last_transition_time: Some(T0.into()),
            ..Default::default()
        }
    }

    fn status_of(c: &[Condition], t: &str) -> String {
        c.iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn host_states_from_plan_and_observed() {
        use crate::observed::ObservedContainer;
        use crate::plan::{PlannedAction, Waiting};
        use crate::{Action, Owner};
        use berth_api::{ContainerSpec, Manifest, ManifestMetadata};

        let m = |name: &str| Manifest::Container {
            metadata: ManifestMetadata {
                name: name.into(),
                ..Default::default()
            },
            spec: std::sync::Arc::new(ContainerSpec {
                image: Some("busybox:1".into()),
                ..Default::default()
            }),
        };
        let objs = [
            m("running"),
            m("creating"),
            m("crashing"),
            m("rolling"),
            m("rolledback"),
            m("pullbackoff"),
            m("neverpull"),
        ];
        let desired = crate::resolve::resolve(objs.iter());
        let key = |n: &str| ObjectKey::new(Kind::Container, "default", n);
        let observed = ObservedState {
            containers: vec![ObservedContainer {
                id: "1".into(),
                name: "default_running_0".into(),
                key: Some(key("running")),
                replica: Some(0),
                hash: Some(desired.containers[&key("running")].hash.clone()),
                state: RunState::Running,
                exit_code: None,
                networks: BTreeMap::new(),
                health: None,
                network_mode: None,
                probe: None,
                image_id: None,
            }],
            ..Default::default()
        };
        let plan = Plan {
            actions: vec![PlannedAction {
                id: 0,
                owner: Owner::replica(key("creating"), 0),
                hash: String::new(),
                intent: crate::Intent::Create,
                action: Action::StartContainer {
                    name: "x".into(),
                    restart: false,
                },
                after: vec![],
            }],
            waiting: vec![
                Waiting {
                    owner: Owner::replica(key("crashing"), 0),
                    reason: WaitReason::CrashLoopBackOff,
                    message: "back-off 10s".into(),
                    until: None,
                },
                Waiting {
                    owner: Owner::replica(key("rolling"), 0),
                    reason: WaitReason::RollingUpdate,
                    message: "waiting for new container x_next to become ready".into(),
                    until: None,
                },
                Waiting {
                    owner: Owner::replica(key("rolledback"), 0),
                    reason: WaitReason::RolledBack,
                    message: "rolled back".into(),
                    until: None,
                },
                Waiting {
                    owner: Owner::replica(key("pullbackoff"), 0),
                    reason: WaitReason::ImagePullBackOff,
                    message: "1 failed attempt(s); last error: pull r/app:1: denied".into(),
                    until: None,
                },
                Waiting {
                    owner: Owner::replica(key("neverpull"), 0),
                    reason: WaitReason::ErrImageNeverPull,
                    message: "image x is not present and pullPolicy is Never".into(),
                    until: None,
                },
            ],
        };
        let mut book = RetryBook::default();
        let crashing = Owner::replica(key("crashing"), 0);
        let hash = &desired.containers[&key("crashing")].hash;
        let t = std::time::Instant::now();
        book.record_restart(
            crashing.clone(),
            hash,
            t,
            crate::backoff::Backoff::CRASH_LOOP,
            Some(2),
        );
        book.record_restart(
            crashing,
            hash,
            t,
            crate::backoff::Backoff::CRASH_LOOP,
            Some(3),
        );
        let s = host_states(&desired, &observed, &plan, &book);
        assert_eq!(s[&key("crashing")].restart_count, Some(2));
        assert_eq!(s[&key("crashing")].last_exit_code, Some(3));
        assert_eq!(s[&key("running")].restart_count, None);
        assert_eq!(s[&key("running")].state, HostObjectState::Ready);
        assert_eq!(s[&key("running")].ready_replicas, Some(1));
        assert_eq!(s[&key("creating")].state, HostObjectState::Progressing);
        assert_eq!(s[&key("creating")].message, "container missing");
        assert_eq!(s[&key("crashing")].state, HostObjectState::Degraded);
        assert_eq!(s[&key("crashing")].reason, "CrashLoopBackOff");
        assert_eq!(s[&key("rolling")].state, HostObjectState::Progressing);
        assert_eq!(s[&key("rolling")].reason, "RollingUpdate");
        assert_eq!(s[&key("rolledback")].state, HostObjectState::Degraded);
        assert_eq!(s[&key("rolledback")].reason, "RolledBack");
        // A failing pull is as degraded as any other backoff (it was once reported Progressing).
        assert_eq!(s[&key("pullbackoff")].state, HostObjectState::Degraded);
        assert_eq!(s[&key("pullbackoff")].reason, "ImagePullBackOff");
        assert_eq!(s[&key("neverpull")].state, HostObjectState::Degraded);
        assert_eq!(s[&key("neverpull")].reason, "ErrImageNeverPull");
        let c = counts(&s);
        assert_eq!((c.total, c.ready, c.progressing, c.degraded), (7, 1, 2, 4));
    }

    #[test]
    fn aggregate_table() {
        use HostObjectState::*;
        // (entries, generation, Ready, Progressing, Degraded, observedGeneration)
        type Case = (
            Vec<HostEntry>,
            i64,
            &'static str,
            &'static str,
            &'static str,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (vec![], 1, "False", "False", "False", None),
            (
                vec![e("a", 1, Ready), e("b", 1, Ready)],
                1,
                "True",
                "False",
                "False",
                Some(1),
            ),
            (
                vec![e("a", 1, Ready), e("b", 1, Progressing)],
                1,
                "False",
                "True",
                "False",
                Some(1),
            ),
            (
                vec![e("a", 1, Ready), e("b", 1, Degraded)],
                1,
                "False",
                "False",
                "True",
                Some(1),
            ),
            (
                vec![e("a", 2, Ready), e("b", 1, Ready)],
                2,
                "False",
                "True",
                "False",
                Some(1),
            ),
            (
                vec![e("a", 2, Degraded), e("b", 2, Progressing)],
                2,
                "False",
                "True",
                "True",
                Some(2),
            ),
        ];
        for (i, (entries, generation, r, p, d, og)) in cases.into_iter().enumerate() {
            let (c, observed) = aggregate(generation, &entries, &[], T0);
            assert_eq!(status_of(&c, "Ready"), r, "case {i} Ready");
            assert_eq!(status_of(&c, "Progressing"), p, "case {i} Progressing");
            assert_eq!(status_of(&c, "Degraded"), d, "case {i} Degraded");
            assert_eq!(
                status_of(&c, "Reconciling"),
                p,
                "case {i} Reconciling mirrors"
            );
            assert_eq!(status_of(&c, "Stalled"), d, "case {i} Stalled mirrors");
            assert_eq!(observed, og, "case {i} observedGeneration");
        }
    }

    #[test]
    fn aggregate_is_order_independent_and_keeps_transition_times() {
        use HostObjectState::*;
        let a = [e("a", 1, Ready), e("b", 1, Degraded)];
        let b = [e("b", 1, Degraded), e("a", 1, Ready)];
        let (ca, _) = aggregate(1, &a, &[], T0);
        assert_eq!(ca, aggregate(1, &b, &[], T0).0);
        let (later, _) = aggregate(1, &a, &ca, T1);
        assert_eq!(
            later, ca,
            "same statuses: same transition times, whatever the clock"
        );
        let (healed, _) = aggregate(1, &[e("a", 1, Ready), e("b", 1, Ready)], &ca, T1);
        let ready = healed.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.last_transition_time, T1);
    }

    #[test]
    fn writes_only_on_change_and_stops_once_written() {
        use HostObjectState::*;
        let own = e("h1", 1, Ready);
        let first = status_update("h1", 1, Some(own.clone()), &ObjectStatus::default(), T0)
            .expect("first write");
        assert_eq!(first.hosts, vec![own.clone()], "only the host's own entry");
        // What the cluster holds after the write: nothing more to write, whatever the clock.
        let stored = ObjectStatus {
            hosts: vec![own.clone()],
            ..first.clone()
        };
        assert_eq!(status_update("h1", 1, Some(own.clone()), &stored, T1), None);
        // Another host's entry changes the aggregate: h1 (first by name) fixes it; h2, whose
        // entry is unchanged and who is not first, stays quiet.
        let mut other = stored.clone();
        other.hosts.push(e("h2", 1, Degraded));
        assert!(status_update("h1", 1, Some(own.clone()), &other, T1).is_some());
        assert_eq!(
            status_update("h2", 1, Some(e("h2", 1, Degraded)), &other, T1),
            None
        );
        // A new generation: the own entry changes, so the host writes.
        assert!(status_update("h1", 2, Some(e("h1", 2, Ready)), &stored, T1).is_some());
        // No longer targeted: the entry is removed (written with no hosts).
        let removal = status_update("h1", 1, None, &stored, T1).expect("removal");
        assert!(removal.hosts.is_empty());
        assert_eq!(
            status_update("h1", 1, None, &ObjectStatus::default(), T1),
            None
        );
    }
}
