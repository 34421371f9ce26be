//! Command-line interface (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code for errors that prevented the command from doing its job (bad input, no engine).
pub const EXIT_ERROR: u8 = 2;

/// berth keeps a Docker host exactly as declared by Kubernetes-style YAML manifests
/// (apiVersion berth.dev/v1alpha1, kinds Container, Network, Volume).
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr. Verbosity comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "BERTH_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Name of this berth instance, written to the `berth.dev/instance` label of everything it
    /// creates. An instance manages only its own objects, so several can share one host (tests,
    /// split ownership). Lower-case letters, digits and '-'.
    #[arg(long, global = true, default_value = "default", env = "BERTH_INSTANCE", value_parser = parse_instance)]
    pub instance: String,
    /// This host's name: the `Host` object's name, the key of its entries in custom resources'
    /// `status.hosts[]`, and the `kubernetes.io/hostname` host label. Default: the system's
    /// host name.
    #[arg(long, global = true, env = "BERTH_NODE_NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,
    /// A host label `key=value` matched by `spec.hostSelector` (repeat the flag for several).
    /// berth adds `kubernetes.io/hostname`, `kubernetes.io/os` and `kubernetes.io/arch` itself.
    #[arg(long = "node-label", global = true, env = "BERTH_NODE_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// The agent's local API socket (default `/run/berth/<instance>.sock`): the agent serves
    /// on it, `get`, `describe` and `events` read from it.
    #[arg(long, global = true, env = "BERTH_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Largest manifest file read, in bytes (default 1 MiB). A larger file is reported and
    /// skipped; in the agent it keeps its last-known-good objects. Each value (one string or
    /// number) may hold at most 256 KiB.
    #[arg(long, global = true, env = "BERTH_MAX_MANIFEST_BYTES", default_value_t = berth_sources::read::DEFAULT_MAX_FILE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_manifest_bytes: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_instance(s: &str) -> Result<String, String> {
    if berth_api::validate::is_dns1123_label(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a DNS-1123 label (lower-case letters, digits and '-'), got {s:?}"
        ))
    }
}

fn parse_node_name(s: &str) -> Result<String, String> {
    if berth_api::validate::is_dns1123_subdomain(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'), got {s:?}"
        ))
    }
}

/// A Kubernetes label name or value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
fn is_label_part(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// `key=value` with Kubernetes label syntax (the labels are also written to the `Host` object):
/// key `[prefix/]name` (prefix a DNS subdomain, name non-empty), value possibly empty.
fn parse_label(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("expected key=value, got {s:?}"));
    };
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let key_ok = !name.is_empty()
        && is_label_part(name)
        && prefix.is_none_or(berth_api::validate::is_dns1123_subdomain);
    if !key_ok {
        return Err(format!(
            "label key {k:?} is not a Kubernetes label key ([prefix/]name, name: 1-63 letters, digits, '-', '_', '.')"
        ));
    }
    if !is_label_part(v) {
        return Err(format!(
            "label value {v:?} is not a Kubernetes label value (0-63 letters, digits, '-', '_', '.')"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: watch the manifest directory and the engine, converge continuously.
    /// Stopping the agent leaves the containers running. A flag given twice takes its last
    /// value.
    #[command(args_override_self = true)]
    Agent(AgentArgs),
    /// Converge once. Exit 0 when every action succeeded and nothing is blocked, 1 when an
    /// action failed or an object is blocked (conflict, unknown reference), 2 on bad input or
    /// when the engine is unreachable (nothing is changed then).
    Apply(ApplyArgs),
    /// Print the plan without changing anything. Exit 0: nothing to do; 1: changes pending;
    /// 2: bad input or engine unreachable (same convention as `kubectl diff`).
    Diff(DiffArgs),
    /// Decode and validate the manifests (no engine needed), and check them against the
    /// security policy. Exit 0 when valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Print the berth manifests equivalent to a Compose project (a Compose file, or a
    /// directory holding one), for moving over for good. Exit 0 when converted, 1 when the
    /// project has findings (printed on stderr, nothing on stdout).
    Convert(DirArg),
    /// Print the CustomResourceDefinitions of berth's kinds (Container, Network, Volume, Host)
    /// as YAML, generated from the same types that decode manifests.
    Crd(CrdArgs),
    /// List objects and their state, as `kubectl get` does (from the running agent; without
    /// one, from the engine's labels).
    Get(GetArgs),
    /// Show one object in detail: spec summary, engine containers, conditions, back-off, last
    /// exit code, recent events.
    Describe(DescribeArgs),
    /// Show the agent's recent events (`--watch`: keep printing new ones).
    Events(EventsArgs),
    /// Print a shell completion script (`berth completions bash > /etc/bash_completion.d/berth`;
    /// zsh: into a directory of `$fpath` as `_berth`; fish: `~/.config/fish/completions/berth.fish`).
    Completions(CompletionsArgs),
    /// Print the berth(1) man page (roff) on stdout (`berth man | man -l -`).
    Man,
    /// Print a draft-07 JSON Schema of a manifest document (Container, Network or Volume,
    /// selected by `kind`) for editors (yaml-language-server's `$schema=` modeline).
    Schema,
}

/// What `berth get` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetWhat {
    /// Container objects.
    #[value(alias = "container")]
    Containers,
    /// Network objects.
    #[value(alias = "network")]
    Networks,
    /// Volume objects.
    #[value(alias = "volume")]
    Volumes,
    /// All three kinds.
    All,
}

/// Output format of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    /// The table with more columns (SPEC-HASH, ORIGIN, MESSAGE).
    Wide,
    /// A `List` of objects in the CRD shape, as JSON.
    Json,
    /// The same as YAML.
    Yaml,
}

