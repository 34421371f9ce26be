#![forbid(unsafe_code)]
// Standard output and error go through `out` (a closed pipe is a quiet exit, not a panic).
#![deny(clippy::print_stdout, clippy::print_stderr)]
//! `berth`: keeps a Docker host exactly as declared.
//!
//! Subcommands: `agent` (long-running), `apply` (one converge), `diff` (the plan, no change),
//! `validate` (decode and check manifests only). See `berth --help`. The binary is a thin
//! wrapper over [`main_entry`], so that end-to-end tests can run the very same code.

pub mod agent;
pub mod api;
pub mod builds;
pub mod cli;
pub mod convert;
pub mod crd;
pub mod diff;
pub mod engine_link;
pub mod host;
pub mod images;
pub mod inspect;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod out;
pub mod policy;
pub mod progress;
pub mod report;
pub mod schema;
pub mod status;
pub mod watchers;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, LogFormat};

/// Crates whose debug output carries raw engine or API responses — container environments,
/// Secret data — and so is capped at `info` unless `RUST_LOG` names them explicitly.
const RAW_RESPONSE_LOGGERS: [&str; 4] = ["bollard", "hyper", "kube_client", "tower"];

/// The log filter: `RUST_LOG` if set (else `default`), with the crates of
/// [`RAW_RESPONSE_LOGGERS`] capped at `info` unless named in it, so that a debug log never
/// shows a Secret value.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let mut spec = if spec.trim().is_empty() {
        default.to_string()
    } else {
        spec
    };
    for krate in RAW_RESPONSE_LOGGERS {
        if !spec.contains(krate) {
            spec.push_str(&format!(",{krate}=info"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = log_filter(default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        );
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Parses the command line and runs the command; the whole `berth` program.
///
/// One-shot commands run on a single-threaded runtime: their work is waiting on the engine,
/// and starting a worker thread per core cost start-up time in every `berth apply`. The agent
/// runs on two worker threads whatever the number of cores (tokio's default is one per core,
/// each with its stack and malloc arena): its reconcile loop, local API, metrics and
/// watchers stay responsive to each other (the systemd watchdog is fed from the loop) without
/// growing with the machine. Blocking work (file reads, credential helpers, build contexts)
/// goes to tokio's blocking pool either way.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let rt = if matches!(cli.command, Command::Agent(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(AGENT_WORKER_THREADS)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            crate::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    rt.block_on(run(cli))
}

/// Worker threads of the agent's runtime (see [`main_entry`]).
const AGENT_WORKER_THREADS: usize = 2;

/// The berth(1) man page (roff): clap_mangen's page for `berth`, then a section per
/// subcommand with its description and options.
///
/// # Errors
/// When rendering fails (it writes to memory, so it does not).
pub fn man_page() -> anyhow::Result<String> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        let part = String::from_utf8_lossy(&part)
            .replacen(
                ".SH DESCRIPTION",
                &format!(".SH \"BERTH {}\"", sub.get_name().to_uppercase()),
                1,
            )
            .replace(".SH OPTIONS", ".SS Options");
        out.extend_from_slice(part.as_bytes());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes generated text to stdout (a closed pipe ends the command quietly: [`out`]).
fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    crate::out!("{}", String::from_utf8_lossy(bytes));
    Ok(ExitCode::SUCCESS)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    // The agent logs its work at info; one-shot commands print their own report on stdout.
    let default_level = if matches!(cli.command, Command::Agent(_)) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    berth_sources::read::ReadLimits::set_process_default(cli.max_manifest_bytes);
    let host = host::HostIdentity::from_cli(cli.node_name.as_deref(), &cli.node_labels);
    let result = match cli.command {
        Command::Agent(mut args) => {
            args.socket = cli.socket.clone();
            agent::run(&cli.instance, &host, args)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Get(args) => inspect::get(&cli.instance, cli.socket.as_deref(), args).await,
        Command::Describe(args) => {
            inspect::describe(&cli.instance, cli.socket.as_deref(), args).await
        }
        Command::Events(args) => inspect::events(&cli.instance, cli.socket.as_deref(), args).await,
        Command::Apply(args) => {
            // An agent of this instance converges the same engine objects from its own
            // sources: the two would undo each other's work (as would two applies).
            match lock::acquire(&cli.instance) {
                Ok(_lock) => report::apply(&cli.instance, &host, args).await,
                Err(e) => Err(e),
            }
        }
        Command::Diff(args) => diff::diff(&cli.instance, &host, args).await,
        Command::Validate(args) => report::validate(&args),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "berth", &mut out);
            print_bytes(&out)
        }
        Command::Man => man_page().and_then(|page| print_bytes(page.as_bytes())),
        Command::Schema => print_bytes(format!("{}\n", schema::manifest_schema_json()).as_bytes()),
        Command::Convert(args) => convert::run(&args.dir),
        Command::Crd(args) => match args.write {
            Some(dir) => crd::write_dir(&dir).map(|()| ExitCode::SUCCESS),
            None => crd::all_yaml().map(|y| {
                crate::out!("{y}");
                ExitCode::SUCCESS
            }),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::errln!("error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
