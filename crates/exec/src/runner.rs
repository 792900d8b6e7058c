//! The scheduler: runs a plan's stages on tokio, at most `jobs` at once, each as soon as every
//! stage it references has finished. A stage whose key is in the cache is restored, not run.
//! After a failure the run stops launching stages (or, with `keep_going`, skips only the failed
//! stage's dependents). Nothing of a failed or cancelled stage enters the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_lock::{LockedStage, Lockfile};
use sluice_plan::Plan;
use sluice_stage::{Catalog, Device, StageContext, StageError, StageReport};
use sluice_store::{Artifact, Digest, StageRecord, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::artifacts::locked_stage;
use crate::cache::{
    CacheCheck, InputError, Produced, check_cache, hash_inputs, input_view, key_of,
};
use crate::command::{CommandFailure, prepare_outputs, run_command};
use crate::devices::Inventory;
use crate::observer::Observer;
use crate::outcome::{StageOutcome, StageStatus};
use crate::placement::{Grant, Pool};
use crate::reason::{Reason, diff};

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Stages running at once.
    pub jobs: usize,
    /// After a failure, go on with every stage that does not depend on it.
    pub keep_going: bool,
    /// Run every stage, ignoring the cache (`sluice repro`).
    pub force: bool,
    /// Check each stage's output digests against this lockfile; a mismatch fails the stage.
    pub expect: Option<Lockfile>,
    /// With `expect`: the relative difference allowed in the metrics of a stage whose outputs
    /// are unstable (not bit-exact between runs).
    pub tolerance: f64,
    /// Pass every line the commands write to the observer.
    pub stream_output: bool,
    /// Run only these stages and what they depend on.
    pub targets: Option<Vec<usize>>,
    /// The devices stages are placed on.
    pub inventory: Inventory,
    /// The builtin stage kinds (`uses:`).
    pub catalog: Arc<Catalog>,
}

impl Default for RunOptions {
    /// Options with the detected device inventory.
    fn default() -> RunOptions {
        RunOptions {
            inventory: Inventory::detect(),
            ..RunOptions::default_without_inventory()
        }
    }
}

impl RunOptions {
    /// The stages this run covers, in order: the targets and what they depend on, or all.
    pub fn selected(&self, plan: &Plan) -> Vec<usize> {
        match &self.targets {
            Some(t) => plan.closure(t),
            None => plan.order().to_vec(),
        }
    }

    /// Options with an inventory of no GPUs (detecting runs `nvidia-smi`).
    pub fn default_without_inventory() -> RunOptions {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_going: false,
            force: false,
            expect: None,
            tolerance: 0.02,
            stream_output: false,
            targets: None,
            inventory: Inventory {
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                memory: None,
                gpus: Vec::new(),
                source: "none".to_owned(),
            },
            catalog: Arc::new(Catalog::new()),
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    /// One outcome per stage considered, in plan order.
    pub stages: Vec<StageOutcome>,
    /// The lockfile as it should now be.
    pub lockfile: Lockfile,
    pub cancelled: bool,
    /// With `expect`: the first stage and output whose digest differed.
    pub mismatch: Option<(String, String)>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        !self.cancelled
            && self
                .stages
                .iter()
                .all(|s| matches!(s.status, StageStatus::Ran | StageStatus::Cached))
    }
}

struct Ctx {
    plan: Arc<Plan>,
    store: Arc<Store>,
    previous: Option<Lockfile>,
    options: RunOptions,
    observer: Arc<dyn Observer>,
}

struct Finished {
    index: usize,
    /// What the stage held while it ran, to give back.
    grant: Option<Grant>,
    outcome: StageOutcome,
    locked: Option<LockedStage>,
    outputs: BTreeMap<String, Artifact>,
    mismatch: Option<String>,
}

/// The scheduler's bookkeeping.
struct State {
    plan: Arc<Plan>,
    keep_going: bool,
    observer: Arc<dyn Observer>,
    in_run: BTreeSet<usize>,
    /// Plan position of each stage in the run: ready stages start in this order.
    position: BTreeMap<usize, usize>,
    /// Upstream stages not finished yet, per stage.
    waiting: Vec<usize>,
    ready: BTreeSet<(usize, usize)>,
    produced: Produced,
    results: BTreeMap<usize, Finished>,
    stopped: bool,
    mismatch: Option<(String, String)>,
}

