//! Resolution: validated manifests → [`DesiredState`] (engine names, references, hashes).

use std::collections::{BTreeMap, BTreeSet};

use berth_api::{
    ContainerSpec, DependencyCondition, Kind, Manifest, NetworkMode, NetworkSpec, ObjectKey,
    VolumeSpec, quantity,
};

use crate::desired::{
    AttachmentConfig, ContainerConfig, DesiredContainer, DesiredNetwork, DesiredState,
    DesiredVolume, DeviceConfig, FileConfig, HealthCheckConfig, LoggingConfig, MountConfig,
    MountSource, NetworkConfig, PortConfig, ProfileConfig, RolloutConfig, UlimitConfig,
    VolumeConfig,
};
use crate::hash::spec_hash;
use crate::labels;

/// [`resolve_for`] the default instance.
pub fn resolve<'a>(objects: impl IntoIterator<Item = &'a Manifest>) -> DesiredState {
    resolve_for(labels::DEFAULT_INSTANCE, objects)
}

/// Builds the desired state of berth instance `instance` from the objects in force. Objects
/// whose references cannot be resolved, or whose engine names clash, are listed in
/// [`DesiredState::blocked`] instead.
pub fn resolve_for<'a>(
    instance: &str,
    objects: impl IntoIterator<Item = &'a Manifest>,
) -> DesiredState {
    let mut desired = DesiredState {
        instance: instance.to_string(),
        ..Default::default()
    };
    let mut containers = Vec::new();
    for m in objects {
        let key = m.key();
        match m {
            Manifest::Network { spec, .. } => {
                desired.networks.insert(key.clone(), network(&key, spec));
            }
            Manifest::Volume { spec, .. } => {
                desired.volumes.insert(key.clone(), volume(&key, spec));
            }
            Manifest::Container { spec, .. } => containers.push((key, spec)),
        }
    }
    let declared: BTreeMap<ObjectKey, (u32, Option<String>)> = containers
        .iter()
        .map(|(k, s)| (k.clone(), (s.replica_count(), s.container_name.clone())))
        .collect();
    let mut names: BTreeMap<String, Vec<ObjectKey>> = BTreeMap::new();
    for (key, spec) in containers {
        match container(&key, spec, &desired, &declared) {
            Ok(c) => {
                for r in 0..c.replicas {
                    names
                        .entry(labels::container_name(&key, r, c.container_name.as_deref()))
                        .or_default()
                        .push(key.clone());
                }
                desired.containers.insert(key, c);
            }
            Err(why) => {
                desired.blocked.insert(key, why);
            }
        }
    }
    for (name, keys) in names {
        if keys.len() > 1 {
            let all: Vec<String> = keys.iter().map(ToString::to_string).collect();
            for k in keys {
                desired.containers.remove(&k);
                desired.blocked.insert(
                    k,
                    format!(
                        "engine container name {name:?} is wanted by {}",
                        all.join(" and ")
                    ),
                );
            }
        }
    }
    block_shared_addresses(&mut desired);
    block_cycles(&mut desired);
    // A container whose dependency is blocked cannot start either; repeat until stable.
    loop {
        let newly: Vec<(ObjectKey, String)> = desired
            .containers
            .iter()
            .filter_map(|(k, c)| {
                c.depends_on
                    .iter()
                    .find(|(d, _)| !desired.containers.contains_key(d))
                    .map(|(d, _)| (k.clone(), format!("dependency {d} is blocked")))
            })
            .collect();
        if newly.is_empty() {
            break;
        }
        for (k, why) in newly {
            desired.containers.remove(&k);
            desired.blocked.insert(k, why);
        }
    }
    desired
}

