use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use worker::config::WorkerConfig;

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "ScanFleet worker: runs scans from RabbitMQ on CPU or GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume scans from a queue until SIGTERM.
    Serve(Box<WorkerConfig>),
    /// Run one scan on a local file, with no services at all.
    Analyze {
        file: PathBuf,
        /// `video_scan` (a video) or `item_crop` (a photo).
        #[arg(long, default_value = "video_scan", value_parser = ["video_scan", "item_crop"])]
        kind: String,
        /// item_crop: also write each crop as DIR/crop_NN.jpg.
        #[arg(long)]
        crops_dir: Option<PathBuf>,
        #[arg(long, env = "BACKEND", default_value = "auto")]
        backend: vision::BackendChoice,
        #[arg(long, env = "DOWNSCALE_MAX", default_value_t = 1280)]
        downscale_max: usize,
        /// Print the whole result as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Render a synthetic scan (video + ground truth JSON) for tests and demos;
    /// `--kind item_crop` renders a photo of items instead.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "video_scan", value_parser = ["video_scan", "item_crop"])]
        kind: String,
        /// item_crop: number of items (default: 1–6 chosen by the seed).
        #[arg(long)]
        items: Option<u32>,
        #[arg(long, default_value_t = 24)]
        frames: u32,
        #[arg(long, default_value_t = 1280)]
        width: u32,
        #[arg(long, default_value_t = 720)]
        height: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            protocol::telemetry::init_tracing(config.service.log_format);
            let running = worker::startup::start(*config, CancellationToken::new()).await?;
            // SIGTERM: no new scans; in-flight ones finish within the grace
            // period. A task that failed is an error exit: the orchestrator
            // restarts the worker.
            running
                .wait_until(protocol::telemetry::shutdown_signal())
                .await?;
        }
        Command::Analyze {
            file,
            kind,
            crops_dir,
            backend,
            downscale_max,
            json,
        } if kind == "item_crop" => {
            protocol::telemetry::init_tracing(protocol::telemetry::LogFormat::Text);
            let engine = vision::backend::ScanEngine::new(backend)?;
            eprintln!(
                "backend: {} ({})",
                engine.report().used,
                engine.report().reason
            );
            let output = tokio::task::spawn_blocking(move || {
                worker::jobs::crop_file(&engine, &file, downscale_max)
            })
            .await?
            .map_err(|error| anyhow::anyhow!("{}: {error}", error.code()))?;
            if let Some(dir) = crops_dir {
                worker::jobs::write_crops(&output, &dir)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&output.report)?);
            } else {
                print!("{}", worker::report::item_crop_summary(&output.report));
            }
        }
        Command::Analyze {
            file,
            backend,
            downscale_max,
            json,
            ..
        } => {
            protocol::telemetry::init_tracing(protocol::telemetry::LogFormat::Text);
            let engine = vision::backend::ScanEngine::new(backend)?;
            eprintln!(
                "backend: {} ({})",
                engine.report().used,
                engine.report().reason
            );
            // A progress line only for a person watching: not into logs or pipes, not with --json.
            let show_progress = !json && std::io::stderr().is_terminal();
            let output = tokio::task::spawn_blocking(move || {
                let mut line = worker::report::ProgressLine::new(
                    std::io::stderr(),
                    Duration::from_millis(250),
                );
                let output =
                    worker::jobs::analyze_file(&engine, &file, downscale_max, &mut |progress| {
                        if show_progress {
                            line.update(progress)
                        }
                    });
                line.finish();
                output
            })
            .await?
            .map_err(|error| anyhow::anyhow!("{}: {error}", error.code()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&output.report)?);
            } else {
                print!("{}", worker::report::summary(&output.report));
            }
        }
        Command::Synth {
            out,
            kind,
            items,
            width,
            height,
            seed,
            ..
        } if kind == "item_crop" => {
            let spec = vision::synth_photo::PhotoSpec {
                items,
                width,
                height,
                seed,
                ..Default::default()
            };
            let truth = vision::synth_photo::generate(&spec, &out)
                .context("rendering the synthetic photo")?;
            println!("{}", truth.photo.display());
        }
        Command::Synth {
            out,
            frames,
            width,
            height,
            seed,
            ..
        } => {
            let spec = vision::synth::SynthSpec {
                frames,
                width,
                height,
                seed,
                ..Default::default()
            };
            let truth =
                vision::synth::generate(&spec, &out).context("rendering the synthetic scan")?;
            println!("{}", truth.video.display());
        }
    }
    Ok(())
}
