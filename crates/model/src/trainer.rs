//! The training loop behind the `train` stage: load the base, set up the method, encode the
//! data, then AdamW steps with warmup and decay, gradient accumulation and clipping, validation
//! with early stopping, checkpoints to resume from, and the outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use sluice_data::schema::Example;
use sluice_stage::{StageContext, StageError, StageReport};

use crate::batch::{self, Encoder, Sequence};
use crate::checkpoint::{self, Checkpoint, LoopState};
use crate::config::{EosTokens, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::hf::{self, ModelInfo};
use crate::history::{self, Row};
use crate::llama::Llama;
use crate::lora::{Lora, LoraConfig};
use crate::optim::{self, AdamW, AdamWConfig};
use crate::options::{Base, InitOptions, LossOn, Method, TrainOptions};
use crate::rng::Rng;
use crate::template::Template;
use crate::tokenizer::{self, Tokenizer};
use crate::{hub, prompt};

/// The outputs of `train`.
pub const MODEL: &str = "model";
pub const HISTORY: &str = "history";
pub const CURVE: &str = "curve";

/// The device a stage runs on, as candle names it.
pub fn candle_device(device: &sluice_stage::Device) -> Result<Device> {
    match device {
        sluice_stage::Device::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        sluice_stage::Device::Cuda(ids) => Ok(Device::new_cuda(ids.first().copied().unwrap_or(0) as usize)?),
        #[cfg(not(feature = "cuda"))]
        sluice_stage::Device::Cuda(_) => Err(ModelError::Other(
            "the scheduler gave this stage a GPU, but this sluice was built without the `cuda` feature; rebuild with `--features cuda` or set `resources: {gpu: 0}`".into(),
        )),
    }
}

/// The base model and tokenizer, and how to name the base in records.
struct Start {
    model: Llama,
    tokenizer: Tokenizer,
    base_name: String,
    template: Option<Template>,
}

fn read_examples(ctx: &StageContext<'_>, rel: &str) -> Result<Vec<Example>> {
    Ok(sluice_data::read_examples(&ctx.path(rel), rel)?)
}

fn load_base(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    train_text: &[&Example],
    device: &Device,
) -> Result<Start> {
    let (dir, name): (PathBuf, String) = match &opts.base {
        Base::Path(p) => (ctx.path(p), p.clone()),
        Base::Spec(s) => match (&s.path, &s.hub, &s.init) {
            (Some(p), _, _) => (ctx.path(p), p.clone()),
            (_, Some(h), _) => (hub::resolve(h, s.revision.as_deref())?, h.clone()),
            (_, _, Some(init)) => return init_base(ctx, opts, init, train_text, device),
            _ => return Err(ModelError::Config("`base` names no model".into())),
        },
    };
    let loaded = hf::load_dir(&dir, device)?;
    let mut model = loaded.model;
    // A base that was itself fine-tuned with LoRA starts from its merged weights.
    if let Some(lora) = model.lora.take() {
        lora.merge_into(&mut model.weights)?;
    }
    Ok(Start {
        model,
        tokenizer: loaded.tokenizer,
        base_name: name,
        template: loaded.info.map(|i| i.template),
    })
}

/// A fresh llama and its tokenizer (trained here on the training text unless one is given).
fn init_base(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    init: &InitOptions,
    train_text: &[&Example],
    device: &Device,
) -> Result<Start> {
    let tokenizer = match &init.tokenizer {
        Some(p) => tokenizer::load(&ctx.path(p))?,
        None => {
            (ctx.progress)("training the tokenizer");
            let template = opts
                .template
                .as_deref()
                .map(Template::new)
                .unwrap_or_default();
            let texts: Vec<String> = train_text
                .iter()
                .flat_map(|e| example_texts(e, &template))
                .collect();
            tokenizer::train(texts.iter().map(String::as_str), init.vocab)?
        }
    };
    let token = |s: &str| tokenizer.token_to_id(s);
    let vocab = tokenizer.get_vocab_size(true);
    let intermediate = init
        .intermediate
        .unwrap_or_else(|| (init.hidden * 8 / 3).div_ceil(32) * 32);
    let config = LlamaConfig {
        hidden_size: init.hidden,
        intermediate_size: intermediate,
        num_hidden_layers: init.layers,
        num_attention_heads: init.heads,
        num_key_value_heads: Some(init.kv_heads.unwrap_or(init.heads)),
        vocab_size: vocab,
        max_position_embeddings: init.seq,
        rms_norm_eps: 1e-5,
        rope_theta: init.rope_theta,
        tie_word_embeddings: init.tie_embeddings,
        bos_token_id: token(tokenizer::BOS),
        eos_token_id: token(tokenizer::EOS).map(EosTokens::One),
        pad_token_id: token(tokenizer::PAD),
        head_dim: None,
        hidden_act: Some("silu".into()),
        rope_scaling: None,
    };
    let mut rng = Rng::derive(opts.seed, "init", 0);
    let model = Llama::init(config, &mut rng, device)?;
    Ok(Start {
        model,
        tokenizer,
        base_name: "init".into(),
        template: None,
    })
}

/// The text of an example as the model will see it, for tokenizer training.
fn example_texts(e: &Example, template: &Template) -> Vec<String> {
    match &e.messages {
        Some(m) if !m.is_empty() => m
            .iter()
            .flat_map(|m| [crate::template::chat_open(&m.role), m.content.clone()])
            .collect(),
        _ if e.output.is_empty() => vec![e.input.clone()],
        _ => vec![template.render(&e.input), e.output.clone()],
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

/// Mean loss per counted token over `seqs`.
fn validation_loss(
    model: &Llama,
    seqs: &[Sequence],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Result<f64> {
    let mut sum = 0.0;
    let mut count = 0.0;
    for chunk in seqs.chunks(batch_size) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let b = batch::batch(&refs, pad, device)?;
        let loss = model.loss(&b.inputs, &b.targets, &b.weights, 1.0, None)?;
        sum += loss.to_scalar::<f32>()? as f64;
        count += b.loss_tokens;
    }
    Ok(if count > 0.0 { sum / count } else { f64::NAN })
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
    let sources = opts.data.sources();
    let mut sets: Vec<Vec<Example>> = Vec::new();
    for (path, _) in &sources {
        let rows = read_examples(ctx, path)?;
        if rows.is_empty() {
            return Err(ModelError::Other(format!(
                "training data {path} has no rows"
            )));
        }
        sets.push(rows);
    }
    let mut validation: Vec<Example> = Vec::new();
    if let Some(v) = &opts.validation {
        for p in v.paths() {
            validation.extend(read_examples(ctx, p)?);
        }
    }
    let all_train: Vec<&Example> = sets.iter().flatten().collect();
    let start = load_base(ctx, opts, &all_train, &device)?;
    let Start {
        mut model,
        tokenizer,
        base_name,
        template: base_template,
    } = start;

    // The method decides what trains.
    let mut rng = Rng::derive(opts.seed, "adapter", 0);
    match opts.method {
        Method::Full => model.weights.set_trainable(true)?,
        Method::Lora => {
            let l = opts.lora.clone().unwrap_or_default();
            let config = LoraConfig {
                rank: l.rank,
                alpha: l.alpha,
                dropout: l.dropout,
                targets: l.targets,
            };
            model.lora = Some(Lora::new(
                config,
                &model.config,
                &model.weights,
                &mut rng,
                &device,
            )?);
        }
        Method::Prompt => {
            let n = opts.prompt.clone().unwrap_or_default().virtual_tokens;
            model.prompt = Some(prompt::init(n, &model.weights, &mut rng, &device)?);
        }
    }
    let (trainable_params, total_params) = model.parameter_counts();
    (ctx.progress)(&format!(
        "{} parameters, {} trainable ({:.2}%)",
        total_params,
        trainable_params,
        100.0 * trainable_params as f64 / total_params.max(1) as f64
    ));

    // Encode.
    let template = opts
        .template
        .as_deref()
        .map(Template::new)
        .or(base_template)
        .unwrap_or_default();
    let encoder = Encoder {
        tokenizer: &tokenizer,
        template: &template,
        bos: model.config.bos_token_id,
        eos: model.config.eos(),
        loss_on_all: opts.loss == LossOn::All,
    };
    let seq_len = opts
        .seq_len
        .unwrap_or_else(|| model.config.max_position_embeddings.min(512));
    let prompt_len = model.prompt.as_ref().map_or(0, |p| p.tensor().dims()[0]);
    let limit = seq_len
        .min(
            model
                .config
                .max_position_embeddings
                .saturating_sub(prompt_len),
        )
        .max(1);
    let mut truncated = 0;
    let mut dropped = 0;
    let mut train_sets: Vec<Vec<Sequence>> = Vec::new();
    for (rows, (path, _)) in sets.iter().zip(&sources) {
        let seqs = rows
            .iter()
            .map(|e| encoder.encode(e))
            .collect::<Result<Vec<_>>>()?;
        let (seqs, stats) = batch::fit(seqs, limit, opts.overflow);
        truncated += stats.truncated;
        dropped += stats.dropped + stats.empty;
        if seqs.is_empty() {
            return Err(ModelError::Other(format!(
                "no example of {path} has an output token within the first {limit} tokens; raise `seq_len` (or the base's `seq`), or shorten the template"
            )));
        }
        train_sets.push(seqs);
    }
    let val_seqs = {
        let seqs = validation
            .iter()
            .map(|e| encoder.encode(e))
            .collect::<Result<Vec<_>>>()?;
        batch::fit(seqs, limit, batch::Overflow::Truncate).0
    };

    // The plan of steps.
    let per_step = opts.batch_size * opts.grad_accum;
    let examples: usize = train_sets.iter().map(Vec::len).sum();
    let steps = match opts.max_steps {
        Some(s) => s,
        None => ((opts.epochs.unwrap_or(1.0) * examples as f64) / per_step as f64)
            .ceil()
            .max(1.0) as usize,
    };
    let sizes: Vec<usize> = train_sets.iter().map(Vec::len).collect();
    let weights: Vec<f64> = sources.iter().map(|(_, w)| *w).collect();
    let plan = schedule(&sizes, &weights, steps, per_step, opts.seed);
    let lr_peak = opts.lr.unwrap_or_else(|| opts.method.default_lr());
    let pad = model
        .config
        .pad_token_id
        .or(model.config.eos())
        .unwrap_or(0);

    let vars = model.trainable();
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
        let seqs: Vec<&Sequence> = slots.iter().map(|(d, i)| &train_sets[*d][*i]).collect();
        let denominator: f64 = seqs.iter().map(|s| s.loss_tokens()).sum::<f64>().max(1.0);
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut loss_sum = 0.0;
        let mut tokens = 0;
        let mut dropout = Rng::derive(opts.seed, "dropout", step as u64);
        for micro in seqs.chunks(opts.batch_size) {
            let b = batch::batch(micro, pad, &device)?;
            tokens += b.tokens;
            let loss = model.loss(
                &b.inputs,
                &b.targets,
                &b.weights,
                denominator,
                Some(&mut dropout),
            )?;
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
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / secs,
            elapsed_s: elapsed,
        };
        state.step = step + 1;
        let last = step + 1 == steps;
        let evaluate =
            !val_seqs.is_empty() && (last || opts.eval_every.is_some_and(|e| (step + 1) % e == 0));
        if evaluate {
            let v = validation_loss(&model, &val_seqs, opts.batch_size, pad, &device)?;
            row.val_loss = Some(v);
            if state.best_loss.is_none_or(|b| v < b) {
                state.best_loss = Some(v);
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
            "step {}/{steps} · loss {:.4}{} · {:.0} tok/s · eta {}",
            step + 1,
            row.loss,
            row.val_loss
                .map(|v| format!(" · val {v:.4}"))
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
    hf::save_dir(model_dir, &model, &tokenizer, &info, merge)?;
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
        metrics.insert("val_perplexity".into(), v.exp());
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