/// Blocks every container that publishes a host port (`hostIP:hostPort/protocol`; an absent or
/// unspecified host address overlaps every address) or holds a fixed network address
/// (`ipv4Address` on one network) that another declared container also wants: only one could
/// ever run, so which one would be chance. Each is reported naming both objects, as an engine
/// name clash is; containers already running keep running.
fn block_shared_addresses(desired: &mut DesiredState) {
    let mut clashes: BTreeMap<ObjectKey, String> = BTreeMap::new();
    let containers: Vec<(&ObjectKey, &DesiredContainer)> = desired.containers.iter().collect();
    for (i, j) in address_sharing_pairs(&containers) {
        let ((ka, a), (kb, b)) = (containers[i], containers[j]);
        let port = a.config.ports.iter().find_map(|pa| {
            b.config
                .ports
                .iter()
                .find(|pb| same_host_port(pa, pb))
                .map(|_| {
                    format!(
                        "host port {}:{}/{:?}",
                        pa.host_ip.as_deref().unwrap_or("0.0.0.0"),
                        pa.host_port.unwrap_or_default(),
                        pa.protocol
                    )
                })
        });
        let address = a.config.networks.iter().find_map(|na| {
            let ip = na.ipv4_address.as_ref()?;
            b.config
                .networks
                .iter()
                .any(|nb| nb.network == na.network && nb.ipv4_address.as_ref() == Some(ip))
                .then(|| format!("address {ip} on network {}", na.network))
        });
        for what in [port, address].into_iter().flatten() {
            let why = format!("{what} is wanted by both {ka} and {kb}");
            for k in [ka, kb] {
                clashes.entry(k.clone()).or_insert_with(|| why.clone());
            }
        }
    }
    for (k, why) in clashes {
        desired.containers.remove(&k);
        desired.blocked.insert(k, why);
    }
}

/// The pairs `(i, j)`, `i < j`, in increasing order, of containers that publish the same host
/// port and protocol or hold an address on the same network: the only pairs that can clash,
/// found through an index instead of comparing every pair (quadratic in the number of
/// containers).
fn address_sharing_pairs(
    containers: &[(&ObjectKey, &DesiredContainer)],
) -> BTreeSet<(usize, usize)> {
    let mut ports: BTreeMap<(u16, berth_api::Protocol), Vec<usize>> = BTreeMap::new();
    let mut addresses: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (_, c)) in containers.iter().enumerate() {
        for p in &c.config.ports {
            if let Some(port) = p.host_port {
                ports.entry((port, p.protocol)).or_default().push(i);
            }
        }
        for n in &c.config.networks {
            if let Some(ip) = &n.ipv4_address {
                addresses
                    .entry((n.network.as_str(), ip.as_str()))
                    .or_default()
                    .push(i);
            }
        }
    }
    let mut pairs = BTreeSet::new();
    for group in ports.values().chain(addresses.values()) {
        for (x, &i) in group.iter().enumerate() {
            for &j in &group[x + 1..] {
                if i != j {
                    pairs.insert((i.min(j), i.max(j)));
                }
            }
        }
    }
    pairs
}

/// True when two published ports would bind the same host socket.
fn same_host_port(a: &PortConfig, b: &PortConfig) -> bool {
    let any = |ip: &Option<String>| {
        ip.as_deref().is_none_or(|ip| {
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        })
    };
    a.host_port.is_some()
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && (any(&a.host_ip) || any(&b.host_ip) || a.host_ip == b.host_ip)
}

/// Blocks every container that is part of a `dependsOn` cycle (a validation error: the cycle
/// can never start).
fn block_cycles(desired: &mut DesiredState) {
    // Containers as indices and their dependsOn edges to declared containers.
    let keys: Vec<&ObjectKey> = desired.containers.keys().collect();
    let index: BTreeMap<&ObjectKey, usize> =
        keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let edges: Vec<Vec<usize>> = desired
        .containers
        .values()
        .map(|c| {
            c.depends_on
                .iter()
                .filter_map(|(d, _)| index.get(d).copied())
                .collect()
        })
        .collect();
    // Only a container in a strongly connected component of two or more, or that depends on
    // itself, is on a cycle: found in linear time, so long dependsOn chains cost what they hold.
    let component = strongly_connected(&edges);
    let mut size = vec![0usize; edges.len()];
    for c in &component {
        size[*c] += 1;
    }
    let mut in_cycle: Vec<(ObjectKey, String)> = Vec::new();
    for (start, out) in edges.iter().enumerate() {
        if size[component[start]] < 2 && !out.contains(&start) {
            continue;
        }
        // Breadth-first within the component for the shortest way back to `start`.
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        while let Some(k) = queue.pop_front() {
            if edges[k].contains(&start) {
                last = Some(k);
                break;
            }
            for &d in &edges[k] {
                if d != start && component[d] == component[start] && !parent.contains_key(&d) {
                    parent.insert(d, k);
                    queue.push_back(d);
                }
            }
        }
        let Some(mut k) = last else { continue };
        let mut path = vec![k];
        while let Some(&p) = parent.get(&k) {
            path.push(p);
            k = p;
        }
        if path.last() != Some(&start) {
            path.push(start);
        }
        path.reverse();
        let names: Vec<&str> = path
            .iter()
            .chain([&start])
            .map(|i| keys[*i].name.as_str())
            .collect();
        in_cycle.push((
            keys[start].clone(),
            format!("dependsOn cycle: {}", names.join(" → ")),
        ));
    }
    for (k, why) in in_cycle {
        desired.containers.remove(&k);
        desired.blocked.insert(k, why);
    }
}

