//! `sluice run` and `sluice repro`: open the store, take the workspace lock, run the plan, write
//! the lockfile (run only), and report.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sluice_exec::{RunOptions, RunReport, StageOutcome};
use sluice_lock::Lockfile;
use sluice_spec::ParamOverride;
use sluice_store::{HashStats, Store};
use tokio::sync::watch;

use crate::cli::DeviceArgs;
use crate::cli::{ReproArgs, RunArgs};
use crate::exit;
use crate::exit::Failure;
use crate::report::{human_duration, print_json, printer, tally};
use crate::workspace::{Loaded, load};

/// Opens the store of `root` and waits for the workspace lock.
pub fn open_locked(root: &Path) -> Result<(Arc<Store>, sluice_store::WorkspaceLock)> {
    let store = Store::open(root).with_context(|| {
        format!(
            "cannot open the store in {}",
            root.join(".sluice").display()
        )
    })?;
    let lock = store
        .lock(|pid| match pid {
            Some(pid) => eprintln!(
                "waiting for another sluice process (pid {pid}) to finish in this workspace…"
            ),
            None => eprintln!("waiting for another sluice process to finish in this workspace…"),
        })
        .context("cannot lock the workspace")?;
    store.clean_tmp().context("cannot clean .sluice/tmp")?;
    if let Some(pid) = lock.crashed_holder() {
        let killed = sluice_exec::reap_orphans(store.workspace());
        if killed > 0 {
            eprintln!(
                "warning: a previous sluice (pid {pid}) died in this workspace; stopped {killed} command{} it left running",
                if killed == 1 { "" } else { "s" }
            );
        }
    }
    Ok((Arc::new(store), lock))
}

/// Reads the lockfile beside the workflow, through the store's memo (YAML parsing is slow).
pub fn read_lockfile(loaded: &Loaded, store: &Store) -> Result<Option<Lockfile>> {
    let path = loaded.lock_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {}", loaded.lock_shown().display()));
        }
    };
    let key = crate::workspace::memo_key("lockfile", &[text.as_bytes()]);
    if let Ok(Some(bytes)) = store.memo(&key)
        && let Ok(lock) = serde_json::from_slice(&bytes)
    {
        return Ok(Some(lock));
    }
    let lock = Lockfile::parse(&path, &text).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n  = hint: fix it, or delete {} to start over",
            loaded.lock_shown().display()
        )
    })?;
    if let Ok(bytes) = serde_json::to_vec(&lock) {
        let _ = store.put_memo(&key, &bytes);
    }
    Ok(Some(lock))
}

/// Sends `true` on the returned channel at the first Ctrl-C or SIGTERM.
fn cancel_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        eprintln!("interrupted: stopping running stages…");
        let _ = tx.send(true);
    });
    rx
}

#[derive(Serialize)]
struct Summary<'a> {
    workflow: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancelled: bool,
    stages: &'a [StageOutcome],
    duration_ms: u64,
    hashed: HashStats,
    lockfile: String,
}

/// The device inventory: `--devices` / `SLUICE_DEVICES` when given, else detected.
pub fn inventory(args: &DeviceArgs) -> Result<sluice_exec::Inventory> {
    match &args.devices {
        Some(spec) => sluice_exec::Inventory::given(spec, "--devices")
            .map_err(|e| anyhow::anyhow!("--devices / SLUICE_DEVICES: {e}")),
        None => Ok(sluice_exec::Inventory::detect_with("cuda driver", || {
            sluice_model::cuda_gpus()
                .into_iter()
                .map(|g| sluice_exec::Gpu {
                    id: g.id,
                    name: Some(g.name),
                    memory_total: Some(g.memory_total),
                    memory_free: Some(g.memory_free),
                })
                .collect()
        })),
    }
}

