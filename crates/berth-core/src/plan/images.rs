//! The image phase of a create: the action that makes a container's image present — a pull
//! (`EnsureImage`), or a build (`BuildImage`, `spec.build`) when the image its tag names is
//! missing or was built from another input. Either is shared by every container of the plan
//! that needs the same image, and every create (and every stop of an old container) waits for
//! it: the old container keeps running until the new image exists.

use berth_api::PullPolicy;

use super::dependencies::merged_labels;
use super::{Action, Planner};
use crate::desired::{DesiredContainer, Owner};
use crate::intent::{BuildReason, Intent};
use crate::labels;

impl<'a> Planner<'a> {
    /// The action that makes the container's image present, shared by every container of
    /// this plan that needs the same image with the same pull settings (or the same build).
    pub(super) fn ensure_image(&mut self, owner: &Owner, dc: &'a DesiredContainer) -> usize {
        if let Some(a) = self.build_image(owner, dc) {
            return a;
        }
        // A built image that is present as desired is only inspected (policy `Never`).
        let policy = if dc.build.is_some() {
            PullPolicy::Never
        } else {
            dc.pull_policy
        };
        let key = (
            dc.config.image.clone(),
            policy,
            dc.image_pull_secrets.as_slice(),
        );
        if let Some(a) = self.images.get(&key) {
            return *a;
        }
        let ensure = Action::EnsureImage {
            image: dc.config.image.clone(),
            policy,
            pull_secrets: dc.image_pull_secrets.clone(),
        };
        let a = self
            .p
            .push(owner, &dc.hash, Intent::EnsureImage, ensure, vec![]);
        self.images.insert(key, a);
        a
    }

    /// The build of `dc`'s image when one is due: its tag names no local image, or one whose
    /// `berth.dev/build-hash` label is not the desired build hash. Containers sharing one
    /// build input (context digest, Dockerfile, args, target) share one build; each tag is
    /// added to it. `None` when `dc` declares no build (or its context was not read) or the
    /// image is present as desired.
    fn build_image(&mut self, owner: &Owner, dc: &'a DesiredContainer) -> Option<usize> {
        let build = dc.build.as_ref()?;
        let hash = build.hash()?;
        let tag = &dc.config.image;
        let reason = match self.observed.built_images.get(tag) {
            Some(img) if img.build_hash.as_deref() == Some(hash) => return None,
            Some(_) => BuildReason::ContextChanged,
            None => BuildReason::ImageMissing,
        };
        if let Some(&a) = self.builds.get(hash) {
            if let Action::BuildImage { tags, users, .. } = &mut self.p.actions[a].action {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
                users.push((owner.clone(), dc.hash.clone()));
            }
            return Some(a);
        }
        let mut image_labels = merged_labels(
            &self.desired.instance,
            &owner.key,
            None,
            "",
            &Default::default(),
        );
        // The image belongs to the instance, not to one object (several may share it).
        image_labels.retain(|k, _| k == labels::MANAGED_BY || k == labels::INSTANCE);
        let action = Action::BuildImage {
            tags: vec![tag.clone()],
            build: build.spec.clone(),
            hash: hash.to_string(),
            labels: image_labels,
            policy: dc.pull_policy,
            pull_secrets: dc.image_pull_secrets.clone(),
            users: vec![(owner.clone(), dc.hash.clone())],
        };
        let a = self
            .p
            .push(owner, &dc.hash, Intent::Build(reason), action, vec![]);
        self.builds.insert(hash, a);
        Some(a)
    }
}