/// The strongly connected component of each node of a directed graph (Tarjan's algorithm,
/// iterative: a dependsOn chain of any length takes no stack).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let n = edges.len();
    let (mut order, mut low, mut component) = (vec![NONE; n], vec![0; n], vec![NONE; n]);
    let (mut on_stack, mut stack) = (vec![false; n], Vec::new());
    let (mut next, mut components) = (0, 0);
    for root in 0..n {
        if order[root] != NONE {
            continue;
        }
        // (node, index of its next edge to follow)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 && order[v] == NONE {
                order[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*e) {
                *e += 1;
                if order[w] == NONE {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = components;
                    if w == v {
                        break;
                    }
                }
                components += 1;
            }
        }
    }
    component
}

fn health_check(h: &berth_api::HealthCheck) -> Result<HealthCheckConfig, String> {
    let ns = |v: &Option<String>| -> Result<Option<u64>, String> {
        v.as_deref()
            .map(|s| {
                berth_api::parse_duration(s)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            })
            .transpose()
    };
    Ok(HealthCheckConfig {
        test: h.test.clone(),
        interval_ns: ns(&h.interval)?,
        timeout_ns: ns(&h.timeout)?,
        retries: h.retries,
        start_period_ns: ns(&h.start_period)?,
        start_interval_ns: ns(&h.start_interval)?,
    })
}

fn network(key: &ObjectKey, spec: &NetworkSpec) -> DesiredNetwork {
    let ipam = spec.ipam.clone().unwrap_or_default();
    let config = NetworkConfig {
        driver: spec.driver.clone().unwrap_or_else(|| "bridge".into()),
        internal: spec.internal,
        attachable: spec.attachable,
        enable_ipv6: spec.enable_ipv6,
        ipam_driver: ipam.driver.unwrap_or_else(|| "default".into()),
        ipam_config: ipam
            .config
            .into_iter()
            .map(|c| (c.subnet, c.gateway, c.ip_range))
            .collect(),
        options: spec.options.clone(),
        labels: spec.labels.clone(),
    };
    DesiredNetwork {
        engine_name: engine_name(key, spec.external, spec.external_name.as_ref()),
        hash: spec_hash(&config),
        config,
        external: spec.external,
    }
}

fn volume(key: &ObjectKey, spec: &VolumeSpec) -> DesiredVolume {
    let config = VolumeConfig {
        driver: spec.driver.clone().unwrap_or_else(|| "local".into()),
        driver_opts: spec.driver_opts.clone(),
        labels: spec.labels.clone(),
    };
    DesiredVolume {
        engine_name: engine_name(key, spec.external, spec.external_name.as_ref()),
        hash: spec_hash(&config),
        config,
        reclaim_policy: spec.reclaim_policy,
        external: spec.external,
    }
}

/// `<namespace>_<name>` for berth's own networks and volumes; for an `external` one its own
/// name (`externalName`, default `metadata.name`).
fn engine_name(key: &ObjectKey, external: bool, external_name: Option<&String>) -> String {
    match (external, external_name) {
        (true, Some(n)) => n.clone(),
        (true, None) => key.name.clone(),
        (false, _) if key.kind == Kind::Volume => labels::volume_name(&key.namespace, &key.name),
        (false, _) => labels::network_name(&key.namespace, &key.name),
    }
}

