//! Images of `pullPolicy: Always` containers: their tags are re-resolved against the registry
//! (at agent start, every `--image-refresh-seconds`, and before `berth apply`), and every pass
//! observes which local image each tag names now, so that `plan` recreates the containers that
//! do not run it.

use std::collections::BTreeMap;

use anyhow::Context;
use berth_api::PullPolicy;
use berth_core::{DesiredState, ObservedState};
use berth_engine::{DockerEngine, ImageRefresh};

use crate::agent::Trigger;

/// Observes the engine, including the local image IDs of the `pullPolicy: Always` references
/// (what `plan` compares running containers with).
///
/// # Errors
/// When the engine cannot be listed (then nothing must be planned).
pub async fn observe(
    engine: &DockerEngine,
    desired: &DesiredState,
) -> anyhow::Result<ObservedState> {
    let mut observed = engine
        .observe(&desired.instance)
        .await
        .context("observe the engine")?;
    let always = always_images(desired);
    if !always.is_empty() {
        observed.image_ids = engine
            .local_image_ids(always.keys().map(String::as_str))
            .await;
    }
    let tags = crate::builds::build_tags(desired);
    if !tags.is_empty() {
        observed.built_images = engine.built_images(tags).await;
    }
    Ok(observed)
}

/// Tag references of `pullPolicy: Always` containers, each with the union of their
/// `imagePullSecrets` files (in declaration order). Digest references never move: left out.
pub fn always_images(desired: &DesiredState) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in desired.containers.values() {
        if c.pull_policy != PullPolicy::Always || c.config.image.contains('@') {
            continue;
        }
        let secrets = out.entry(c.config.image.clone()).or_default();
        for s in &c.image_pull_secrets {
            if !secrets.contains(s) {
                secrets.push(s.clone());
            }
        }
    }
    out
}

/// Re-resolves every reference of `images` against its registry (pulling those whose tag
/// moved), all at once; one result per reference, errors as text.
pub async fn refresh_images(
    engine: DockerEngine,
    images: BTreeMap<String, Vec<String>>,
) -> Vec<(String, Result<ImageRefresh, String>)> {
    let results = futures_util::future::join_all(
        images
            .iter()
            .map(|(image, secrets)| engine.refresh_image(image, secrets)),
    )
    .await;
    images
        .into_keys()
        .zip(results)
        .map(|(i, r)| (i, r.map_err(|e| e.to_string())))
        .collect()
}

/// Logs refresh results: moves at info; errors at warn, each distinct error once (`seen` keeps
/// the last error per reference). Returns why a pass should follow: [`Trigger::ImageTagMoved`]
/// when a present tag now names another image, [`Trigger::ImagePulled`] when a missing one was
/// pulled.
pub fn log_refresh(
    results: &[(String, Result<ImageRefresh, String>)],
    seen: &mut BTreeMap<String, String>,
) -> Option<Trigger> {
    let mut why = None;
    for (image, r) in results {
        match r {
            Ok(ImageRefresh::Moved {
                before: Some(before),
                after,
            }) => {
                why = Some(Trigger::ImageTagMoved);
                seen.remove(image);
                tracing::info!(image = %image, before = %before, after = %after, "image tag moved (pullPolicy Always): its containers are recreated");
            }
            Ok(ImageRefresh::Moved {
                before: None,
                after,
            }) => {
                why = why.or(Some(Trigger::ImagePulled));
                seen.remove(image);
                tracing::info!(image = %image, after = %after, "image pulled (pullPolicy Always)");
            }
            Ok(ImageRefresh::Unchanged) => {
                if seen.remove(image).is_some() {
                    tracing::info!(image = %image, "image re-resolved again");
                }
            }
            Err(e) => {
                if seen.get(image) != Some(e) {
                    tracing::warn!(image = %image, error = %e, "cannot re-resolve image (pullPolicy Always); its containers keep their image");
                    seen.insert(image.clone(), e.clone());
                }
            }
        }
    }
    why
}
