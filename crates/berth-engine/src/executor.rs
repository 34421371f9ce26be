//! Runs a [`Plan`]'s action DAG with bounded parallelism.

use std::future::Future;

use berth_core::{Action, Failure, FailureKind, Plan};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::EngineError;

/// Something that can carry out one action: the real engine, or a fake in tests.
pub trait Runtime {
    /// Carries out `action`.
    fn execute(&self, action: &Action) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// A container engine as the agent loop needs it: observe, then carry out actions.
pub trait Engine: Runtime {
    /// One relist of the engine's objects of berth instance `instance`.
    fn observe(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<berth_core::ObservedState, EngineError>> + Send;

    /// Local image ID (`sha256:…`) of each reference in `refs` that is present; references
    /// that are missing are absent from the map.
    fn local_image_ids<'a>(
        &'a self,
        refs: impl Iterator<Item = &'a str> + Send + 'a,
    ) -> impl Future<Output = std::collections::BTreeMap<String, String>> + Send + 'a;

    /// The local image each build tag in `tags` names, with its `berth.dev/build-hash` label;
    /// missing tags are absent. Engines that cannot build report none.
    fn built_images<'a>(
        &'a self,
        tags: Vec<&'a str>,
    ) -> impl Future<Output = std::collections::BTreeMap<String, berth_core::ObservedImage>> + Send + 'a
    {
        let _ = tags;
        async { std::collections::BTreeMap::new() }
    }
}

/// What happened to one planned action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action's id in the plan.
    pub id: usize,
    /// `Ok` when done; the failure (its kind and message) when it failed or was skipped.
    pub result: Result<(), Failure>,
    /// True when the action was not attempted because an action it depends on failed.
    pub skipped: bool,
    /// How long the engine took (zero for a skipped action).
    pub took: std::time::Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
}

/// What the executor tells an observer while it runs a plan (`berth apply`'s progress line).
/// Ids are the actions' ids in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The engine call for the action started.
    Started {
        /// The action's id.
        id: usize,
    },
    /// The action ended: done, failed, or skipped because a dependency failed.
    Finished {
        /// The action's id.
        id: usize,
        /// True when it was done.
        ok: bool,
    },
}

/// Executes `plan`, at most `parallelism` actions at a time; an action starts once everything it
/// depends on succeeded, and is skipped (with the failed dependency named) when one failed.
/// Returns one outcome per action, in plan order.
pub async fn execute<R: Runtime>(rt: &R, plan: &Plan, parallelism: usize) -> Vec<Outcome> {
    execute_observed(rt, plan, parallelism, |_| {}).await
}