/// Resolves one Container: its references (dependencies, shared network namespace, networks,
/// volumes) against what is declared, then the engine-facing [`ContainerConfig`] whose hash
/// decides recreation. An `Err` names the first reference or value that cannot be resolved.
///
/// `valueFrom` never reaches this point: the Kubernetes source replaces it by the Secret's or
/// ConfigMap's value (`berth_sources::kube::resolve_value_from`), and the directory decoder
/// refuses it with the field's position (it is checked there, and only there).
fn container(
    key: &ObjectKey,
    spec: &ContainerSpec,
    desired: &DesiredState,
    declared: &BTreeMap<ObjectKey, (u32, Option<String>)>,
) -> Result<DesiredContainer, String> {
    let mut depends_on = dependencies(key, spec, declared)?;
    let (network_mode, network_target) = network_mode(key, spec, declared, &mut depends_on)?;
    let (networks, attachments) = attachments(key, spec, desired)?;
    let (volumes, mounts) = mounts(key, spec, desired)?;
    debug_assert!(
        spec.env.iter().all(|e| e.value_from.is_none())
            && spec.files.iter().all(|f| f.value_from.is_none()),
        "{key}: a source hands over values, never valueFrom"
    );
    let config = container_config(
        &desired.instance,
        key,
        spec,
        mounts,
        attachments,
        network_mode,
    )?;
    Ok(DesiredContainer {
        replicas: spec.replica_count().min(berth_api::MAX_REPLICAS),
        container_name: spec.container_name.clone(),
        restart_policy: spec.restart_policy,
        pull_policy: spec.pull_policy,
        image_pull_secrets: spec
            .image_pull_secrets
            .iter()
            .map(|s| s.file.clone())
            .collect(),
        networks,
        volumes,
        depends_on,
        network_target,
        probes: crate::desired::Probes {
            liveness: spec.liveness_probe.clone(),
            readiness: spec.readiness_probe.clone(),
            startup: spec.startup_probe.clone(),
        },
        rollout: rollout_config(spec, &config),
        hash: spec_hash(&config),
        config,
        build: spec.build.clone().map(|spec| crate::build::DesiredBuild {
            spec,
            input: crate::build::BuildInput::Unread,
        }),
    })
}

fn container_key(key: &ObjectKey, name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Container, key.namespace.clone(), name.to_string())
}

/// `dependsOn`: each entry must name another Container declared in the same namespace.
fn dependencies(
    key: &ObjectKey,
    spec: &ContainerSpec,
    declared: &BTreeMap<ObjectKey, (u32, Option<String>)>,
) -> Result<Vec<(ObjectKey, DependencyCondition)>, String> {
    let mut depends_on = Vec::new();
    for d in &spec.depends_on {
        let dk = container_key(key, &d.name);
        if dk == *key {
            return Err("dependsOn names the container itself".into());
        }
        if !declared.contains_key(&dk) {
            return Err(format!(
                "dependsOn: container {:?} is not declared in namespace {:?}",
                d.name, key.namespace
            ));
        }
        depends_on.push((dk, d.condition));
    }
    Ok(depends_on)
}

/// `networkMode`: `container:<name>` becomes the engine name of that Container's replica 0 and
/// an implicit `Started` dependency; the target's key is returned too (the namespace is pinned
/// to its engine ID by the planner). Other modes pass through; `bridge` is the default (`None`).
fn network_mode(
    key: &ObjectKey,
    spec: &ContainerSpec,
    declared: &BTreeMap<ObjectKey, (u32, Option<String>)>,
    depends_on: &mut Vec<(ObjectKey, DependencyCondition)>,
) -> Result<(Option<NetworkMode>, Option<ObjectKey>), String> {
    let target = match &spec.network_mode {
        None | Some(NetworkMode::Bridge) => return Ok((None, None)),
        Some(NetworkMode::Container(target)) => target,
        Some(m) => return Ok((Some(m.clone()), None)),
    };
    let tk = container_key(key, target);
    let Some((replicas, fixed)) = declared.get(&tk) else {
        return Err(format!(
            "networkMode: container {target:?} is not declared in namespace {:?}",
            key.namespace
        ));
    };
    if tk == *key || *replicas == 0 {
        return Err(format!(
            "networkMode: container {target:?} has no replica 0 to share"
        ));
    }
    if !depends_on.iter().any(|(d, _)| *d == tk) {
        depends_on.push((tk.clone(), DependencyCondition::Started));
    }
    let engine = labels::container_name(&tk, 0, fixed.as_deref());
    Ok((Some(NetworkMode::Container(engine)), Some(tk)))
}