impl State {
    /// Records a finished stage and makes its dependents ready (or stops the run).
    fn finish(&mut self, done: Finished) {
        let ok = matches!(done.outcome.status, StageStatus::Ran | StageStatus::Cached);
        self.observer.finished(&done.outcome);
        if let Some(out) = &done.mismatch
            && self.mismatch.is_none()
        {
            self.mismatch = Some((done.outcome.name.clone(), out.clone()));
        }
        if ok {
            let name = &self.plan.stage(done.index).name;
            for (o, a) in &done.outputs {
                self.produced.insert((name.clone(), o.clone()), *a);
            }
            for d in self.plan.downstream(done.index) {
                if self.in_run.contains(&d) {
                    self.waiting[d] -= 1;
                    if self.waiting[d] == 0 {
                        self.ready.insert((self.position[&d], d));
                    }
                }
            }
        } else if !self.keep_going || done.outcome.status == StageStatus::Cancelled {
            self.stopped = true;
        }
        self.results.insert(done.index, done);
    }
}

/// A stage that must run, waiting for its resources.
struct Pending {
    key: String,
    inputs: BTreeMap<String, Artifact>,
    reasons: Vec<Reason>,
    started: Instant,
    /// When it started waiting for resources.
    queued: Instant,
}

/// A stage that can never be placed on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    pub stage: String,
    pub reason: String,
}

/// Every selected stage whose resources this machine can never provide.
pub fn check_placement(plan: &Plan, options: &RunOptions) -> Vec<Unplaceable> {
    let pool = Pool::new(options.jobs, &options.inventory);
    options
        .selected(plan)
        .into_iter()
        .filter_map(|i| {
            let stage = plan.stage(i);
            pool.feasible(&stage.needs, &options.inventory)
                .err()
                .map(|reason| Unplaceable {
                    stage: stage.name.clone(),
                    reason,
                })
        })
        .collect()
}

