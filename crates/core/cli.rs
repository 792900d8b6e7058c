//! Command-line arguments (clap). Only the binary parses arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_spec::ParamOverride;

/// A declarative, content-addressed pipeline engine for fine-tuning language models.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Print debug logs (stage keys, cache decisions) to stderr. Also: SLUICE_LOG=debug.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the workflow: every stage whose inputs, params or command changed; the rest from cache.
    Run(RunArgs),
    /// Say which stages are stale and why, without running anything.
    Status(StatusArgs),
    /// Re-run every stage with the lockfile's params, ignoring the cache, and check every digest.
    Repro(ReproArgs),
    /// Draw the DAG of stages.
    Dag(DagArgs),
    /// Check a workflow file without running it.
    Validate(ValidateArgs),
    /// Print the JSON Schema of workflow files.
    Schema,
    /// Remove cached objects that no lockfile in the workspace references.
    Gc(GcArgs),
    /// Print the device inventory that stages are placed on.
    Devices(DevicesArgs),
    /// List the builtin stage kinds (`uses:`), or describe one: its outputs and options.
    Stages(StagesArgs),
    /// Serve a model bundle (or any model directory) over the OpenAI API.
    Serve(ServeArgs),
    /// List the bundles `deploy` stages wrote under deployments/.
    Deployments(DeploymentsArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model to serve: a bundle (`deployments/<name>/<version>`), a deployment name
    /// (`deployments/<name>`: its newest version) or any model directory.
    pub bundle: PathBuf,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Route a share of requests to another bundle: PATH=SHARE, such as
    /// `deployments/support-bot/v-0123456789ab=0.2` (repeatable; the shares must add up to
    /// less than 1, and BUNDLE gets the rest).
    #[arg(long = "variant", value_name = "PATH=SHARE")]
    pub variants: Vec<String>,
    /// Generations running at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
    /// Requests that may wait for a free generation slot; more are answered 503.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub queue: usize,
    /// Seed of the A/B routing sequence.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    /// Print the bundles as a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StagesArgs {
    /// A stage kind to describe.
    pub kind: Option<String>,
    /// Print as JSON on stdout (the kind's JSON Schema, with a KIND).
    #[arg(long)]
    pub json: bool,
}

/// How progress is shown on stderr.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ProgressMode {
    /// Live lines per running stage and an overall bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// One line per event (for logs and CI).
    Plain,
}

/// The devices stages may be placed on.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Devices to place GPU stages on instead of those nvidia-smi reports: `gpu:0=80GiB,gpu:1=80GiB`,
    /// `gpu:0,gpu:1`, or `cpu` for none.
    #[arg(long, env = "SLUICE_DEVICES", value_name = "LIST")]
    pub devices: Option<String>,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// Print the inventory as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The workflow file and params, shared by every command that reads a workflow.
#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// The workflow file [default: pipelines/quickstart.yaml in the workspace root].
    pub file: Option<PathBuf>,
    /// Set a param for this invocation: -p lr=0.001 (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<ParamOverride>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Run only these stages and the stages they depend on.
    #[arg(short = 's', long = "stage", value_name = "STAGE")]
    pub stages: Vec<String>,
    /// Stages to run at once [default: number of cores].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// After a failure, keep running every stage that does not depend on it.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Print what would run, and why, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Fail (exit 1) instead of running if the run would change the lockfile.
    #[arg(long)]
    pub frozen: bool,
    /// Print the run summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show every line the stages' commands print.
    #[arg(long)]
    pub show_output: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Print the status as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReproArgs {
    /// The workflow file [default: pipelines/quickstart.yaml in the workspace root].
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Stages to run at once [default: number of cores].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// For a stage whose lockfile entry lists unstable outputs (GPU training): the relative
    /// difference allowed in its other metrics.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.02)]
    pub tolerance: f64,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum DagFormat {
    /// A drawing for the terminal.
    #[default]
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[arg(long, value_enum, default_value_t = DagFormat::Text)]
    pub format: DagFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}
