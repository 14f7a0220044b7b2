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
        /// Comma-separated: broker, bridge, upload, worker, inference, api.
        /// Default: everything one machine needs, in one process (the worker
        /// runs its models itself, so no inference role).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "broker,bridge,upload,worker,api"
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
    /// The whole system on one machine: central (all roles, SQLite, embedded
    /// broker, local images) and an edge agent whose cameras replay a
    /// vehicle's pickup and then its return with painted damage. Prints the
    /// plate, the findings and the report; writes pickup-beside-return
    /// pictures and the PDF. Ctrl-C stops it.
    Demo {
        /// Where everything goes (replaced on each run; certificates kept).
        #[arg(long, value_name = "DIR", default_value = "demo-output")]
        dir: PathBuf,
        /// The edge-agent binary; default: the one beside this binary.
        #[arg(long, value_name = "FILE")]
        agent: Option<PathBuf>,
        /// The model cache `models/fetch.sh` filled.
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// Seeds the vehicle's plate and the painted damage.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
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
    /// Make a staff API token for a service account, append its hash to the
    /// API tokens file (`[api] tokens`) and print the token (shown once).
    ApiToken {
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
        /// The account's name, shown in the audit log as `token:NAME`.
        #[arg(long)]
        name: String,
        /// viewer, reviewer or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// A site it may see (repeatable); `*` for every site.
        #[arg(long = "site", value_name = "SITE", required = true)]
        sites: Vec<String>,
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
        CertsCommand::ApiToken {
            tokens,
            name,
            role,
            sites,
        } => {
            let role = central::api::Role::ALL
                .into_iter()
                .find(|r| r.as_str() == role)
                .with_context(|| format!("role {role:?}: viewer, reviewer or admin"))?;
            let token = new_token();
            central::certs::append_api_token(&tokens, &name, role, &sites, &token)?;
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `central demo`: progress lines on stdout, central's own log in
/// `DIR/central.log`, the results at the end.
fn demo(
    dir: PathBuf,
    agent: Option<PathBuf>,
    models: Option<PathBuf>,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    use central::store::{Comparison, FindingStatus};

    let agent = match agent {
        Some(a) => a,
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .with_file_name("edge-agent"),
    };
    let models = models
        .or_else(|| central::paths::cache_dir().map(|c| c.join("models")))
        .context("no model cache: pass --models, or set HOME")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    let log_path = dir.join("central.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    central::ops::init_logging_to(central::ops::LogFormat::Text, log);
    central::tls::install_crypto_provider();

    let mut settings = central::demo::DemoSettings::new(dir.clone(), agent, models);
    settings.seed = seed;
    let started = Instant::now();
    let progress = move |line: &str| {
        println!("[{:6.1} s] {line}", started.elapsed().as_secs_f64());
    };
    println!(
        "central demo: everything under {} (central's log: {})",
        dir.display(),
        log_path.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let stop = central::run::shutdown_on_signals().context("cannot install signal handlers")?;
        anyhow::Ok(central::demo::run(&settings, &progress, stop).await)
    })?;
    let o = match outcome {
        Ok(o) => o,
        Err(central::demo::DemoError::Stopped) => {
            println!("stopped; nothing left running");
            return Ok(ExitCode::from(130));
        }
        Err(e) => bail!("{e}"),
    };

    let r = &o.result;
    println!();
    println!("=== Return inspection {} ===", o.ret.inspection);
    match &r.plate {
        Some(p) => println!(
            "Plate read:   {} ({}, confidence {:.2}, {} of {} frames agree); rendered on the vehicle: {}",
            p.display, p.country, p.confidence, p.votes, p.readable_frames, o.bay.printed_plate
        ),
        None => println!(
            "Plate read:   none (rendered on the vehicle: {})",
            o.bay.printed_plate
        ),
    }
    match &r.comparison {
        Comparison::Compared {
            pickup_inspection_id,
            positions,
        } => println!(
            "Compared with the pickup {pickup_inspection_id} on: {}",
            positions.join(", ")
        ),
        Comparison::NoPickup => println!("Compared with: no pickup of this plate found"),
        Comparison::NotApplicable => {}
    }
    let flagged: Vec<_> = r
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.status,
                FindingStatus::New | FindingStatus::PossibleNewDamage
            )
        })
        .collect();
    println!(
        "New findings: {} (for staff to confirm before any charge)",
        flagged.len()
    );
    for f in &flagged {
        let b = f.bbox;
        println!(
            "  - {:<20} {:<8} {:<10} box [{:.0}, {:.0}, {:.0}, {:.0}] in {}",
            match f.status {
                FindingStatus::New => "new damage",
                _ => "possible new damage",
            },
            f.class,
            f.position,
            b.x1,
            b.y1,
            b.x2,
            b.y2,
            f.camera
        );
    }
    for d in &o.bay.damage {
        let b = d.bbox;
        println!(
            "    painted by the demo: {} at {} [{:.0}, {:.0}, {:.0}, {:.0}]",
            d.kind, d.position, b.x1, b.y1, b.x2, b.y2
        );
    }
    println!();
    let model = o
        .report
        .model
        .as_deref()
        .map(|m| format!(", {m}"))
        .unwrap_or_default();
    println!(
        "Report ({}{model}, {}):",
        o.report.writer,
        o.report.language.code()
    );
    for line in o.report.narrative.lines() {
        println!("  {line}");
    }
    println!();
    for p in &o.pictures {
        println!("Pickup | return, findings drawn: {}", p.display());
    }
    println!("PDF report: {}", o.pdf.display());
    println!(
        "Timings: pickup pass {:.1} s, return pass {:.1} s; inspection complete on the board -> report stored: {:.2} s (pickup), {:.2} s (return)",
        o.pickup.wall.as_secs_f64(),
        o.ret.wall.as_secs_f64(),
        o.pickup.completed_to_report.as_secs_f64(),
        o.ret.completed_to_report.as_secs_f64()
    );
    println!(
        "Staff API (served while the demo ran): GET {}/api/v1/inspections/{} -> {}, {} findings, {} awaiting a staff decision (admin token in {}; OpenAPI at /api/openapi.json, docs at /api/docs)",
        o.api.base_url,
        o.ret.inspection,
        o.api.status,
        o.api.findings,
        o.api.undecided,
        o.api.token_file.display()
    );
    println!(
        "Stored in {} (images in {}).",
        o.database.display(),
        o.images.display()
    );
    println!(
        "Staff web UI over these results: `central run --config {} --roles api`, then open {}/ui/ and sign in with the token in {}",
        o.database.with_file_name("central.toml").display(),
        o.api.base_url,
        o.api.token_file.display()
    );
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
        Command::Demo {
            dir,
            agent,
            models,
            seed,
        } => demo(dir, agent, models, seed),
        Command::Run { config, roles } => {
            let config = match Config::load(&config, FileChecks::On) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{}: {errors}", config.display());
                    return Ok(ExitCode::from(2));
                }
            };
            central::ops::init_logging(config.ops.log_format);
            if let Err(error) = central::privacy::init_log_key(config.ops.log_key_file.as_deref()) {
                eprintln!("{error}");
                return Ok(ExitCode::from(2));
            }
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
