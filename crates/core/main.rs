//! The `sluice` binary: argument parsing, output and exit codes. Everything else lives in the
//! library crates; this crate is the only one that talks to the terminal.

mod catalog;
mod cli;
mod dag;
mod deployments;
mod devices;
mod exit;
mod gc;
mod report;
mod run;
mod serve;
mod stages;
mod status;
mod workspace;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(verbose: bool) {
    let filter = match std::env::var("SLUICE_LOG") {
        Ok(f) => tracing_subscriber::EnvFilter::new(f),
        Err(_) if verbose => {
            tracing_subscriber::EnvFilter::new("sluice=debug,sluice_exec=debug,sluice_store=debug")
        }
        Err(_) => tracing_subscriber::EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[derive(Serialize)]
struct Validated<'a> {
    ok: bool,
    workflow: &'a str,
    file: String,
    stages: usize,
}

/// Runs an async command on a tokio runtime (`run`, `repro` and `serve` need one).
fn block_on(future: impl std::future::Future<Output = Result<u8>>) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(future)
}

fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => block_on(run::run(args)),
        Command::Repro(args) => block_on(run::repro(args)),
        Command::Status(args) => status::status(args),
        Command::Dag(args) => {
            let loaded =
                workspace::load(args.workflow.file.as_deref(), &args.workflow.params, None)?;
            print!("{}", dag::render(&loaded.plan, args.format));
            Ok(exit::OK)
        }
        Command::Validate(args) => {
            let loaded =
                workspace::load(args.workflow.file.as_deref(), &args.workflow.params, None)?;
            let n = loaded.plan.stages().len();
            if args.json {
                report::print_json(&Validated {
                    ok: true,
                    workflow: &loaded.plan.workflow.name,
                    file: loaded.shown.display().to_string(),
                    stages: n,
                });
            } else {
                println!("{}: ok ({n} stages)", loaded.shown.display());
            }
            Ok(exit::OK)
        }
        Command::Schema => {
            let catalog = catalog::catalog();
            let kinds = sluice_spec::Kinds::kinds(&catalog::CatalogKinds(&catalog));
            print!("{}", sluice_spec::json_schema(&kinds));
            Ok(exit::OK)
        }
        Command::Gc(args) => gc::gc(args),
        Command::Devices(args) => devices::devices(args),
        Command::Stages(args) => stages::stages(args),
        Command::Serve(args) => block_on(serve::serve(args)),
        Command::Deployments(args) => deployments::deployments(args),
    }
}

/// candle runs elementwise ops on a pool of threads that spin at a barrier after every op; when
/// the cores are shared (parallel stages, another process) the spinning costs more than the
/// work, and training slowed down 1.5–2.5× in measurements. The heavy elementwise work of a
/// training step is in sluice's own fused kernels, which run on rayon, as do matrix products;
/// so candle's pool gets one thread unless the user chose otherwise.
#[allow(unsafe_code)]
fn single_threaded_candle_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing can
        // read the environment concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Tensor code allocates and frees buffers of megabytes at every op. glibc serves those from
/// fresh `mmap`s and unmaps them on free, so every op paid page faults and zeroing: about a
/// quarter of a training step. Keeping them on the heap lets freed buffers be reused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn reuse_large_allocations() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists and before any large allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reuse_large_allocations() {}

fn main() -> ExitCode {
    reuse_large_allocations();
    single_threaded_candle_elementwise();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match e.downcast_ref::<Failure>() {
                Some(Failure::Spec(errors)) => {
                    for (i, err) in errors.errors().iter().enumerate() {
                        if i > 0 {
                            eprintln!();
                        }
                        eprintln!("error: {err}");
                    }
                }
                None => {
                    eprintln!("error: {e}");
                    for cause in e.chain().skip(1) {
                        eprintln!("  caused by: {cause}");
                    }
                }
            }
            ExitCode::from(exit::FAILED)
        }
    }
}
