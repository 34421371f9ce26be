#![forbid(unsafe_code)]
//! `berth`: keeps a Docker host exactly as declared.
//!
//! Subcommands: `agent` (long-running), `apply` (one converge), `diff` (the plan, no change),
//! `validate` (decode and check manifests only). See `berth --help`. The binary is a thin
//! wrapper over [`main_entry`], so that end-to-end tests can run the very same code.

pub mod agent;
pub mod cli;
pub mod crd;
pub mod host;
pub mod images;
pub mod report;
pub mod status;

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
pub fn main_entry() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    rt.block_on(run(Cli::parse()))
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
    let host = host::HostIdentity::from_cli(cli.node_name.as_deref(), &cli.node_labels);
    let result = match cli.command {
        Command::Agent(args) => agent::run(&cli.instance, &host, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Apply(args) => report::apply(&cli.instance, &host, args).await,
        Command::Diff(args) => report::diff(&cli.instance, &host, args).await,
        Command::Validate(args) => Ok(report::validate(&args.dir)),
        Command::Crd(args) => match args.write {
            Some(dir) => crd::write_dir(&dir).map(|()| ExitCode::SUCCESS),
            None => crd::all_yaml().map(|y| {
                print!("{y}");
                ExitCode::SUCCESS
            }),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
