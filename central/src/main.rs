//! `central`: the command line of the central inspection service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use central::config::{Config, FileChecks};
use central::detect::{DetectorConfig, OnnxDetector, init_runtime};

/// Central inspection service.
///
/// `run --roles broker,bridge,upload,worker` runs those roles in one process
/// (`inference` serves detection over HTTP for workers elsewhere; the api
/// role is not built yet); `detect` runs detection on images; `certs` makes
/// development certificates and device tokens.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run service roles until SIGTERM or SIGINT.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Comma-separated: broker, bridge, upload, worker, inference (api is
        /// not built yet). Default: everything one machine needs, in one
        /// process (the worker runs its models itself, so no inference role).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "broker,bridge,upload,worker"
        )]
        roles: Vec<central::run::Role>,
    },
    /// Check a configuration file and report every problem in it.
    Validate {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Do not check that the files named in the config exist (for
        /// checking a Kubernetes ConfigMap away from the cluster).
        #[arg(long)]
        skip_file_checks: bool,
    },
    /// Run a YOLOv8 ONNX model on images with ONNX Runtime and print the detections.
    Detect {
        /// The model (Ultralytics ONNX export, detect or seg head).
        #[arg(short, long, value_name = "FILE")]
        model: PathBuf,
        /// libonnxruntime.so; default: the one `models/fetch.sh` fetched.
        #[arg(long, value_name = "FILE", env = "ORT_DYLIB_PATH")]
        onnxruntime: Option<PathBuf>,
        /// Minimum confidence.
        #[arg(long, default_value_t = 0.25)]
        conf: f32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
    },
    /// Development certificates and device tokens (production uses the
    /// operator's PKI; see k8s/README.md).
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a development CA (unless DIR has one) and a server certificate.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// DNS names and IP addresses devices connect to (repeatable).
        #[arg(long = "server-name", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        server_names: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issue a device client certificate (subject CN `site/device`).
    Device {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        site: inspection_core::ids::SiteId,
        #[arg(long)]
        device: inspection_core::ids::DeviceId,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Make a random token for a device or a service, append its hash to the
    /// credentials file and print the token (shown once, never stored).
    Token {
        #[arg(long, value_name = "FILE")]
        credentials: PathBuf,
        #[arg(long, requires = "device", conflicts_with = "service")]
        site: Option<inspection_core::ids::SiteId>,
        #[arg(long, requires = "site")]
        device: Option<inspection_core::ids::DeviceId>,
        /// A service's MQTT user name, e.g. `bridge`.
        #[arg(long)]
        service: Option<String>,
    },
}

fn certs(command: CertsCommand) -> anyhow::Result<ExitCode> {
    use central::certs::{DevPki, append_device_credential, append_service_credential, new_token};
    match command {
        CertsCommand::Init {
            dir,
            server_names,
            days,
        } => {
            let pki = DevPki::new(&dir);
            if pki.ensure_ca()? {
                eprintln!("created CA {}", pki.ca_cert().display());
            } else {
                eprintln!("using existing CA {}", pki.ca_cert().display());
            }
            pki.issue_server(&server_names, days)?;
            eprintln!(
                "issued {} for {}",
                pki.server_cert().display(),
                server_names.join(", ")
            );
        }
        CertsCommand::Device {
            dir,
            site,
            device,
            days,
        } => {
            let (cert, key) = DevPki::new(&dir).issue_device(&site, &device, days)?;
            eprintln!("issued {} and {}", cert.display(), key.display());
        }
        CertsCommand::Token {
            credentials,
            site,
            device,
            service,
        } => {
            let token = new_token();
            match (site, device, service) {
                (Some(site), Some(device), None) => {
                    append_device_credential(&credentials, &site, &device, &token)?;
                }
                (None, None, Some(name)) => {
                    append_service_credential(&credentials, &name, &token)?;
                }
                _ => bail!("name either --site and --device, or --service"),
            }
            println!("{token}");
        }
    }
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
        Command::Certs(command) => certs(command),
        Command::Run { config, roles } => {
            let config = match Config::load(&config, FileChecks::On) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{}: {errors}", config.display());
                    return Ok(ExitCode::from(2));
                }
            };
            central::ops::init_logging(config.ops.log_format);
            central::tls::install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let shutdown = central::run::shutdown_on_signals()
                    .context("cannot install signal handlers")?;
                central::run::run(config, &roles, Default::default(), shutdown).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
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
                Ok(_) => {
                    println!("{}: ok", config.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprint!("{}: {errors}", config.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Detect {
            model,
            onnxruntime,
            conf,
            json,
            images,
        } => {
            let library = onnxruntime
                .or_else(|| central::paths::fetched(central::paths::ORT_LIBRARY))
                .context(
                    "no ONNX Runtime library: pass --onnxruntime or run `bash models/fetch.sh`",
                )?;
            let env = init_runtime(&library)?;
            let mut config = DetectorConfig::for_model(model);
            config.decode.conf_threshold = conf;
            if let Some(problems) = Some(config.problems("detect")).filter(|p| !p.is_empty()) {
                bail!("{}", problems.join("; "));
            }
            let detector = OnnxDetector::load(env, &config)?;
            for path in images {
                let image = image::open(&path)
                    .with_context(|| format!("cannot decode {}", path.display()))?
                    .to_rgb8();
                let started = Instant::now();
                let detections = detector.detect(&image)?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                for d in &detections {
                    let label = detector.class_names().get(d.class_id).unwrap_or("?");
                    let b = d.bbox;
                    if json {
                        let line = serde_json::json!({
                            "image": path.display().to_string(),
                            "label": label,
                            "class_id": d.class_id,
                            "score": d.score,
                            "bbox": [b.x1, b.y1, b.x2, b.y2],
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "{}\t{label}\t{:.3}\t[{:.1}, {:.1}, {:.1}, {:.1}]",
                            path.display(),
                            d.score,
                            b.x1,
                            b.y1,
                            b.x2,
                            b.y2
                        );
                    }
                }
                eprintln!(
                    "{}: {} detection(s) in {ms:.0} ms",
                    path.display(),
                    detections.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