/// Runs the plan.
pub async fn run(
    plan: Arc<Plan>,
    store: Arc<Store>,
    previous: Option<Lockfile>,
    options: RunOptions,
    observer: Arc<dyn Observer>,
    cancel: watch::Receiver<bool>,
) -> RunReport {
    let n = plan.stages().len();
    let selected = options.selected(&plan);
    let in_run: BTreeSet<usize> = selected.iter().copied().collect();
    let position: BTreeMap<usize, usize> =
        selected.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let waiting: Vec<usize> = (0..n)
        .map(|i| {
            plan.upstream(i)
                .into_iter()
                .filter(|u| in_run.contains(u))
                .count()
        })
        .collect();
    let ready: BTreeSet<(usize, usize)> = selected
        .iter()
        .filter(|&&i| waiting[i] == 0)
        .map(|&i| (position[&i], i))
        .collect();
    let jobs = options.jobs.max(1);
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        store,
        previous,
        options,
        observer,
    });
    let mut state = State {
        plan: plan.clone(),
        keep_going: ctx.options.keep_going,
        observer: ctx.observer.clone(),
        in_run,
        position,
        waiting,
        ready,
        produced: BTreeMap::new(),
        results: BTreeMap::new(),
        stopped: false,
        mismatch: None,
    };
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut cancelled = false;
    let mut cancel_watch = cancel.clone();
    let mut pool = Pool::new(jobs, &ctx.options.inventory);
    let mut pending: BTreeMap<(usize, usize), Pending> = BTreeMap::new();

    loop {
        while !state.stopped && !*cancel.borrow() {
            let Some((p, i)) = state.ready.pop_first() else {
                break;
            };
            // Hashing inputs and consulting the cache is quick when the stat cache answers, so it
            // happens right here: a fully cached run never leaves this loop (no thread hops).
            let started = Instant::now();
            tracing::trace!(stage = %plan.stage(i).name, "ready");
            match prepare(&ctx, i, &state.produced, started) {
                Prepared::Done(done) => state.finish(*done),
                Prepared::Run {
                    key,
                    inputs,
                    reasons,
                } => {
                    if let Err(reason) = pool.feasible(&plan.stage(i).needs, &ctx.options.inventory)
                    {
                        let name = &plan.stage(i).name;
                        state.finish(failed(
                            i,
                            name,
                            Some(key),
                            format!("stage `{name}` can never run here: {reason}"),
                            started,
                        ));
                        continue;
                    }
                    pending.insert(
                        (p, i),
                        Pending {
                            key,
                            inputs,
                            reasons,
                            started,
                            queued: Instant::now(),
                        },
                    );
                }
            }
        }
        // Start what fits, in plan order; a stage that does not fit yet lets smaller ones pass.
        if !state.stopped && !*cancel.borrow() {
            let waiting: Vec<(usize, usize)> = pending.keys().copied().collect();
            for slot in waiting {
                let i = slot.1;
                let Some(grant) = pool.try_take(&plan.stage(i).needs) else {
                    continue;
                };
                if let Some(mut p) = pending.remove(&slot) {
                    // A stage's duration leaves out the time it waited for resources.
                    p.started += p.queued.elapsed();
                    tracing::trace!(stage = %plan.stage(i).name, "starting");
                    running.spawn(execute(ctx.clone(), i, p, grant, cancel.clone()));
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                match joined {
                    Some(Ok(done)) => {
                        tracing::trace!(stage = %done.outcome.name, "joined");
                        if let Some(g) = &done.grant {
                            pool.give_back(g);
                        }
                        state.finish(done);
                    }
                    Some(Err(e)) => {
                        // A panicking stage task must not take the run down with it; its
                        // resources stay reserved, so stop starting new stages.
                        state.stopped = true;
                        tracing::error!("stage task failed: {e}");
                    }
                    None => break,
                }
            }
            _ = cancel_watch.wait_for(|c| *c), if !cancelled => {
                cancelled = true;
                state.stopped = true;
            }
        }
    }
    let State {
        results, mismatch, ..
    } = state;
    if *cancel.borrow() {
        cancelled = true;
    }

    // Stages that never started.
    let mut stages = Vec::new();
    for &i in &selected {
        if let Some(done) = results.get(&i) {
            stages.push(done.outcome.clone());
            continue;
        }
        let mut o = StageOutcome::new(&plan.stage(i).name, StageStatus::Skipped);
        let failed_up: Vec<String> = plan
            .upstream(i)
            .into_iter()
            .filter(|u| {
                results.get(u).is_none_or(|r| {
                    !matches!(r.outcome.status, StageStatus::Ran | StageStatus::Cached)
                })
            })
            .map(|u| plan.stage(u).name.clone())
            .collect();
        o.reasons = if cancelled {
            vec!["the run was interrupted".to_owned()]
        } else if let Some(u) = failed_up.first() {
            vec![format!("upstream stage `{u}` did not complete")]
        } else {
            vec!["the run stopped after a failure".to_owned()]
        };
        ctx.observer.finished(&o);
        stages.push(o);
    }

    let lockfile = next_lockfile(&plan, ctx.previous.as_ref(), &results);
    RunReport {
        stages,
        lockfile,
        cancelled,
        mismatch,
    }
}

/// The lockfile after a run: entries of completed stages replaced, stages no longer in the
/// workflow dropped, everything else as it was.
fn next_lockfile(
    plan: &Plan,
    previous: Option<&Lockfile>,
    results: &BTreeMap<usize, Finished>,
) -> Lockfile {
    let wf = &plan.workflow;
    let mut stages = BTreeMap::new();
    for (i, stage) in wf.stages.iter().enumerate() {
        let fresh = results.get(&i).and_then(|r| r.locked.clone());
        let old = previous.and_then(|p| p.stages.get(&stage.name).cloned());
        if let Some(entry) = fresh.or(old) {
            stages.insert(stage.name.clone(), entry);
        }
    }
    Lockfile {
        schema: sluice_lock::SCHEMA,
        engine: format!("sluice {}", env!("CARGO_PKG_VERSION")),
        workflow: wf.name.clone(),
        workflow_digest: blake3::hash(wf.canonical.as_bytes()).to_hex().to_string(),
        params: wf.params.clone(),
        stages,
    }
}

/// What the blocking preparation of a stage decided.
enum Prepared {
    Done(Box<Finished>),
    Run {
        key: String,
        inputs: BTreeMap<String, Artifact>,
        reasons: Vec<Reason>,
    },
}