/// `berth get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum, default_value_t = GetWhat::All)]
    pub what: GetWhat,
    /// Only this namespace (default: every namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Every namespace (the default; kubectl's flag).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<GetOutput>,
}

/// `berth describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The kind: `container`, `network` or `volume`.
    #[arg(value_enum)]
    pub kind: GetWhat,
    /// `NAMESPACE/NAME`, or `NAME` in namespace `default`.
    pub name: String,
}

/// `berth events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Keep printing new events (every second) until interrupted.
    #[arg(short, long)]
    pub watch: bool,
}

/// Output format of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffOutput {
    /// `{changes: [{kind, namespace, name, fields, actions}], waiting: [...]}` for tools.
    Json,
}

/// `berth diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Manifest directory.
    pub dir: PathBuf,
    /// Security policy file: the profile (privileged, baseline, restricted) of each source
    /// and the host paths baseline may mount (README "Security"). Default: the manifest
    /// directory privileged, the Kubernetes source baseline.
    #[arg(long, env = "BERTH_POLICY")]
    pub policy: Option<PathBuf>,
    /// Output format (default: text).
    #[arg(short, long, value_enum)]
    pub output: Option<DiffOutput>,
}

/// `berth completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `berth crd`.
#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory instead of printing them
    /// (`berth crd --write manifests/crds`).
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// A manifest directory argument.
#[derive(Args, Debug)]
pub struct DirArg {
    /// Manifest directory (`*.yaml`/`*.yml`, subdirectories included, hidden files ignored;
    /// a directory with a Compose file is a Compose project), or a single manifest or Compose
    /// file.
    pub dir: PathBuf,
}

/// Which source's profile `validate` checks against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicySource {
    /// The manifest directory's profile (default).
    Directory,
    /// The Kubernetes source's profile (per namespace): a pre-merge check for a GitOps
    /// repository of custom resources.
    Kubernetes,
}

/// `berth validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Manifest directory, or a single manifest or Compose file.
    pub dir: PathBuf,
    /// Security policy file: the profile (privileged, baseline, restricted) of each source
    /// and the host paths baseline may mount (README "Security"). Default: the manifest
    /// directory privileged, the Kubernetes source baseline.
    #[arg(long, env = "BERTH_POLICY")]
    pub policy: Option<PathBuf>,
    /// Check against the profile of this source.
    #[arg(long, value_enum, default_value_t = PolicySource::Directory)]
    pub source: PolicySource,
    /// The namespace of objects that name none (as `kubectl apply -n`), for the profile of
    /// the Kubernetes source.
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// `berth apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest directory, or a single manifest or Compose file.
    pub dir: PathBuf,
    /// Security policy file: the profile (privileged, baseline, restricted) of each source
    /// and the host paths baseline may mount (README "Security"). Default: the manifest
    /// directory privileged, the Kubernetes source baseline.
    #[arg(long, env = "BERTH_POLICY")]
    pub policy: Option<PathBuf>,
    /// Engine actions run at once.
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
    /// Seconds to wait for rolling updates to finish (each step waits for the new replica's
    /// readiness) and for `dependsOn` conditions to hold (a dependent is created once its
    /// dependency is ready); when they have not, exit 1 and leave the host where it is (an agent
    /// finishes it). Updates that make no progress roll back at `progressDeadlineSeconds`. At
    /// most a year (31536000).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub timeout: u64,
}