/// `networks[]`: each must name a Network declared in the same namespace.
fn attachments(
    key: &ObjectKey,
    spec: &ContainerSpec,
    desired: &DesiredState,
) -> Result<(Vec<ObjectKey>, Vec<AttachmentConfig>), String> {
    let mut networks = Vec::new();
    let mut attachments = Vec::new();
    for n in &spec.networks {
        let nkey = ObjectKey::new(Kind::Network, key.namespace.clone(), n.name.clone());
        let Some(net) = desired.networks.get(&nkey) else {
            return Err(format!(
                "network {:?} is not declared in namespace {:?}",
                n.name, key.namespace
            ));
        };
        attachments.push(AttachmentConfig {
            network: net.engine_name.clone(),
            aliases: n.aliases.clone(),
            ipv4_address: n.ipv4_address.clone(),
        });
        networks.push(nkey);
    }
    Ok((networks, attachments))
}

/// `mounts[]`: a Volume of the same namespace, a host path or a tmpfs (size in bytes).
fn mounts(
    key: &ObjectKey,
    spec: &ContainerSpec,
    desired: &DesiredState,
) -> Result<(Vec<ObjectKey>, Vec<MountConfig>), String> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        let source = if let Some(v) = &m.volume {
            let vkey = ObjectKey::new(Kind::Volume, key.namespace.clone(), v.clone());
            let Some(vol) = desired.volumes.get(&vkey) else {
                return Err(format!(
                    "volume {v:?} is not declared in namespace {:?}",
                    key.namespace
                ));
            };
            volumes.push(vkey);
            MountSource::Volume(vol.engine_name.clone())
        } else if let Some(h) = &m.host_path {
            MountSource::Bind {
                path: h.path.clone(),
                path_type: h.path_type.map(Into::into),
            }
        } else if let Some(t) = &m.tmpfs {
            MountSource::Tmpfs {
                size_bytes: t
                    .size_limit
                    .as_deref()
                    .map(quantity::parse_bytes)
                    .transpose()
                    .map_err(|e| e.to_string())?,
            }
        } else {
            return Err(format!("mount {:?} has no source", m.mount_path));
        };
        mounts.push(MountConfig {
            target: m.mount_path.clone(),
            read_only: m.read_only,
            source,
        });
    }
    Ok((volumes, mounts))
}

