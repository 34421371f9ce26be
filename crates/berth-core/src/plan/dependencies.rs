//! Phases 2 and 3: networks and volumes, the dependencies of containers.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::ObjectKey;

use super::{Action, Dep, NetworkRemoval, Planner};
use crate::backoff::{RetryBook, RetryKind};
use crate::desired::{DesiredNetwork, Owner};
use crate::intent::Intent;
use crate::labels;
use crate::reason::WaitReason;

impl<'a> Planner<'a> {
    /// Phase 2: creates missing networks and recreates changed ones (their removal waits for
    /// phase 6); undeclared networks are queued for removal.
    pub(super) fn networks(&mut self) {
        let mut seen = BTreeSet::new();
        for (key, dn) in &self.desired.networks {
            let existing = self
                .observed
                .networks
                .iter()
                .find(|n| n.key.as_ref() == Some(key) && n.name == dn.engine_name);
            if let Some(n) = existing {
                seen.insert(n.id.as_str());
            }
            if dn.external {
                let dep = self.external(key, &dn.engine_name, "network");
                self.nets.insert(key, dep);
                continue;
            }
            let dep = self.network(
                key,
                dn,
                existing.map(|n| (n.id.as_str(), n.hash.as_deref())),
            );
            self.nets.insert(key, dep);
        }
        if self.desired.incomplete.is_some() {
            return;
        }
        for n in &self.observed.networks {
            let refused = n
                .key
                .as_ref()
                .is_some_and(|k| self.desired.refused.contains_key(k));
            if !seen.contains(n.id.as_str()) && !refused {
                self.net_removals.push(NetworkRemoval {
                    owner: orphan_owner(n.key.as_ref(), &n.name),
                    id: n.id.clone(),
                    name: n.name.clone(),
                    create: None,
                });
            }
        }
    }