/// `berth agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Manifest directory to watch. At least one of `--manifests` and `--kube` is needed; with
    /// both, an object declared by both is a conflict (reported; the version applied before
    /// stays in force).
    #[arg(long, env = "BERTH_MANIFESTS", required_unless_present = "kube")]
    pub manifests: Option<PathBuf>,
    /// Watch berth custom resources in a Kubernetes cluster. The client configuration comes
    /// from `--kubeconfig`, else `KUBECONFIG` / `~/.kube/config`, else the in-cluster service
    /// account.
    #[arg(long, env = "BERTH_KUBE")]
    pub kube: bool,
    /// Kubeconfig file for `--kube` (default: `KUBECONFIG`, `~/.kube/config`, in-cluster).
    #[arg(long, env = "BERTH_KUBECONFIG", requires = "kube")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace to watch with `--kube` (repeat, or comma-separate, for several); default: all.
    #[arg(
        long = "namespace",
        env = "BERTH_NAMESPACES",
        value_delimiter = ',',
        requires = "kube"
    )]
    pub namespaces: Vec<String>,
    /// Namespace of this host's heartbeat Lease (`coordination.k8s.io/v1`, named like the host).
    #[arg(long, env = "BERTH_LEASE_NAMESPACE", default_value = "berth-system")]
    pub lease_namespace: String,
    /// Do not write status, `Host`, Lease or Events back to the cluster (read-only agent).
    #[arg(long)]
    pub no_status: bool,
    /// Engine actions run at once.
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
    /// Seconds between full re-reads of the manifest directory and full engine relists, on top
    /// of file-change and engine events.
    #[arg(long, default_value_t = 30)]
    pub resync_seconds: u64,
    /// Seconds between re-resolutions of `pullPolicy: Always` image tags against their
    /// registries (also done at start). A tag that moved is pulled and its containers are
    /// recreated in the pass that follows. One registry request per tag and period (Docker Hub
    /// counts it against its pull rate limit, hence a longer default than the resync).
    #[arg(long, default_value_t = 300)]
    pub image_refresh_seconds: u64,
    /// Longest wait in milliseconds after a file change before the directory is re-read; a
    /// completed write (a file closed after writing, renamed or removed) is read after 20 ms of
    /// quiet.
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// First CrashLoopBackOff delay in seconds (Kubernetes: 10).
    #[arg(long, default_value_t = 10)]
    pub crash_backoff_initial_seconds: u64,
    /// Largest CrashLoopBackOff delay in seconds (Kubernetes: 300).
    #[arg(long, default_value_t = 300)]
    pub crash_backoff_cap_seconds: u64,
    /// Address of the Prometheus `/metrics`, `/healthz` and `/readyz` endpoints (`HOST:PORT`),
    /// or `off`. Loopback by default; a port in use is logged and the agent runs without them.
    #[arg(long, env = "BERTH_METRICS_ADDRESS", default_value = "127.0.0.1:9469")]
    pub metrics_address: String,
    /// Security policy file: the profile (privileged, baseline, restricted) of each source
    /// and the host paths baseline may mount (README "Security"). Watched: a change re-evaluates every object
    /// without a restart. Default: the manifest
    /// directory privileged, the Kubernetes source baseline.
    #[arg(long, env = "BERTH_POLICY")]
    pub policy: Option<PathBuf>,
    /// The local API socket (the global `--socket`; filled in by `run`).
    #[arg(skip)]
    pub socket: Option<PathBuf>,
}

impl AgentArgs {
    /// `--image-refresh-seconds` as a duration (at least one second).
    pub fn image_refresh(&self) -> Duration {
        Duration::from_secs(self.image_refresh_seconds.max(1))
    }

    /// `--resync-seconds` as a duration (at least one second).
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_labels_follow_kubernetes_syntax() {
        assert_eq!(parse_label("zone=eu-1"), Ok(("zone".into(), "eu-1".into())));
        assert!(parse_label("topology.kubernetes.io/zone=eu").is_ok());
        assert!(parse_label("gpu=").is_ok());
        for bad in [
            "zone",
            "=x",
            "Bad Key=x",
            "zone=has space",
            "UPPER.example/x=1",
        ] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_apply_timeout_beyond_a_year_is_refused_by_the_parser() {
        let parse = |t: &str| Cli::try_parse_from(["berth", "apply", "--timeout", t, "dir"]);
        assert!(parse("31536000").is_ok());
        // It once overflowed the deadline's Instant and panicked.
        let e = parse("18446744073709551615").expect_err("out of range");
        assert!(e.to_string().contains("0..=31536000"), "{e}");
    }
}