fn finish(done: Finished) -> Prepared {
    Prepared::Done(Box::new(done))
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn failed(
    index: usize,
    name: &str,
    key: Option<String>,
    error: String,
    started: Instant,
) -> Finished {
    let mut outcome = StageOutcome::new(name, StageStatus::Failed);
    outcome.key = key;
    outcome.error = Some(error);
    outcome.duration_ms = millis(started);
    Finished {
        index,
        grant: None,
        outcome,
        locked: None,
        outputs: BTreeMap::new(),
        mismatch: None,
    }
}

/// Hashes inputs, computes the key, and answers from the cache when it can.
fn prepare(ctx: &Ctx, i: usize, produced: &Produced, started: Instant) -> Prepared {
    let stage = ctx.plan.stage(i);
    let store = &ctx.store;
    let inputs = match hash_inputs(store, &ctx.options.catalog, stage, produced) {
        Ok(inputs) => inputs,
        Err(InputError::Missing { name, path }) => {
            return finish(failed(
                i,
                &stage.name,
                None,
                format!("stage `{}`: input `{name}` not found: {path}", stage.name),
                started,
            ));
        }
        Err(InputError::Upstream { stage: up }) => {
            return finish(failed(
                i,
                &stage.name,
                None,
                format!(
                    "stage `{}`: upstream stage `{up}` has no result",
                    stage.name
                ),
                started,
            ));
        }
        Err(InputError::Store(e)) => {
            return finish(failed(
                i,
                &stage.name,
                None,
                format!("stage `{}`: {e}", stage.name),
                started,
            ));
        }
        Err(InputError::Reads(e)) => {
            return finish(failed(
                i,
                &stage.name,
                None,
                format!("stage `{}`: {e}", stage.name),
                started,
            ));
        }
    };
    let (key, material) = key_of(&ctx.options.catalog, stage, &inputs);
    tracing::debug!(stage = %stage.name, key = %key, material = %material, "stage key");
    let digest: Digest = match key.parse() {
        Ok(d) => d,
        Err(_) => unreachable!("a blake3 hex key always parses"),
    };
    let previous = ctx
        .previous
        .as_ref()
        .and_then(|p| p.stages.get(&stage.name));
    if ctx.options.force {
        return Prepared::Run {
            key,
            inputs,
            reasons: vec![Reason::Forced],
        };
    }
    let check = match check_cache(store, stage, &digest, previous, true) {
        Ok(c) => c,
        Err(e) => {
            return finish(failed(
                i,
                &stage.name,
                Some(key),
                format!("stage `{}`: {e}", stage.name),
                started,
            ));
        }
    };
    let cached = |record: StageRecord, reasons: Vec<Reason>| {
        let duration = match previous {
            Some(p) if p.key == key => p.duration_ms,
            _ => record.duration_ms.unwrap_or(0),
        };
        let device = match previous {
            Some(p) if p.key == key && !p.device.is_empty() => p.device.clone(),
            _ => record.device.clone().unwrap_or_else(|| "cpu".to_owned()),
        };
        let locked = locked_stage(
            stage,
            &key,
            &inputs,
            &record.outputs,
            &device,
            duration,
            &record.metrics,
            &record.unstable,
        );
        let mut outcome = StageOutcome::new(&stage.name, StageStatus::Cached);
        outcome.key = Some(key.clone());
        outcome.reasons = reasons.iter().map(ToString::to_string).collect();
        outcome.duration_ms = millis(started);
        outcome.metrics = record.metrics.clone();
        Finished {
            index: i,
            grant: None,
            outcome,
            locked: Some(locked),
            outputs: record.outputs,
            mismatch: None,
        }
    };
    match check {
        CacheCheck::Hit { record, restore } => {
            for reason in &restore {
                if let Reason::OutputMissing { name, path } | Reason::OutputModified { name, path } =
                    reason
                    && let Err(e) = store.materialise(&record.outputs[name], Path::new(path))
                {
                    if let StoreError::Corrupt { digest: object, .. } = &e {
                        return corrupt(ctx, &stage.name, object, &digest, key, inputs);
                    }
                    return finish(failed(
                        i,
                        &stage.name,
                        Some(key),
                        format!(
                            "stage `{}`: cannot restore output `{name}`: {e}",
                            stage.name
                        ),
                        started,
                    ));
                }
            }
            finish(cached(record, restore))
        }
        CacheCheck::Adoptable { outputs } => {
            for (name, path) in &stage.outputs {
                if let Err(e) = store.put_path(Path::new(path)) {
                    return finish(failed(
                        i,
                        &stage.name,
                        Some(key),
                        format!("stage `{}`: cannot store output `{name}`: {e}", stage.name),
                        started,
                    ));
                }
            }
            let record = StageRecord {
                outputs,
                duration_ms: previous.map(|p| p.duration_ms),
                device: previous.map(|p| p.device.clone()).filter(|d| !d.is_empty()),
                metrics: previous.map(|p| p.metrics.clone()).unwrap_or_default(),
                unstable: previous.map(|p| p.unstable.clone()).unwrap_or_default(),
            };
            if let Err(e) = store.put_record(&digest, &record) {
                return finish(failed(
                    i,
                    &stage.name,
                    Some(key),
                    format!("stage `{}`: {e}", stage.name),
                    started,
                ));
            }
            finish(cached(record, Vec::new()))
        }
        CacheCheck::Corrupt { object } => corrupt(ctx, &stage.name, &object, &digest, key, inputs),
        CacheCheck::Miss => {
            let reasons = diff(stage, &input_view(stage, &inputs), previous);
            Prepared::Run {
                key,
                inputs,
                reasons,
            }
        }
    }
}

fn digest_or(key: &str) -> Digest {
    key.parse().unwrap_or(Digest::of_bytes(key.as_bytes()))
}

/// A cached object failed its check: drop it and the record, and run the stage again.
fn corrupt(
    ctx: &Ctx,
    stage: &str,
    object: &Digest,
    key: &Digest,
    key_hex: String,
    inputs: BTreeMap<String, Artifact>,
) -> Prepared {
    ctx.observer.warn(&format!(
        "stage `{stage}`: cached object {} is corrupt or missing; removing it and running the stage again",
        object.short()
    ));
    let _ = ctx.store.remove_object(object);
    let _ = ctx.store.remove_record(key);
    Prepared::Run {
        key: key_hex,
        inputs,
        reasons: vec![Reason::CacheCorrupt {
            object: object.short(),
        }],
    }
}

/// Runs a stage's command (again, up to `retries` times, while it fails) and stores its outputs.
async fn execute(
    ctx: Arc<Ctx>,
    i: usize,
    pending: Pending,
    grant: Grant,
    cancel: watch::Receiver<bool>,
) -> Finished {
    let Pending {
        key,
        inputs,
        reasons,
        started,
        ..
    } = pending;
    let stage = ctx.plan.stage(i);
    let name = stage.name.clone();
    tracing::trace!(stage = %name, "executing");
    let device = grant.device();
    let with_grant = |mut done: Finished| {
        done.grant = Some(grant.clone());
        done
    };
    let workspace = ctx.store.workspace().to_path_buf();
    let mut env = stage.env.clone();
    env.insert("SLUICE_STAGE".into(), name.clone());
    env.insert("SLUICE_DEVICE".into(), device.clone());
    if let Some(visible) = grant.cuda_visible_devices() {
        env.insert("CUDA_VISIBLE_DEVICES".into(), visible);
    }
    let log_path = ctx.store.dir().join("logs").join(format!("{name}.log"));
    let attempts = stage.retries.saturating_add(1);
    let mut attempt = 1;
    let (ran, report) = loop {
        if let Err(e) = prepare_outputs(&workspace, &stage.outputs) {
            return with_grant(failed(
                i,
                &name,
                Some(key),
                format!("stage `{name}`: {e}"),
                started,
            ));
        }
        ctx.observer.started(&name, &device);
        let run_started = Instant::now();
        let result = if stage.uses.is_some() {
            run_builtin(&ctx, i, &key, &grant, cancel.clone()).await
        } else {
            run_command(
                &workspace,
                &log_path,
                &name,
                &stage.command,
                &env,
                ctx.observer.clone(),
                ctx.options.stream_output,
                stage.timeout,
                cancel.clone(),
            )
            .await
            .map(|()| StageReport::default())
        };
        let ran = run_started.elapsed();
        let f = match result {
            Ok(report) => break (ran, report),
            Err(f) => f,
        };
        if !f.cancelled && attempt < attempts {
            ctx.observer.warn(&format!(
                "stage `{name}`: {} (attempt {attempt} of {attempts}); retrying",
                f.error
            ));
            attempt += 1;
            continue;
        }
        let mut done = failed(
            i,
            &name,
            Some(key),
            format!("stage `{name}`: {}", f.error),
            started,
        );
        done.outcome.stderr_tail = f.tail;
        done.outcome.device = Some(device);
        done.outcome.reasons = reasons.iter().map(ToString::to_string).collect();
        if f.cancelled {
            done.outcome.status = StageStatus::Cancelled;
            done.outcome.error = None;
        }
        return with_grant(done);
    };
    let commit_ctx = ctx.clone();
    let commit_device = device.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let pending = Pending {
            key,
            inputs,
            reasons,
            started,
            queued: Instant::now(),
        };
        let done = commit(&commit_ctx, i, pending, &commit_device, ran, report);
        tracing::trace!(stage = %done.outcome.name, "committed");
        done
    })
    .await;
    with_grant(match committed {
        Ok(done) => done,
        Err(e) => failed(i, &name, None, format!("stage `{name}`: {e}"), started),
    })
}