    /// An `external` network or volume: usable when the engine has it (berth's or not), never
    /// created, changed or removed by berth.
    fn external(&mut self, key: &ObjectKey, name: &str, what: &str) -> Dep {
        let found = if what == "network" {
            self.observed
                .networks
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.id.clone())
                .or_else(|| self.observed.foreign_network_ids.get(name).cloned())
        } else {
            (self.observed.foreign_volumes.contains(name)
                || self.observed.volumes.iter().any(|v| v.name == name))
            .then(|| name.to_string())
        };
        match found {
            Some(id) => Dep::Ready(id),
            None => {
                let msg = format!(
                    "external {what} {name:?} does not exist on this host; berth uses external {what}s but never creates them"
                );
                self.p.wait(
                    &Owner::object(key.clone()),
                    WaitReason::InvalidReference,
                    msg.clone(),
                    None,
                );
                Dep::Unavailable(msg)
            }
        }
    }

    /// One desired network, given the engine's network of that name (ID and spec hash).
    fn network(
        &mut self,
        key: &ObjectKey,
        dn: &DesiredNetwork,
        existing: Option<(&str, Option<&str>)>,
    ) -> Dep {
        let owner = Owner::object(key.clone());
        if self.observed.foreign_networks.contains(&dn.engine_name) {
            let msg = format!(
                "a network named {:?} exists and is not managed by berth instance {:?}; it is left alone",
                dn.engine_name, self.desired.instance
            );
            self.p.wait(&owner, WaitReason::Conflict, msg.clone(), None);
            return Dep::Unavailable(msg);
        }
        if let Some(until) = self.retries.blocked_until(&owner, &dn.hash, self.now) {
            let msg = retry_message(self.retries, &owner, &dn.hash);
            self.p.wait(&owner, WaitReason::BackOff, msg, Some(until));
            return match existing {
                Some((id, _)) => Dep::Ready(id.to_string()),
                None => Dep::Unavailable(format!("network {} is backing off", dn.engine_name)),
            };
        }
        let labels = merged_labels(
            &self.desired.instance,
            key,
            None,
            &dn.hash,
            &dn.config.labels,
        );
        let create = Action::CreateNetwork {
            name: dn.engine_name.clone(),
            config: dn.config.clone(),
            labels,
        };
        match existing {
            Some((id, hash)) if hash == Some(dn.hash.as_str()) => Dep::Ready(id.to_string()),
            Some((id, _)) => {
                let a = self
                    .p
                    .push(&owner, &dn.hash, Intent::RecreateNetwork, create, vec![]);
                self.net_removals.push(NetworkRemoval {
                    owner,
                    id: id.to_string(),
                    name: dn.engine_name.clone(),
                    create: Some(a),
                });
                Dep::Creating {
                    action: a,
                    replaced: true,
                }
            }
            None => {
                let a = self
                    .p
                    .push(&owner, &dn.hash, Intent::CreateNetwork, create, vec![]);
                Dep::Creating {
                    action: a,
                    replaced: false,
                }
            }
        }
    }

    /// Phase 3: creates missing volumes; a changed volume is reported, never recreated (it
    /// holds data); undeclared volumes created with `reclaimPolicy: Delete` are queued for
    /// removal.
    pub(super) fn volumes(&mut self) {
        for (key, dv) in &self.desired.volumes {
            if dv.external {
                let dep = self.external(key, &dv.engine_name, "volume");
                self.vols.insert(key, dep);
                continue;
            }
            let owner = Owner::object(key.clone());
            if self.observed.foreign_volumes.contains(&dv.engine_name) {
                let msg = format!(
                    "a volume named {:?} exists and is not managed by berth instance {:?}; it is left alone",
                    dv.engine_name, self.desired.instance
                );
                self.p.wait(&owner, WaitReason::Conflict, msg.clone(), None);
                self.vols.insert(key, Dep::Unavailable(msg));
                continue;
            }
            if let Some(v) = self
                .observed
                .volumes
                .iter()
                .find(|v| v.name == dv.engine_name)
            {
                if v.hash.as_deref() != Some(dv.hash.as_str()) {
                    self.p.wait(
                        &owner,
                        WaitReason::VolumeSpecChanged,
                        format!("volume {} differs from its spec; volumes are never recreated (remove it by hand to apply)", dv.engine_name),
                        None,
                    );
                }
                self.vols.insert(key, Dep::Ready(v.name.clone()));
                continue;
            }
            if let Some(until) = self.retries.blocked_until(&owner, &dv.hash, self.now) {
                let msg = retry_message(self.retries, &owner, &dv.hash);
                self.p.wait(&owner, WaitReason::BackOff, msg, Some(until));
                let why = format!("volume {} is backing off", dv.engine_name);
                self.vols.insert(key, Dep::Unavailable(why));
                continue;
            }
            let mut labels = merged_labels(
                &self.desired.instance,
                key,
                None,
                &dv.hash,
                &dv.config.labels,
            );
            labels.insert(
                labels::RECLAIM_POLICY.into(),
                dv.reclaim_policy.as_str().into(),
            );
            let create = Action::CreateVolume {
                name: dv.engine_name.clone(),
                config: dv.config.clone(),
                labels,
            };
            let a = self
                .p
                .push(&owner, &dv.hash, Intent::CreateVolume, create, vec![]);
            let dep = Dep::Creating {
                action: a,
                replaced: false,
            };
            self.vols.insert(key, dep);
        }
        if self.desired.incomplete.is_some() {
            return;
        }
        for v in &self.observed.volumes {
            let declared = v.key.as_ref().is_some_and(|k| {
                self.desired.volumes.contains_key(k) || self.desired.refused.contains_key(k)
            });
            if !declared && v.delete_when_orphaned {
                let owner = orphan_owner(v.key.as_ref(), &v.name);
                self.vol_removals.push((owner, v.name.clone()));
            }
        }
    }
}

/// berth's labels over the user's.
pub(super) fn merged_labels(
    instance: &str,
    key: &ObjectKey,
    replica: Option<u32>,
    hash: &str,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = user.clone();
    l.extend(labels::object_labels(instance, key, replica, hash));
    l
}

/// The owner of an undeclared engine object (its labelled key, else its engine name).
pub(super) fn orphan_owner(key: Option<&ObjectKey>, engine_name: &str) -> Owner {
    match key {
        Some(k) => Owner::object(k.clone()),
        None => Owner::object(ObjectKey::new(berth_api::Kind::Container, "", engine_name)),
    }
}

/// "N failed attempt(s); last error: …" for an owner that backs off.
pub(super) fn retry_message(retries: &RetryBook, owner: &Owner, hash: &str) -> String {
    match retries.get(owner, hash, RetryKind::Failure) {
        Some(e) => format!(
            "{} failed attempt(s); last error: {}",
            e.attempts,
            e.last_error.as_deref().unwrap_or("unknown")
        ),
        None => String::new(),
    }
}
