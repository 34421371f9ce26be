//! Runs a [`Plan`]'s action DAG with bounded parallelism.

use std::future::Future;

use berth_core::{Action, Plan};
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
}

/// What happened to one planned action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action's id in the plan.
    pub id: usize,
    /// `Ok` when done; `Err(message)` when it failed or was skipped.
    pub result: Result<(), String>,
    /// True when the action was not attempted because an action it depends on failed.
    pub skipped: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
}

/// Executes `plan`, at most `parallelism` actions at a time; an action starts once everything it
/// depends on succeeded, and is skipped (with the failed dependency named) when one failed.
/// Returns one outcome per action, in plan order.
pub async fn execute<R: Runtime>(rt: &R, plan: &Plan, parallelism: usize) -> Vec<Outcome> {
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
            let action = &plan.actions[id];
            running.push(async move { (id, rt.execute(&action.action).await) });
        }
        let Some((id, result)) = running.next().await else {
            break;
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            tracing::warn!(owner = %plan.actions[id].owner, action = %plan.actions[id].action, error = %e, "action failed");
        } else {
            tracing::info!(owner = %plan.actions[id].owner, action = %plan.actions[id].action, reason = %plan.actions[id].reason, "done");
        }
        status[id] = if ok { Status::Done } else { Status::Failed };
        outcomes[id] = Some(Outcome {
            id,
            result: result.map_err(|e| e.to_string()),
            skipped: false,
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
                    let why = outcomes[*failed]
                        .as_ref()
                        .and_then(|o| o.result.clone().err())
                        .unwrap_or_default();
                    outcomes[dep] = Some(Outcome {
                        id: dep,
                        result: Err(format!(
                            "skipped: {} failed: {why}",
                            plan.actions[*failed].action
                        )),
                        skipped: true,
                    });
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
            o.unwrap_or(Outcome {
                id,
                result: Err("not executed (dependency cycle)".into()),
                skipped: true,
            })
        })
        .collect()
}