/// Builtin stages that ask for GPUs their kind cannot use in this build (the model kinds in a
/// sluice built without `cuda`): with `fallback: cpu` they are placed on the CPU; without, the
/// run stops here, before anything runs, naming each one.
fn gpu_capability(loaded: &mut Loaded, options: &RunOptions) -> Result<()> {
    let mut problems = Vec::new();
    for i in options.selected(&loaded.plan) {
        let stage = &mut loaded.plan.workflow.stages[i];
        let Some((kind, reason)) = stage.uses.as_deref().and_then(|name| {
            let kind = options.catalog.get(name)?;
            Some((kind.name(), kind.gpu_unavailable()?))
        }) else {
            continue;
        };
        if stage.needs.gpu == 0 {
            continue;
        }
        if stage.needs.fallback_cpu {
            tracing::info!(
                "stage `{}` runs on the CPU: `{kind}` cannot use a GPU ({reason})",
                stage.name
            );
            stage.needs.gpu = 0;
            stage.needs.gpu_memory = None;
            continue;
        }
        let plural = if stage.needs.gpu == 1 { "GPU" } else { "GPUs" };
        problems.push((
            resources_pos(stage),
            format!(
                "stage `{}` asks for {} {plural}, but `{kind}` cannot use one: {reason}",
                stage.name, stage.needs.gpu
            ),
        ));
    }
    resource_errors(
        &loaded.plan.workflow,
        problems,
        "build with `cargo build --release --features cuda`, set `gpu: 0`, or add `fallback: cpu` to run it on the CPU",
    )
}

/// Where a stage's `resources` are written, else the stage itself.
fn resources_pos(stage: &sluice_spec::ResolvedStage) -> sluice_spec::Pos {
    if stage.needs.pos.line > 0 {
        stage.needs.pos
    } else {
        stage.pos
    }
}

/// Stops the run before anything runs, with one error per `(position, message)`, each with
/// `hint`; nothing when there is none.
fn resource_errors(
    wf: &sluice_spec::ResolvedWorkflow,
    problems: Vec<(sluice_spec::Pos, String)>,
    hint: &str,
) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let errors = problems
        .into_iter()
        .map(|(pos, message)| {
            sluice_spec::SpecError::new(&wf.file, pos, message)
                .with_hint(hint)
                .with_source(&wf.source)
        })
        .collect();
    Err(Failure::Spec(sluice_spec::SpecErrors(errors)).into())
}

/// Fails, naming each stage and what it asked for, if a stage can never be placed.
fn check_placement(loaded: &Loaded, options: &RunOptions) -> Result<()> {
    let wf = &loaded.plan.workflow;
    let problems = sluice_exec::check_placement(&loaded.plan, options)
        .into_iter()
        .map(|p| {
            let pos = wf.stage(&p.stage).map(resources_pos).unwrap_or_default();
            let message = format!(
                "stage `{}` can never run on this machine: {}",
                p.stage, p.reason
            );
            (pos, message)
        })
        .collect();
    resource_errors(
        wf,
        problems,
        &format!(
            "the inventory ({}: {}) comes from nvidia-smi or --devices / SLUICE_DEVICES; `fallback: cpu` runs a GPU stage on the CPU when there is no GPU",
            options.inventory.source,
            options.inventory.gpu_list()
        ),
    )
}

fn width(loaded: &Loaded) -> usize {
    loaded
        .plan
        .stages()
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
}

