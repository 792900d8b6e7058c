//! The training loop behind the `train` stage: read the data, let the base's kind prepare a
//! [`Learner`] (a causal LM in [`crate::causal`], an encoder classifier in
//! [`crate::classifier`]: base, method, encoded examples), then AdamW steps with warmup and
//! decay, gradient accumulation and clipping, validation with early stopping, checkpoints to
//! resume from, and the outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use sluice_data::schema::Example;
use sluice_stage::{StageContext, StageError, StageReport};

use crate::checkpoint::{self, Checkpoint, LoopState};
use crate::config::Arch;
use crate::error::{ModelError, Result};
use crate::hf::{self, ModelInfo};
use crate::history::{self, Row};
use crate::hub;
use crate::optim::{self, AdamW, AdamWConfig};
use crate::options::{Base, Method, TrainOptions};
use crate::rng::Rng;
use crate::template::Template;

/// The outputs of `train`.
pub const MODEL: &str = "model";
pub const HISTORY: &str = "history";
pub const CURVE: &str = "curve";

/// Why the model kinds cannot use a GPU in this build, if they cannot.
pub const GPU_UNAVAILABLE: Option<&str> = if cfg!(feature = "cuda") {
    None
} else {
    Some("this sluice was built without the `cuda` feature")
};

/// The device a stage runs on, as candle names it.
pub fn candle_device(device: &sluice_stage::Device) -> Result<Device> {
    match device {
        sluice_stage::Device::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        sluice_stage::Device::Cuda(ids) => {
            let id = ids.first().copied().unwrap_or(0);
            let ordinal = sluice_stage::Device::cuda_ordinal(id).ok_or_else(|| {
                ModelError::Other(format!(
                    "the scheduler gave this stage gpu:{id}, which CUDA_VISIBLE_DEVICES hides from this process"
                ))
            })?;
            Ok(Device::new_cuda(ordinal)?)
        }
        #[cfg(not(feature = "cuda"))]
        sluice_stage::Device::Cuda(_) => Err(ModelError::Other(
            "the scheduler gave this stage a GPU, but this sluice was built without the `cuda` feature; rebuild with `--features cuda` or set `resources: {gpu: 0}`".into(),
        )),
    }
}

fn read_examples(ctx: &StageContext<'_>, rel: &str) -> Result<Vec<Example>> {
    Ok(sluice_data::read_examples(&ctx.path(rel), rel)?)
}

/// What the loop trains: a model of one kind with its training and validation examples
/// encoded. The loop draws examples by `(set, index)`, sums gradients over micro-batches,
/// steps AdamW on [`Learner::trainable`], validates, checkpoints and saves — the same for every
/// kind.
pub trait Learner {
    /// How many examples each training set kept after encoding.
    fn sizes(&self) -> Vec<usize>;
    /// What an example weighs in a step's mean loss: its counted tokens for a language model,
    /// 1 for a classifier.
    fn loss_units(&self, set: usize, index: usize) -> f64;
    /// The summed loss of the examples at `slots`, divided by `denominator` (the units of the
    /// whole optimizer step), with dropout drawn from `rng`; and the real input tokens.
    fn loss(
        &self,
        slots: &[(usize, usize)],
        denominator: f64,
        rng: &mut Rng,
    ) -> Result<(Tensor, usize)>;
    fn has_validation(&self) -> bool;
    /// The validation metrics, without dropout.
    fn validate(&self, batch_size: usize) -> Result<Validation>;
    /// Every trainable tensor, named.
    fn trainable(&self) -> Vec<(String, Var)>;
    /// (trainable, total) parameter counts.
    fn parameter_counts(&self) -> (usize, usize);
    /// Writes the model as a Hugging Face directory.
    fn save(&self, dir: &Path, info: &ModelInfo, merge: bool) -> Result<()>;
}

/// The validation metrics of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    /// Mean loss per counted token (language model) or per example (classifier).
    pub loss: f64,
    /// The share of examples classified right (classifiers).
    pub accuracy: Option<f64>,
}

/// A learner ready to train, and what the stage records about how it was made.
pub struct Prepared {
    pub learner: Box<dyn Learner>,
    pub base_name: String,
    pub template: Template,
    /// Examples cut to the length limit, and left out.
    pub truncated: usize,
    pub dropped: usize,
}

