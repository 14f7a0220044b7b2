//! `edge-agent`: the command line of the return-bay edge agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::config::{Config, FileChecks};
use inspection_core::quality::{self, QualityThresholds};

/// Edge agent for return-bay boards.
///
/// `run` captures, gates, pre-screens and keeps inspections in the local
/// outbox, and with an `[uplink]` section drains it to the central service
/// (events over MQTT, images over HTTPS, deleted only on central's ack).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: cameras -> quality gate -> pre-screen -> inspection
    /// sessions -> outbox. Stops on SIGTERM/SIGINT (completing the running
    /// inspection) or when every camera source has ended (replays).
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and report every problem in it.
    Validate {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Do not check that the files and directories named in the config
        /// exist (for checking a board's config on another machine).
        #[arg(long)]
        skip_file_checks: bool,
    },
    /// Score images with the quality gate (sharpness, exposure) and print the verdicts.
    Quality {
        /// Take the thresholds from this config's [quality] section instead of the defaults.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
    },
}

fn run_agent(path: PathBuf) -> anyhow::Result<ExitCode> {
    let (config, identity) = match Config::load(&path, FileChecks::On) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    edge_agent::ops::init_logging(config.ops.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edge-agent")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            let _ = shutdown_tx.send(true);
        });
        edge_agent::agent::run(path, config, identity, shutdown)
            .await
            .context("the agent stopped")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => run_agent(config),
        Command::Validate {
            config,
            skip_file_checks,
        } => {
            let files = if skip_file_checks {
                FileChecks::Off
            } else {
                FileChecks::On
            };
            match Config::load(&config, files) {
                Ok((_, id)) => {
                    println!(
                        "{}: ok (site {}, device {})",
                        config.display(),
                        id.site,
                        id.device
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprint!("{}: {errors}", config.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Quality { config, images } => {
            let thresholds = match config {
                Some(path) => {
                    Config::load(&path, FileChecks::Off)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                        .0
                        .quality
                }
                None => QualityThresholds::default(),
            };
            let mut all_accepted = true;
            for path in images {
                let image = image::open(&path)
                    .with_context(|| format!("cannot decode {}", path.display()))?;
                let verdict = quality::assess(&image, &thresholds);
                let m = &verdict.metrics;
                let outcome = if verdict.accepted() {
                    "accepted".to_owned()
                } else {
                    all_accepted = false;
                    let reasons: Vec<String> =
                        verdict.reasons.iter().map(|r| r.to_string()).collect();
                    format!("rejected: {}", reasons.join("; "))
                };
                println!(
                    "{}\tsharpness {:.1}\tmean luma {:.1}\tdark {:.3}\tbright {:.3}\t{outcome}",
                    path.display(),
                    m.sharpness,
                    m.mean_luma,
                    m.dark_fraction,
                    m.bright_fraction
                );
            }
            Ok(if all_accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