pub async fn run(args: RunArgs) -> Result<u8> {
    let started = Instant::now();
    let (store, _lock) = open_locked(&crate::workspace::current_root()?)?;
    let mut loaded = load(
        args.workflow.file.as_deref(),
        &args.workflow.params,
        Some(&store),
    )?;
    let targets = args
        .stages
        .iter()
        .map(|s| {
            loaded.plan.index_of(s).ok_or_else(|| {
                let names: Vec<&str> = loaded
                    .plan
                    .stages()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                let hint =
                    sluice_spec::suggestion(s, "stages", names.iter().copied()).unwrap_or_default();
                anyhow::anyhow!(
                    "no stage `{s}` in {}\n  = hint: {hint}",
                    loaded.shown.display()
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let options = RunOptions {
        jobs: args.jobs.unwrap_or_else(default_jobs),
        keep_going: args.keep_going,
        targets: (!targets.is_empty()).then_some(targets),
        stream_output: args.show_output,
        inventory: inventory(&args.devices)?,
        catalog: Arc::new(crate::catalog::catalog()),
        ..RunOptions::default_without_inventory()
    };
    gpu_capability(&mut loaded, &options)?;
    check_placement(&loaded, &options)?;
    let previous = read_lockfile(&loaded, &store)?;

    if args.dry_run || args.frozen {
        let report = sluice_exec::status(
            &loaded.plan,
            &store,
            previous.as_ref(),
            &crate::catalog::catalog(),
        )?;
        store.flush()?;
        if args.dry_run {
            crate::status::print_plan(&loaded, &report, args.json);
            return Ok(exit::OK);
        }
        let projected = report.projected_lockfile(&loaded.plan, previous.as_ref());
        if !report.is_fresh() || projected.as_ref() != previous.as_ref() {
            let mut why = Vec::new();
            for s in report
                .stages
                .iter()
                .filter(|s| s.status == sluice_exec::Freshness::Stale)
            {
                why.push(format!(
                    "  stage `{}` would run: {}",
                    s.name,
                    s.reasons.join("; ")
                ));
            }
            if why.is_empty() {
                why.push(if previous.is_none() {
                    "  there is no lockfile yet".to_owned()
                } else {
                    "  the workflow or its params differ from the lockfile".to_owned()
                });
            }
            bail!(
                "--frozen: the run would change {}\n{}",
                loaded.lock_shown().display(),
                why.join("\n")
            );
        }
    }

    let total = options.selected(&loaded.plan).len();
    let printer: Arc<dyn sluice_exec::Observer> = Arc::from(printer(
        args.progress,
        width(&loaded),
        total,
        args.json && !args.show_output,
    ));
    if !args.json {
        eprintln!(
            "sluice: running {} ({} stages)",
            loaded.shown.display(),
            loaded.plan.stages().len()
        );
    }
    let plan = Arc::new(loaded.plan);
    let report = sluice_exec::run(
        plan.clone(),
        store.clone(),
        previous.clone(),
        options,
        printer,
        cancel_on_signal(),
    )
    .await;
    let loaded = Loaded {
        plan: Arc::try_unwrap(plan).map_err(|_| anyhow::anyhow!("plan still shared"))?,
        ..loaded
    };
    // The lockfile is rewritten only when its content changes, so a no-op run leaves it alone.
    if previous.as_ref() != Some(&report.lockfile) {
        report
            .lockfile
            .write(&loaded.lock_path())
            .with_context(|| format!("cannot write {}", loaded.lock_shown().display()))?;
    }
    after_lockfile(&loaded, &report, &store);
    store.flush()?;
    finish(&loaded, &report, &store, started, args.json, "run")
}

/// Lets each builtin stage that ran see the lockfile it is recorded in (a deployed bundle keeps a
/// copy). A failure here is a warning: the run itself succeeded.
fn after_lockfile(loaded: &Loaded, report: &RunReport, store: &Store) {
    let lock_path = loaded.lock_path();
    if !lock_path.exists() {
        return;
    }
    let catalog = crate::catalog::catalog();
    let workspace = store.workspace();
    for outcome in &report.stages {
        if outcome.status != sluice_exec::StageStatus::Ran {
            continue;
        }
        let Some(stage) = loaded.plan.stages().iter().find(|s| s.name == outcome.name) else {
            continue;
        };
        let Some(kind) = stage.uses.as_deref().and_then(|u| catalog.get(u)) else {
            continue;
        };
        let outputs = stage
            .outputs
            .iter()
            .map(|(k, p)| (k.clone(), workspace.join(p)))
            .collect();
        if let Err(e) = kind.after_lockfile(workspace, &outputs, &lock_path) {
            eprintln!("warning: stage `{}`: {e}", stage.name);
        }
    }
}

fn finish(
    loaded: &Loaded,
    report: &RunReport,
    store: &Store,
    started: Instant,
    json: bool,
    verb: &str,
) -> Result<u8> {
    let ok = report.succeeded();
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if json {
        print_json(&Summary {
            workflow: &loaded.plan.workflow.name,
            ok,
            cancelled: report.cancelled,
            stages: &report.stages,
            duration_ms: elapsed,
            hashed: store.hash_stats(),
            lockfile: loaded.lock_shown().display().to_string(),
        });
    } else if verb == "run" {
        eprintln!(
            "sluice: {} in {}",
            tally(&report.stages),
            human_duration(elapsed)
        );
    }
    Ok(if report.cancelled {
        exit::INTERRUPTED
    } else if ok {
        exit::OK
    } else {
        exit::FAILED
    })
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Overrides that set every param to the value the lockfile recorded.
fn params_from(lock: &Lockfile, loaded: &Loaded) -> Vec<ParamOverride> {
    lock.params
        .iter()
        .filter(|(name, _)| loaded.plan.workflow.params.contains_key(*name))
        .map(|(name, value)| ParamOverride {
            name: name.clone(),
            value: serde_json::to_string(value).unwrap_or_default(),
        })
        .collect()
}

pub async fn repro(args: ReproArgs) -> Result<u8> {
    let started = Instant::now();
    let (store, _lock) = open_locked(&crate::workspace::current_root()?)?;
    let first = load(args.file.as_deref(), &[], Some(&store))?;
    let Some(lock) = read_lockfile(&first, &store)? else {
        bail!(
            "no lockfile {} to reproduce\n  = hint: run `sluice run {}` first",
            first.lock_shown().display(),
            first.shown.display()
        );
    };
    let params = params_from(&lock, &first);
    let mut loaded = load(args.file.as_deref(), &params, Some(&store))?;
    let options = RunOptions {
        jobs: args.jobs.unwrap_or_else(default_jobs),
        force: true,
        expect: Some(lock.clone()),
        tolerance: args.tolerance,
        inventory: inventory(&args.devices)?,
        catalog: Arc::new(crate::catalog::catalog()),
        ..RunOptions::default_without_inventory()
    };
    gpu_capability(&mut loaded, &options)?;
    check_placement(&loaded, &options)?;
    if !args.json {
        eprintln!(
            "sluice: reproducing {} from {}",
            loaded.shown.display(),
            loaded.lock_shown().display()
        );
    }
    let printer: Arc<dyn sluice_exec::Observer> = Arc::from(printer(
        args.progress,
        width(&loaded),
        loaded.plan.stages().len(),
        args.json,
    ));
    let plan = Arc::new(loaded.plan);
    let report = sluice_exec::run(
        plan.clone(),
        store.clone(),
        None,
        options,
        printer,
        cancel_on_signal(),
    )
    .await;
    let loaded = Loaded {
        plan: Arc::try_unwrap(plan).map_err(|_| anyhow::anyhow!("plan still shared"))?,
        ..loaded
    };
    store.flush()?;
    let code = finish(&loaded, &report, &store, started, args.json, "repro")?;
    if !args.json {
        let compared = report
            .stages
            .iter()
            .filter(|s| {
                lock.stages.contains_key(&s.name) && s.status == sluice_exec::StageStatus::Ran
            })
            .count();
        match (&report.mismatch, code) {
            (None, exit::OK) => println!("reproduced: {compared} stages, all digests match"),
            (Some((stage, what)), _) => {
                println!("not reproduced: stage `{stage}` {what} differs from the lockfile")
            }
            (None, _) => println!("not reproduced: {}", tally(&report.stages)),
        }
    }
    Ok(code)
}