/// Where a base model directory is, and its name for records; `None` for an `init` base.
pub fn base_dir(ctx: &StageContext<'_>, opts: &TrainOptions) -> Result<Option<(PathBuf, String)>> {
    Ok(match &opts.base {
        Base::Path(p) => Some((ctx.path(p), p.clone())),
        Base::Spec(s) => match (&s.path, &s.hub, &s.init) {
            (Some(p), _, _) => Some((ctx.path(p), p.clone())),
            (_, Some(h), _) => Some((hub::resolve(h, s.revision.as_deref())?, h.clone())),
            (_, _, Some(_)) => None,
            _ => return Err(ModelError::Config("`base` names no model".into())),
        },
    })
}

/// The architecture of the base: `init`'s `arch`, or the directory's `model_type`.
fn base_arch(ctx: &StageContext<'_>, opts: &TrainOptions) -> Result<Arch> {
    match (&opts.base, base_dir(ctx, opts)?) {
        (_, Some((dir, _))) => hf::arch(&dir),
        (Base::Spec(s), None) => {
            let init = s
                .init
                .as_ref()
                .expect("a base without a directory is `init`");
            Arch::from_init(&init.arch)
                .ok_or_else(|| ModelError::Config(format!("unknown architecture `{}`", init.arch)))
        }
        (Base::Path(_), None) => unreachable!("a path base has a directory"),
    }
}

/// Which examples each optimizer step trains on: `(dataset, index)` per slot, micro-batch by
/// micro-batch. Each dataset is an endless stream of seeded shuffles of itself; each slot picks
/// a dataset by weight.
pub(crate) fn schedule(
    sizes: &[usize],
    weights: &[f64],
    steps: usize,
    per_step: usize,
    seed: u64,
) -> Vec<Vec<(usize, usize)>> {
    let total: f64 = weights.iter().sum();
    let mut cursors: Vec<(usize, usize, Vec<usize>)> =
        sizes.iter().map(|_| (0, 0, Vec::new())).collect();
    let mut pick = Rng::derive(seed, "mix", 0);
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut slots = Vec::with_capacity(per_step);
        for _ in 0..per_step {
            let d = if sizes.len() == 1 {
                0
            } else {
                let mut r = pick.uniform() * total;
                let mut d = 0;
                while d + 1 < weights.len() && r >= weights[d] {
                    r -= weights[d];
                    d += 1;
                }
                d
            };
            let (cycle, pos, order) = &mut cursors[d];
            if *pos == order.len() {
                *order = (0..sizes[d]).collect();
                Rng::derive(seed, &format!("data/{d}"), *cycle as u64).shuffle(order);
                *cycle += 1;
                *pos = 0;
            }
            slots.push((d, order[*pos]));
            *pos += 1;
        }
        out.push(slots);
    }
    out
}

fn snapshot(vars: &[(String, Var)]) -> Result<BTreeMap<String, Tensor>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(vars: &[(String, Var)], values: &BTreeMap<String, Tensor>) -> Result<()> {
    for (n, v) in vars {
        let t = values
            .get(n)
            .ok_or_else(|| ModelError::Other(format!("checkpoint lacks `{n}`")))?;
        v.set(t)?;
    }
    Ok(())
}

fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Runs the stage.
pub fn run(ctx: &StageContext<'_>, opts: &TrainOptions) -> Result<StageReport, StageError> {
    train(ctx, opts).map_err(StageError::from)
}