/// Runs a builtin stage kind on a blocking thread; cancellation and timeouts raise the flag the
/// stage checks, and the stage is waited for (it returns `Cancelled` at its next check).
async fn run_builtin(
    ctx: &Arc<Ctx>,
    i: usize,
    key: &str,
    grant: &Grant,
    mut cancel: watch::Receiver<bool>,
) -> Result<StageReport, CommandFailure> {
    let fail = |error: String, cancelled: bool| CommandFailure {
        error,
        tail: Vec::new(),
        cancelled,
    };
    let stage = ctx.plan.stage(i);
    let timeout = stage.timeout;
    let flag = Arc::new(AtomicBool::new(false));
    let work_dir = ctx.store.dir().join("work").join(&stage.name);
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", work_dir.display()), false))?;
    let device = if grant.gpus.is_empty() {
        Device::Cpu
    } else {
        Device::Cuda(grant.gpus.clone())
    };
    let task_ctx = ctx.clone();
    let task_flag = flag.clone();
    let task_key = key.to_owned();
    let mut task = tokio::task::spawn_blocking(move || {
        let stage = task_ctx.plan.stage(i);
        let kind_name = stage.uses.as_deref().unwrap_or_default();
        let Some(kind) = task_ctx.options.catalog.get(kind_name) else {
            return Err(StageError::failed(format!(
                "this sluice has no stage kind `{kind_name}`"
            )));
        };
        let workspace = task_ctx.store.workspace();
        let outputs: BTreeMap<String, PathBuf> = stage
            .outputs
            .iter()
            .map(|(k, p)| (k.clone(), workspace.join(p)))
            .collect();
        let observer = task_ctx.observer.clone();
        let progress = |m: &str| observer.progress(&stage.name, m);
        let context = StageContext {
            stage: &stage.name,
            key: &task_key,
            workspace,
            with: &stage.with,
            outputs: &outputs,
            work_dir: &work_dir,
            device: &device,
            progress: &progress,
            cancelled: &task_flag,
        };
        kind.run(&context)
    });
    let timed_out = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async move {
        let _ = cancel.wait_for(|c| *c).await;
    };
    let joined = tokio::select! {
        joined = &mut task => joined,
        () = cancelled => {
            flag.store(true, Ordering::Relaxed);
            let _ = task.await;
            return Err(fail("cancelled".into(), true));
        }
        () = timed_out => {
            flag.store(true, Ordering::Relaxed);
            let _ = task.await;
            let limit = timeout.map(|t| sluice_plan::Span(t).to_string()).unwrap_or_default();
            return Err(fail(format!("timed out after {limit}"), false));
        }
    };
    match joined {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(StageError::Cancelled)) => Err(fail("cancelled".into(), true)),
        Ok(Err(StageError::Failed(message))) => Err(fail(message, false)),
        Err(e) => Err(fail(format!("the stage crashed: {e}"), false)),
    }
}