/// [`execute`], telling `observe` when each action starts and ends (in the order it happens;
/// every action ends exactly once, skipped ones without having started).
pub async fn execute_observed<R: Runtime>(
    rt: &R,
    plan: &Plan,
    parallelism: usize,
    mut observe: impl FnMut(Progress) + Send,
) -> Vec<Outcome> {
    let n = plan.actions.len();
    let mut status = vec![Status::Waiting; n];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for a in &plan.actions {
        for d in &a.after {
            dependents[*d].push(a.id);
        }
    }
    let mut ready: std::collections::VecDeque<usize> = plan
        .actions
        .iter()
        .filter(|a| a.after.is_empty())
        .map(|a| a.id)
        .collect();
    let mut running = FuturesUnordered::new();
    let parallelism = parallelism.max(1);
    loop {
        while running.len() < parallelism {
            let Some(id) = ready.pop_front() else { break };
            status[id] = Status::Running;
            observe(Progress::Started { id });
            let action = &plan.actions[id];
            running.push(async move {
                let started = std::time::Instant::now();
                let result = rt.execute(&action.action).await;
                (id, result, started.elapsed())
            });
        }
        let Some((id, result, took)) = running.next().await else {
            break;
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            tracing::warn!(owner = %plan.actions[id].owner, action = %plan.actions[id].action, error = %e, "action failed");
        } else {
            tracing::info!(owner = %plan.actions[id].owner, action = %plan.actions[id].action, intent = %plan.actions[id].intent, "done");
        }
        status[id] = if ok { Status::Done } else { Status::Failed };
        observe(Progress::Finished { id, ok });
        outcomes[id] = Some(Outcome {
            id,
            result: result.map_err(|e| Failure::new(e.kind(), e.to_string())),
            skipped: false,
            took,
        });
        // Release or skip dependents.
        let mut stack = vec![id];
        while let Some(done) = stack.pop() {
            for &dep in &dependents[done] {
                if status[dep] != Status::Waiting {
                    continue;
                }
                let after = &plan.actions[dep].after;
                if let Some(failed) = after.iter().find(|d| status[**d] == Status::Failed) {
                    status[dep] = Status::Failed;
                    // A skipped action fails the way its dependency did (a create skipped
                    // because the pull failed waits as ImagePullBackOff).
                    let why = outcomes[*failed]
                        .as_ref()
                        .and_then(|o| o.result.clone().err())
                        .unwrap_or(Failure::new(FailureKind::Engine, ""));
                    outcomes[dep] = Some(Outcome {
                        id: dep,
                        result: Err(Failure::new(
                            why.kind,
                            format!(
                                "skipped: {} failed: {}",
                                plan.actions[*failed].action, why.message
                            ),
                        )),
                        skipped: true,
                        took: std::time::Duration::ZERO,
                    });
                    observe(Progress::Finished { id: dep, ok: false });
                    stack.push(dep);
                } else if after.iter().all(|d| status[*d] == Status::Done) {
                    ready.push_back(dep);
                }
            }
        }
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(id, o)| {
            o.unwrap_or_else(|| {
                observe(Progress::Finished { id, ok: false });
                Outcome {
                    id,
                    result: Err(Failure::new(
                        FailureKind::Engine,
                        "not executed (dependency cycle)",
                    )),
                    skipped: true,
                    took: std::time::Duration::ZERO,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::{Kind, ObjectKey, PullPolicy};
    use berth_core::{Intent, Owner, PlannedAction};

    use super::*;

    /// Fails every pull with the engine's pull error; everything else succeeds.
    struct PullFails;

    impl Runtime for PullFails {
        async fn execute(&self, action: &Action) -> Result<(), EngineError> {
            match action {
                Action::EnsureImage { image, .. } => Err(EngineError::Pull {
                    image: image.clone(),
                    message: "manifest unknown".into(),
                }),
                _ => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn progress_reports_every_action_once_in_order() {
        let owner = Owner::replica(ObjectKey::new(Kind::Container, "default", "web"), 0);
        let pull = PlannedAction {
            id: 0,
            owner: owner.clone(),
            hash: "v1-a".into(),
            intent: Intent::Create,
            action: Action::EnsureImage {
                image: "r:5000/app:1".into(),
                policy: PullPolicy::IfNotPresent,
                pull_secrets: vec![],
            },
            after: vec![],
        };
        let create = PlannedAction {
            id: 1,
            action: Action::CreateContainer {
                name: "default_web_0".into(),
                config: Box::default(),
                labels: BTreeMap::new(),
            },
            after: vec![0],
            ..pull.clone()
        };
        let plan = Plan {
            actions: vec![pull, create],
            waiting: vec![],
        };
        let mut seen = Vec::new();
        let outcomes = execute_observed(&PullFails, &plan, 2, |p| seen.push(p)).await;
        assert_eq!(outcomes.len(), 2);
        // The pull starts and fails; the create never starts and ends as skipped.
        assert_eq!(
            seen,
            [
                Progress::Started { id: 0 },
                Progress::Finished { id: 0, ok: false },
                Progress::Finished { id: 1, ok: false },
            ]
        );
    }

    #[tokio::test]
    async fn a_skipped_action_carries_the_failed_dependency_kind() {
        let owner = Owner::replica(ObjectKey::new(Kind::Container, "default", "web"), 0);
        let action = |id: usize, action: Action, after: Vec<usize>| PlannedAction {
            id,
            owner: owner.clone(),
            hash: "v1-a".into(),
            intent: Intent::Create,
            action,
            after,
        };
        let plan = Plan {
            actions: vec![
                action(
                    0,
                    Action::EnsureImage {
                        image: "r:5000/app:1".into(),
                        policy: PullPolicy::IfNotPresent,
                        pull_secrets: vec![],
                    },
                    vec![],
                ),
                action(
                    1,
                    Action::CreateContainer {
                        name: "default_web_0".into(),
                        config: Box::default(),
                        labels: BTreeMap::new(),
                    },
                    vec![0],
                ),
            ],
            waiting: vec![],
        };
        let outcomes = execute(&PullFails, &plan, 2).await;
        let kinds: Vec<Option<FailureKind>> = outcomes
            .iter()
            .map(|o| o.result.as_ref().err().map(|f| f.kind))
            .collect();
        assert_eq!(
            kinds,
            [Some(FailureKind::ImagePull), Some(FailureKind::ImagePull)]
        );
        assert!(outcomes[1].skipped);
        assert!(
            outcomes[1]
                .result
                .as_ref()
                .is_err_and(|f| f.message.starts_with("skipped: ensure image r:5000/app:1")),
            "{:?}",
            outcomes[1]
        );
    }
}