/// The hashed, engine-facing configuration (the allowlist of [`ContainerConfig`]).
fn container_config(
    instance: &str,
    key: &ObjectKey,
    spec: &ContainerSpec,
    mounts: Vec<MountConfig>,
    networks: Vec<AttachmentConfig>,
    network_mode: Option<NetworkMode>,
) -> Result<ContainerConfig, String> {
    let limits = spec.resources.as_ref().map(|r| &r.limits);
    Ok(ContainerConfig {
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| labels::build_tag(instance, &key.namespace, &key.name)),
        entrypoint: spec.command.clone(),
        cmd: spec.args.clone(),
        env: spec
            .env
            .iter()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect(),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        ports: spec
            .ports
            .iter()
            .map(|p| PortConfig {
                container_port: p.container_port,
                protocol: p.protocol,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        mounts,
        networks,
        files: spec
            .files
            .iter()
            .map(|f| {
                Ok(FileConfig {
                    path: f.path.clone(),
                    content: f.content.clone(),
                    mode: f
                        .mode_bits()
                        .ok_or_else(|| format!("file {:?} has an invalid mode", f.path))?,
                    uid: f.uid,
                    gid: f.gid,
                })
            })
            .collect::<Result<_, String>>()?,
        labels: spec.labels.clone(),
        nano_cpus: limits
            .and_then(|l| l.cpu.as_deref())
            .map(quantity::parse_nano_cpus)
            .transpose()
            .map_err(|e| e.to_string())?,
        memory_bytes: limits
            .and_then(|l| l.memory.as_deref())
            .map(quantity::parse_bytes)
            .transpose()
            .map_err(|e| e.to_string())?,
        stop_signal: spec.stop_signal.clone(),
        stop_grace_period_seconds: spec.stop_grace_period_seconds,
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        read_only_root_filesystem: spec.read_only_root_filesystem,
        init: spec.init,
        extra_hosts: spec.extra_hosts.clone(),
        health_check: spec.health_check.as_ref().map(health_check).transpose()?,
        network_mode,
        shm_size: spec
            .shm_size
            .as_deref()
            .map(quantity::parse_bytes)
            .transpose()
            .map_err(|e| e.to_string())?,
        ..host_access(spec)
    })
}

/// The engine-facing form of the host-access and runtime fields (`privileged`, `devices`,
/// `hostPID`, `hostIPC`, profiles, `sysctls`, `tty`, `stdin`, `ulimits`, `dns*`, `logging`).
fn host_access(spec: &ContainerSpec) -> ContainerConfig {
    use berth_api::ProfileType;
    let profile = |t: ProfileType, local: &Option<String>| match t {
        ProfileType::RuntimeDefault => None,
        ProfileType::Unconfined => Some(ProfileConfig::Unconfined),
        ProfileType::Localhost => Some(ProfileConfig::Localhost(local.clone().unwrap_or_default())),
    };
    ContainerConfig {
        privileged: spec.privileged,
        devices: spec
            .devices
            .iter()
            .map(|d| DeviceConfig {
                host_path: d.host_path.clone(),
                container_path: d.container_path_or_default().to_string(),
                permissions: d.permissions_or_default().to_string(),
            })
            .collect(),
        host_pid: spec.host_pid,
        host_ipc: spec.host_ipc,
        seccomp_profile: spec
            .seccomp_profile
            .as_ref()
            .and_then(|p| profile(p.type_, &p.localhost_profile)),
        app_armor_profile: spec
            .app_armor_profile
            .as_ref()
            .and_then(|p| profile(p.type_, &p.localhost_profile)),
        no_new_privileges: spec.allow_privilege_escalation == Some(false),
        sysctls: spec.sysctls.clone(),
        tty: spec.tty,
        stdin: spec.stdin,
        ulimits: spec
            .ulimits
            .iter()
            .map(|u| UlimitConfig {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        dns: spec.dns.clone(),
        dns_search: spec.dns_search.clone(),
        dns_options: spec.dns_options.clone(),
        logging: spec.logging.as_ref().map(|l| LoggingConfig {
            driver: l.driver.clone(),
            options: l.options.clone(),
        }),
        ..Default::default()
    }
}

/// Scales `updateStrategy` to the replica count. `maxSurge` defaults to 25 % (rounded up), but
/// to 0 when a second copy could not run or would be unsafe: a fixed `hostPort` (always 0: the
/// port is taken), a read-write volume or host path mount (two databases on one data
/// directory), or a shared network namespace (`networkMode: host` or `container:<name>`: two
/// copies would bind the same ports). A fixed network address (`ipv4Address`) is always 0 too:
/// two copies cannot hold it.
/// When both bounds come to 0, `maxUnavailable` is 1, as in Kubernetes.
fn rollout_config(spec: &berth_api::ContainerSpec, config: &ContainerConfig) -> RolloutConfig {
    use berth_api::{IntOrString, UpdateStrategyType, scaled_int_or_percent};
    let n = spec.replica_count();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let ru = strategy.rolling_update.unwrap_or_default();
    let quarter = IntOrString::String("25%".into());
    let exclusive = config.ports.iter().any(|p| p.host_port.is_some())
        || config
            .mounts
            .iter()
            .any(|m| !m.read_only && !matches!(m.source, MountSource::Tmpfs { .. }))
        || config
            .network_mode
            .as_ref()
            .is_some_and(NetworkMode::is_shared);
    let fixed_address = config.ports.iter().any(|p| p.host_port.is_some())
        || config.networks.iter().any(|n| n.ipv4_address.is_some());
    let surge = match &ru.max_surge {
        _ if fixed_address => 0,
        Some(v) => scaled_int_or_percent(v, n, true).unwrap_or(0),
        None if exclusive => 0,
        None => scaled_int_or_percent(&quarter, n, true).unwrap_or(0),
    };
    let unavailable =
        scaled_int_or_percent(ru.max_unavailable.as_ref().unwrap_or(&quarter), n, false)
            .unwrap_or(0);
    let recreate = strategy.type_ == UpdateStrategyType::Recreate;
    RolloutConfig {
        recreate,
        max_surge: if recreate { 0 } else { surge },
        max_unavailable: if recreate {
            n.max(1)
        } else if surge == 0 {
            unavailable.max(1)
        } else {
            unavailable
        },
        min_ready: std::time::Duration::from_secs(spec.min_ready_seconds.unwrap_or(0).into()),
        progress_deadline: std::time::Duration::from_secs(
            spec.progress_deadline_seconds.unwrap_or(600).into(),
        ),
    }
}