/// Stores the outputs of a command that succeeded and records the result under its key.
fn commit(
    ctx: &Ctx,
    i: usize,
    pending: Pending,
    device: &str,
    ran: Duration,
    report: StageReport,
) -> Finished {
    let duration_ms = u64::try_from(ran.as_millis()).unwrap_or(u64::MAX);
    let StageReport { metrics, unstable } = report;
    let Pending {
        key,
        inputs,
        reasons,
        started,
        ..
    } = pending;
    let (key, inputs) = (key.as_str(), &inputs);
    let stage = ctx.plan.stage(i);
    let name = &stage.name;
    let mut outputs = BTreeMap::new();
    for (out, path) in &stage.outputs {
        // A builtin stage's outputs are sluice's own files: they become objects by a hard link
        // (read-only from then on) rather than a copy. A command's outputs are copied, so that
        // what it wrote stays the user's to change.
        let stored = if stage.uses.is_some() {
            ctx.store.put_path_linked(Path::new(path))
        } else {
            ctx.store.put_path(Path::new(path))
        };
        match stored {
            Ok(a) => {
                outputs.insert(out.clone(), a);
            }
            Err(StoreError::NotFound { .. }) => {
                return failed(
                    i,
                    name,
                    Some(key.to_owned()),
                    format!("stage `{name}` did not write its output `{out}` ({path})"),
                    started,
                );
            }
            Err(e) => {
                return failed(
                    i,
                    name,
                    Some(key.to_owned()),
                    format!("stage `{name}`: cannot store output `{out}`: {e}"),
                    started,
                );
            }
        }
    }
    if let Some(expected) = ctx.options.expect.as_ref().and_then(|l| l.stages.get(name)) {
        let unstable_here = |n: &String| unstable.contains(n) || expected.unstable.contains(n);
        for (out, a) in &outputs {
            if unstable_here(out) {
                continue;
            }
            let want = expected.outputs.get(out).map(|l| l.digest.as_str());
            if want != Some(a.digest.hex().as_str()) {
                let mut done = failed(
                    i,
                    name,
                    Some(key.to_owned()),
                    format!(
                        "stage `{name}`: output `{out}` differs from the lockfile (expected {}, got {})",
                        want.map_or("nothing", |w| &w[..w.len().min(12)]),
                        a.digest.short()
                    ),
                    started,
                );
                done.mismatch = Some(format!("output `{out}`"));
                return done;
            }
        }
        // A stage with unstable outputs is checked through its stable metrics instead.
        let tolerance = ctx.options.tolerance;
        let approximate = outputs.keys().any(&unstable_here);
        for (metric, want) in &expected.metrics {
            let Some(got) = metrics.get(metric) else {
                continue;
            };
            if unstable_here(metric) {
                continue;
            }
            let scale = want.abs().max(got.abs()).max(f64::MIN_POSITIVE);
            let allowed = if approximate { tolerance * scale } else { 0.0 };
            if (got - want).abs() > allowed && !(got.is_nan() && want.is_nan()) {
                let mut done = failed(
                    i,
                    name,
                    Some(key.to_owned()),
                    format!(
                        "stage `{name}`: metric `{metric}` is {got} where the lockfile has {want}{}",
                        if approximate {
                            format!(" (beyond the tolerance of {}%)", tolerance * 100.0)
                        } else {
                            String::new()
                        }
                    ),
                    started,
                );
                done.mismatch = Some(format!("metric `{metric}`"));
                return done;
            }
        }
    }
    tracing::trace!(stage = %name, "stored");
    let record = StageRecord {
        outputs: outputs.clone(),
        duration_ms: Some(duration_ms),
        device: Some(device.to_owned()),
        metrics: metrics.clone(),
        unstable: unstable.clone(),
    };
    let digest: Digest = digest_or(key);
    if let Err(e) = ctx.store.put_record(&digest, &record) {
        return failed(
            i,
            name,
            Some(key.to_owned()),
            format!("stage `{name}`: {e}"),
            started,
        );
    }
    let mut outcome = StageOutcome::new(name, StageStatus::Ran);
    outcome.key = Some(key.to_owned());
    outcome.duration_ms = millis(started);
    outcome.run_ms = Some((ran.as_secs_f64() * 1e6).round() / 1e3);
    outcome.device = Some(device.to_owned());
    outcome.reasons = reasons.iter().map(ToString::to_string).collect();
    let locked = locked_stage(
        stage,
        key,
        inputs,
        &outputs,
        device,
        duration_ms,
        &metrics,
        &unstable,
    );
    outcome.metrics = metrics;
    Finished {
        index: i,
        grant: None,
        outcome,
        locked: Some(locked),
        outputs,
        mismatch: None,
    }
}