fn train(ctx: &StageContext<'_>, opts: &TrainOptions) -> Result<StageReport> {
    let device = candle_device(ctx.device)?;
    let mut sets: Vec<(String, Vec<Example>)> = Vec::new();
    for (path, _) in opts.data.sources() {
        let rows = read_examples(ctx, &path)?;
        if rows.is_empty() {
            return Err(ModelError::Other(format!(
                "training data {path} has no rows"
            )));
        }
        sets.push((path, rows));
    }
    let mut validation: Vec<(String, Vec<Example>)> = Vec::new();
    if let Some(v) = &opts.validation {
        for p in v.paths() {
            validation.push((p.to_owned(), read_examples(ctx, p)?));
        }
    }
    let Prepared {
        learner,
        base_name,
        template,
        truncated,
        dropped,
    } = match base_arch(ctx, opts)? {
        Arch::Llama => {
            let rows: Vec<Example> = validation.into_iter().flat_map(|(_, r)| r).collect();
            crate::causal::prepare(ctx, opts, &sets, &rows, &device)?
        }
        Arch::Bert => crate::classifier::prepare(ctx, opts, &sets, &validation, &device)?,
    };
    let (trainable_params, total_params) = learner.parameter_counts();
    (ctx.progress)(&format!(
        "{} parameters, {} trainable ({:.2}%)",
        total_params,
        trainable_params,
        100.0 * trainable_params as f64 / total_params.max(1) as f64
    ));

    // The plan of steps.
    let per_step = opts.batch_size * opts.grad_accum;
    let sizes = learner.sizes();
    let examples: usize = sizes.iter().sum();
    let steps = match opts.max_steps {
        Some(s) => s,
        None => ((opts.epochs.unwrap_or(1.0) * examples as f64) / per_step as f64)
            .ceil()
            .max(1.0) as usize,
    };
    let weights: Vec<f64> = opts.data.sources().iter().map(|(_, w)| *w).collect();
    let plan = schedule(&sizes, &weights, steps, per_step, opts.seed);
    let lr_peak = opts.lr.unwrap_or_else(|| opts.method.default_lr());

    let vars = learner.trainable();
    let mut optimizer = AdamW::new(AdamWConfig {
        weight_decay: opts.weight_decay,
        ..AdamWConfig::default()
    });
    let mut state = LoopState {
        key: ctx.key.to_owned(),
        ..LoopState::default()
    };
    let mut best: Option<BTreeMap<String, Tensor>> = None;
    let mut resumed_at = None;
    if let Some(cp) = checkpoint::load(ctx.work_dir, ctx.key, &device)? {
        resumed_at = Some(cp.state.step);
        restore(&vars, &cp.weights)?;
        optimizer.m = cp.m;
        optimizer.v = cp.v;
        optimizer.step = cp.state.step;
        best = cp.best;
        (ctx.progress)(&format!(
            "resuming from the checkpoint at step {}",
            cp.state.step
        ));
        state = cp.state;
    }

    let started = Instant::now();
    let mut stopped_early = false;
    let first = state.step;
    let mut tokens_since_start = 0usize;
    for (step, slots) in plan.iter().enumerate().skip(first) {
        ctx.check_cancelled()?;
        let step_started = Instant::now();
        let denominator: f64 = slots
            .iter()
            .map(|(d, i)| learner.loss_units(*d, *i))
            .sum::<f64>()
            .max(1.0);
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut loss_sum = 0.0;
        let mut tokens = 0;
        let mut dropout = Rng::derive(opts.seed, "dropout", step as u64);
        for micro in slots.chunks(opts.batch_size) {
            let (loss, micro_tokens) = learner.loss(micro, denominator, &mut dropout)?;
            tokens += micro_tokens;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let store = loss.backward()?;
            for (name, var) in &vars {
                if let Some(g) = store.get(var.as_tensor()) {
                    let g = match grads.remove(name) {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    };
                    grads.insert(name.clone(), g);
                }
            }
        }
        let grad_norm = optim::clip_grad_norm(&mut grads, opts.max_grad_norm)?;
        let lr = optim::learning_rate(opts.schedule, lr_peak, opts.warmup_steps, step, steps);
        optimizer.update(&vars, &grads, lr)?;
        if !loss_sum.is_finite() {
            return Err(ModelError::Other(format!(
                "the loss became {loss_sum} at step {}; lower `lr` (now {lr_peak}) or check the data",
                step + 1
            )));
        }
        tokens_since_start += tokens;
        let secs = step_started.elapsed().as_secs_f64().max(1e-9);
        let elapsed = started.elapsed().as_secs_f64();
        let mut row = Row {
            step: step + 1,
            epoch: ((step + 1) * per_step) as f64 / examples as f64,
            loss: loss_sum,
            val_loss: None,
            val_accuracy: None,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / secs,
            elapsed_s: elapsed,
        };
        state.step = step + 1;
        let last = step + 1 == steps;
        let evaluate = learner.has_validation()
            && (last || opts.eval_every.is_some_and(|e| (step + 1) % e == 0));
        if evaluate {
            let Validation { loss: v, accuracy } = learner.validate(opts.batch_size)?;
            row.val_loss = Some(v);
            row.val_accuracy = accuracy;
            if state.best_loss.is_none_or(|b| v < b) {
                state.best_loss = Some(v);
                state.best_accuracy = accuracy;
                state.best_step = Some(step + 1);
                state.stale = 0;
                best = Some(snapshot(&vars)?);
            } else {
                state.stale += 1;
            }
        }
        let rate = tokens_since_start as f64 / elapsed.max(1e-9);
        let remaining = (steps - step - 1) as f64 * elapsed / (step + 1 - first) as f64;
        (ctx.progress)(&format!(
            "step {}/{steps} · loss {:.4}{}{} · {:.0} tok/s · eta {}",
            step + 1,
            row.loss,
            row.val_loss
                .map(|v| format!(" · val {v:.4}"))
                .unwrap_or_default(),
            row.val_accuracy
                .map(|a| format!(" · acc {a:.3}"))
                .unwrap_or_default(),
            rate,
            fmt_duration(remaining)
        ));
        state.history.push(row);
        if opts
            .early_stopping
            .as_ref()
            .is_some_and(|e| evaluate && state.stale >= e.patience)
        {
            stopped_early = true;
            break;
        }
        if opts.save_every.is_some_and(|e| (step + 1) % e == 0) && !last {
            checkpoint::save(
                ctx.work_dir,
                &Checkpoint {
                    state: state.clone(),
                    weights: snapshot(&vars)?,
                    m: optimizer.m.clone(),
                    v: optimizer.v.clone(),
                    best: best.clone(),
                },
            )?;
        }
    }
    if let Some(best) = &best {
        restore(&vars, best)?;
    }

    // Outputs.
    let info = ModelInfo {
        method: opts.method.name().into(),
        merged: false,
        base: base_name,
        template,
        trainable_parameters: trainable_params,
        total_parameters: total_params,
        seed: opts.seed,
        deterministic: matches!(device, Device::Cpu),
    };
    let model_dir = ctx.output(MODEL)?;
    std::fs::create_dir_all(model_dir).map_err(|e| ModelError::file(model_dir, e))?;
    let merge = opts.method == Method::Lora && opts.lora.as_ref().is_some_and(|l| l.merge);
    learner.save(model_dir, &info, merge)?;
    write(ctx.output(HISTORY)?, &history::jsonl(&state.history))?;
    write(ctx.output(CURVE)?, &history::svg(&state.history))?;
    checkpoint::clear(ctx.work_dir);

    let mut metrics = BTreeMap::new();
    let rows = &state.history;
    if let Some(r) = rows.last() {
        metrics.insert("train_loss".into(), r.loss);
        metrics.insert("steps".into(), r.step as f64);
        metrics.insert("epochs".into(), r.epoch);
    }
    if let Some(first) = rows.first() {
        metrics.insert("initial_loss".into(), first.loss);
    }
    if let Some(v) = state.best_loss {
        metrics.insert("val_loss".into(), v);
        match state.best_accuracy {
            Some(a) => {
                metrics.insert("val_accuracy".into(), a);
            }
            None => {
                metrics.insert("val_perplexity".into(), v.exp());
            }
        }
    }
    let mut rates: Vec<f64> = rows.iter().skip(1).map(|r| r.tokens_per_s).collect();
    if rates.is_empty() {
        rates = rows.iter().map(|r| r.tokens_per_s).collect();
    }
    if !rates.is_empty() {
        rates.sort_by(f64::total_cmp);
        metrics.insert("tokens_per_s".into(), rates[rates.len() / 2]);
    }
    metrics.insert("trainable_params".into(), trainable_params as f64);
    metrics.insert("total_params".into(), total_params as f64);
    metrics.insert("truncated".into(), truncated as f64);
    metrics.insert("dropped".into(), dropped as f64);
    if stopped_early {
        metrics.insert("stopped_early".into(), 1.0);
    }
    if let Some(step) = resumed_at {
        metrics.insert("resumed_at_step".into(), step as f64);
    }
    // Timings differ from run to run (and whether a run resumed); on a GPU the weights do too.
    let mut unstable = vec![
        HISTORY.to_owned(),
        "tokens_per_s".to_owned(),
        "resumed_at_step".to_owned(),
    ];
    if !matches!(device, Device::Cpu) {
        unstable.extend([MODEL.to_owned(), CURVE.to_owned()]);
    }
    Ok(StageReport { metrics, unstable })
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| ModelError::file(path, e))
}
