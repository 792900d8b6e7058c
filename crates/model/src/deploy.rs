//! The `deploy` stage kind: checks a gate over a model's metrics and, when it passes, writes a
//! self-describing bundle to `deployments/<name>/<version>/` in the workspace: the weights with
//! any LoRA adapter folded in (prompt-tuning embeddings stay beside them as PEFT files),
//! `config.json`, `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`,
//! `sluice.json`, `metrics.json`, a model card (`README.md`) and `deployment.json`.
//!
//! The version is `v-` and the first 12 hex digits of the bundle's content digest, so the same
//! model and metrics always deploy to the same version, and a version that exists is never
//! written again. The bundle is built in a temporary directory beside its final place and
//! renamed into it, so a crash never leaves half a bundle. The stage's own output is a small
//! receipt, `deployment.json`, naming the bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_eval::Gate;
use sluice_stage::options::{self, workspace_path};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::config::Arch;
use crate::error::{ModelError, Result};
use crate::hf::{self, ModelInfo};
use crate::trainer::candle_device;

pub const RECEIPT: &str = "receipt";
/// The workspace directory bundles are written under.
pub const DEPLOYMENTS: &str = "deployments";
/// The record inside a bundle (and the name of the stage's receipt).
pub const DEPLOYMENT_JSON: &str = "deployment.json";
const METRICS_JSON: &str = "metrics.json";
const CARD: &str = "README.md";

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployOptions {
    /// The model to deploy: a Hugging Face model directory, such as the `model` output of a
    /// `train` stage.
    pub model: String,
    /// The bundle's name: `deployments/<name>/<version>/`. Letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// A `metrics.json` (the `metrics` output of `evaluate`): copied into the bundle, shown in
    /// the model card, and what `gate` is checked against.
    #[serde(default)]
    pub metrics: Option<String>,
    /// A condition on the metrics that must hold to deploy, such as
    /// `exact_match >= 0.6 && perplexity < 20` (`&&`, `||`, `!`, parentheses, `<`, `<=`, `>`,
    /// `>=`, `==`, `!=`). When it fails, the stage fails and nothing is written.
    #[serde(default)]
    pub gate: Option<String>,
    /// Data files (the training and test splits, say) whose digests the model card records.
    #[serde(default)]
    pub data: Vec<String>,
}

impl DeployOptions {
    fn reads(&self) -> Vec<String> {
        let mut out = vec![self.model.clone()];
        out.extend(self.metrics.clone());
        out.extend(self.data.iter().cloned());
        out
    }

    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        errors.extend(workspace_path(&["model"], &self.model));
        if let Some(m) = &self.metrics {
            errors.extend(workspace_path(&["metrics"], m));
        }
        for (i, d) in self.data.iter().enumerate() {
            errors.extend(workspace_path(&["data", &i.to_string()], d));
        }
        if let Some(e) = name_error(&self.name) {
            errors.push(OptionError::new(&["name"], e));
        }
        if let Some(g) = &self.gate {
            if let Err(e) = Gate::parse(g) {
                errors.push(OptionError::new(&["gate"], e.to_string()));
            }
            if self.metrics.is_none() {
                errors.push(
                    OptionError::new(&["gate"], "a gate needs `metrics` to check")
                        .hint("metrics: ${{ stages.evaluate.outputs.metrics }}"),
                );
            }
        }
        errors
    }
}

fn name_error(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| {
        format!("`{name}` is not a valid deployment name (letters, digits, `-`, `_` and `.`, not starting with `.`)")
    })
}

/// The record of a bundle: `deployment.json` inside it, read by `sluice deployments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Deployment {
    pub name: String,
    pub version: String,
    /// The blake3 digest of the bundle's files (all but `README.md` and `deployment.json`).
    pub digest: String,
    /// When the bundle was written (UTC, RFC 3339).
    pub created: String,
    /// `full`, `lora` or `prompt`, or `unknown` for a model sluice did not train.
    pub method: String,
    pub base: String,
    /// The gate it passed, in canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Workspace path → blake3 digest of each input: the model, the metrics, the data files.
    pub inputs: BTreeMap<String, String>,
    /// The blake3 digest of `sluice.lock`, the workflow's lockfile of the run that deployed the
    /// bundle, copied in once that run has written it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<String>,
}

/// The stage's receipt (`deployment.json` in the build directory): where the bundle is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Receipt {
    pub name: String,
    pub version: String,
    /// Workspace-relative.
    pub path: String,
    pub digest: String,
}

pub struct Deploy;

impl StageKind for Deploy {
    fn name(&self) -> &'static str {
        "deploy"
    }

    fn version(&self) -> u32 {
        // 2: a causal bundle has tokenizer_config.json and ends at `<|im_end|>` too.
        2
    }

    fn description(&self) -> &'static str {
        "Gate a model on its metrics and write a versioned, self-describing bundle to deployments/<name>/<version>/"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            name: RECEIPT,
            file: DEPLOYMENT_JSON,
            description: "the receipt: name, version, workspace path and digest of the bundle",
        }]
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<DeployOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<DeployOptions>(with) {
            Ok(o) => o.validate(),
            Err(e) => vec![e],
        }
    }

    fn reads(
        &self,
        with: &serde_json::Value,
        _workspace: &Path,
    ) -> Result<Vec<String>, StageError> {
        let o: DeployOptions = options::parse_for_run(with)?;
        Ok(o.reads())
    }

    fn gpu_unavailable(&self) -> Option<&'static str> {
        crate::trainer::GPU_UNAVAILABLE
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        let o: DeployOptions = options::parse_for_run(ctx.with)?;
        Ok(run(ctx, &o)?)
    }

    /// Completes the bundle with a copy of the lockfile that records the run (`sluice.lock`) and
    /// its digest in `deployment.json` and the model card — once: a bundle that has a lockfile
    /// keeps it. Neither file is part of the bundle's content digest.
    fn after_lockfile(
        &self,
        workspace: &Path,
        outputs: &BTreeMap<String, PathBuf>,
        lockfile: &Path,
    ) -> Result<(), StageError> {
        Ok(attach_lockfile(workspace, outputs, lockfile)?)
    }
}

/// The copy of the lockfile inside a bundle.
pub const BUNDLE_LOCKFILE: &str = "sluice.lock";

fn attach_lockfile(
    workspace: &Path,
    outputs: &BTreeMap<String, PathBuf>,
    lockfile: &Path,
) -> Result<()> {
    let Some(receipt) = outputs.get(RECEIPT) else {
        return Ok(());
    };
    let receipt: Receipt = hf::read_json(receipt)?;
    let bundle = workspace.join(&receipt.path);
    let target = bundle.join(BUNDLE_LOCKFILE);
    if target.exists() || !bundle.is_dir() {
        return Ok(());
    }
    let text = std::fs::read(lockfile).map_err(|e| ModelError::file(lockfile, e))?;
    let digest = blake3::hash(&text).to_hex().to_string();
    let tmp = bundle.join(format!(".{BUNDLE_LOCKFILE}.tmp"));
    std::fs::write(&tmp, &text).map_err(|e| ModelError::file(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| ModelError::file(&target, e))?;
    let record_path = bundle.join(DEPLOYMENT_JSON);
    let mut record: Deployment = hf::read_json(&record_path)?;
    record.lockfile = Some(digest.clone());
    let tmp = bundle.join(format!(".{DEPLOYMENT_JSON}.tmp"));
    hf::write_json(&tmp, &record)?;
    std::fs::rename(&tmp, &record_path).map_err(|e| ModelError::file(&record_path, e))?;
    let card_path = bundle.join(CARD);
    if let Ok(mut card) = std::fs::read_to_string(&card_path) {
        card.push_str(&format!(
            "
## Lockfile

`{BUNDLE_LOCKFILE}` is the workflow's lockfile of the run that deployed this bundle (blake3 `{digest}`): every stage's key, inputs and outputs. Reproduce it with `sluice repro`.
"
        ));
        let tmp = bundle.join(format!(".{CARD}.tmp"));
        std::fs::write(&tmp, card).map_err(|e| ModelError::file(&tmp, e))?;
        std::fs::rename(&tmp, &card_path).map_err(|e| ModelError::file(&card_path, e))?;
    }
    Ok(())
}

/// Reads a `metrics.json`: a flat object of numbers (anything else is skipped).
pub fn read_metrics(path: &Path) -> Result<BTreeMap<String, f64>> {
    let value: serde_json::Value = hf::read_json(path)?;
    let object = value
        .as_object()
        .ok_or_else(|| ModelError::file(path, "is not a JSON object of metrics"))?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
        .collect())
}

/// Checks `gate` on `metrics`: an error lists each failing check with its value and threshold.
pub fn check_gate(gate: &str, metrics: &BTreeMap<String, f64>) -> Result<Gate> {
    let parsed = Gate::parse(gate).map_err(|e| ModelError::Other(format!("gate: {e}")))?;
    let outcome = parsed
        .evaluate(metrics)
        .map_err(|e| ModelError::Other(format!("gate `{gate}`: {e}")))?;
    if !outcome.passed {
        let failures: Vec<String> = outcome.failures().map(|c| format!("  {c}")).collect();
        return Err(ModelError::Other(format!(
            "gate `{gate}` failed, nothing was deployed:\n{}",
            failures.join("\n")
        )));
    }
    Ok(parsed)
}

/// The blake3 digest of a file, or of a directory's files (relative path and content, in path
/// order).
pub fn digest(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    if path.is_dir() {
        for rel in files(path)? {
            let file = path.join(&rel);
            let bytes = std::fs::read(&file).map_err(|e| ModelError::file(&file, e))?;
            h.update(rel.as_bytes());
            h.update(&[0]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    } else {
        let bytes = std::fs::read(path).map_err(|e| ModelError::file(path, e))?;
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Every file under `dir`, relative, `/`-separated, sorted.
fn files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|e| ModelError::file(&abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ModelError::file(&abs, e))?;
            let child = rel.join(entry.file_name());
            if entry.path().is_dir() {
                stack.push(child);
            } else {
                out.push(child.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The digest of a bundle's content: every file but the model card and the record, which
/// name the version the digest gives.
fn bundle_digest(dir: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for rel in files(dir)? {
        if rel == CARD || rel == DEPLOYMENT_JSON || rel == BUNDLE_LOCKFILE {
            continue;
        }
        let file = dir.join(&rel);
        let bytes = std::fs::read(&file).map_err(|e| ModelError::file(&file, e))?;
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex().to_string())
}

fn run(ctx: &StageContext<'_>, o: &DeployOptions) -> Result<StageReport> {
    let metrics = match &o.metrics {
        Some(m) => read_metrics(&ctx.path(m))?,
        None => BTreeMap::new(),
    };
    let gate = match &o.gate {
        Some(g) => Some(check_gate(g, &metrics)?),
        None => None,
    };
    let mut inputs = BTreeMap::new();
    for rel in o.reads() {
        inputs.insert(rel.clone(), digest(&ctx.path(&rel))?);
    }

    (ctx.progress)("merging the weights");
    let device = candle_device(ctx.device)?;
    let model = Model::load(&ctx.path(&o.model), &device)?;
    let info = model.info().unwrap_or_else(|| ModelInfo {
        method: "unknown".into(),
        merged: false,
        base: o.model.clone(),
        template: Default::default(),
        trainable_parameters: 0,
        total_parameters: model.total_parameters(),
        seed: 0,
        deterministic: false,
    });

    let parent = ctx.workspace.join(DEPLOYMENTS).join(&o.name);
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::file(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&parent)
        .map_err(|e| ModelError::file(&parent, e))?;
    model.save(tmp.path(), &info)?;
    if let Some(m) = &o.metrics {
        let from = ctx.path(m);
        let to = tmp.path().join(METRICS_JSON);
        std::fs::copy(&from, &to).map_err(|e| ModelError::file(&from, e))?;
    }
    let digest = bundle_digest(tmp.path())?;
    let version = format!("v-{}", &digest[..12]);
    let rel = format!("{DEPLOYMENTS}/{}/{version}", o.name);
    let deployment = Deployment {
        name: o.name.clone(),
        version: version.clone(),
        digest: digest.clone(),
        created: rfc3339_now(),
        method: info.method.clone(),
        base: info.base.clone(),
        gate: gate.as_ref().map(ToString::to_string),
        metrics: metrics.clone(),
        inputs,
        lockfile: None,
    };
    let card = model_card(
        &deployment,
        &info,
        gate.as_ref(),
        &o.data,
        &rel,
        model.arch(),
    );
    std::fs::write(tmp.path().join(CARD), card)
        .map_err(|e| ModelError::file(tmp.path().join(CARD), e))?;
    hf::write_json(&tmp.path().join(DEPLOYMENT_JSON), &deployment)?;

    let target = ctx.workspace.join(&rel);
    if target.exists() {
        (ctx.progress)(&format!("{rel} is already deployed"));
    } else {
        let kept = tmp.keep();
        if let Err(e) = std::fs::rename(&kept, &target) {
            let _ = std::fs::remove_dir_all(&kept);
            // Another run renamed the same content into place first: that is the same bundle.
            if !target.exists() {
                return Err(ModelError::file(&target, e));
            }
        }
        (ctx.progress)(&format!("deployed {rel}"));
    }
    let receipt = Receipt {
        name: o.name.clone(),
        version,
        path: rel,
        digest,
    };
    hf::write_json(ctx.output(RECEIPT)?, &receipt)?;
    Ok(StageReport::default())
}

/// A model to bundle, of either kind.
enum Model {
    Causal(hf::Loaded),
    Classifier(hf::LoadedClassifier),
}

impl Model {
    fn load(dir: &Path, device: &candle_core::Device) -> Result<Model> {
        Ok(match hf::arch(dir)? {
            Arch::Llama => Model::Causal(hf::load_dir(dir, device)?),
            Arch::Bert => Model::Classifier(hf::load_classifier(dir, device, hf::Head::Saved)?),
        })
    }

    fn arch(&self) -> Arch {
        match self {
            Model::Causal(_) => Arch::Llama,
            Model::Classifier(_) => Arch::Bert,
        }
    }

    fn info(&self) -> Option<ModelInfo> {
        match self {
            Model::Causal(m) => m.info.clone(),
            Model::Classifier(m) => m.info.clone(),
        }
    }

    fn total_parameters(&self) -> usize {
        match self {
            Model::Causal(m) => m.model.parameter_counts().1,
            Model::Classifier(m) => m.model.parameter_counts().1,
        }
    }

    /// Writes the bundle's model files with any LoRA adapter merged.
    fn save(&self, dir: &Path, info: &ModelInfo) -> Result<()> {
        match self {
            Model::Causal(m) => hf::save_dir(dir, &m.model, &m.tokenizer, info, true),
            Model::Classifier(m) => hf::save_classifier(dir, &m.model, &m.tokenizer, info, true),
        }
    }
}

/// The model card: what the model is, how it was made, how it scored, what it was made from.
fn model_card(
    d: &Deployment,
    info: &ModelInfo,
    gate: Option<&Gate>,
    data: &[String],
    rel: &str,
    arch: Arch,
) -> String {
    let mut s = String::new();
    s.push_str(&format!("# {} {}\n\n", d.name, d.version));
    s.push_str(match arch {
        Arch::Llama => "A causal language model (llama architecture) deployed by sluice.\n\n",
        Arch::Bert => "A text classifier (BERT encoder with a sequence-classification head) deployed by sluice.\n\n",
    });
    s.push_str("| | |\n|---|---|\n");
    s.push_str(&format!("| base | `{}` |\n", info.base));
    let method = match info.method.as_str() {
        "lora" => "LoRA, merged into the weights".to_owned(),
        "prompt" => "prompt tuning (virtual tokens in `adapter_model.safetensors`)".to_owned(),
        m => m.to_owned(),
    };
    s.push_str(&format!("| method | {method} |\n"));
    s.push_str(&format!(
        "| parameters | {} total, {} trained |\n",
        info.total_parameters, info.trainable_parameters
    ));
    s.push_str(&format!("| seed | {} |\n", info.seed));
    if arch == Arch::Llama {
        s.push_str(&format!(
            "| prompt template | `{}` |\n",
            info.template.prompt.escape_debug()
        ));
    }
    s.push_str(&format!("| content digest (blake3) | `{}` |\n", d.digest));
    s.push_str(&format!("| created | {} |\n", d.created));
    if !d.metrics.is_empty() {
        s.push_str("\n## Metrics\n\n| metric | value |\n|---|---|\n");
        for (k, v) in &d.metrics {
            s.push_str(&format!("| {k} | {v:.4} |\n"));
        }
    }
    if let Some(g) = gate {
        s.push_str(&format!("\n## Gate\n\nPassed `{g}`.\n"));
    }
    s.push_str("\n## Inputs\n\n| input | blake3 |\n|---|---|\n");
    for (k, v) in &d.inputs {
        let what = if data.contains(k) { " (data)" } else { "" };
        s.push_str(&format!("| `{k}`{what} | `{v}` |\n"));
    }
    match arch {
        Arch::Llama => s.push_str(&format!(
            "\n## Use\n\n```sh\nsluice serve {rel}\n```\n\nor in Python, `transformers.AutoModelForCausalLM.from_pretrained(\"{rel}\")`.\n"
        )),
        Arch::Bert => s.push_str(&format!(
            "\n## Use\n\n```sh\nsluice serve {rel}   # then POST /v1/classify {{\"model\": …, \"input\": [texts]}}\n```\n\nor in Python, `transformers.AutoModelForSequenceClassification.from_pretrained(\"{rel}\")` with `AutoTokenizer` on the same directory.\n"
        )),
    }
    s
}

/// Every bundle under `deployments/` in `workspace`, by name then creation time.
pub fn list(workspace: &Path) -> Result<Vec<(PathBuf, Deployment)>> {
    let root = workspace.join(DEPLOYMENTS);
    let mut out = Vec::new();
    let Ok(names) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for name in names.flatten() {
        out.extend(versions(&name.path())?);
    }
    out.sort_by(|a, b| {
        (&a.1.name, &a.1.created, &a.1.version).cmp(&(&b.1.name, &b.1.created, &b.1.version))
    });
    Ok(out)
}

/// The bundles directly inside `dir` (one deployment name's directory), oldest first; none when
/// it is not a directory. A hidden directory (a bundle being written) is not a bundle.
pub fn versions(dir: &Path) -> Result<Vec<(PathBuf, Deployment)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for version in entries.flatten() {
        let record = version.path().join(DEPLOYMENT_JSON);
        if version.file_name().to_string_lossy().starts_with('.') || !record.exists() {
            continue;
        }
        out.push((version.path(), hf::read_json::<Deployment>(&record)?));
    }
    out.sort_by(|a, b| (&a.1.created, &a.1.version).cmp(&(&b.1.created, &b.1.version)));
    Ok(out)
}

/// Now, as `2026-11-26T23:04:05Z`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// A Unix time as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_734_245), "2026-11-26T23:04:05Z");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(name_error("support-bot_1.2"), None);
        for bad in ["", ".hidden", "a/b", "a b", ".."] {
            assert!(name_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_failing_gate_names_both_numbers() {
        let metrics: BTreeMap<String, f64> = [("exact_match", 0.42), ("perplexity", 3.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert!(check_gate("perplexity < 5", &metrics).is_ok());
        let e = check_gate("exact_match >= 0.6 && perplexity < 5", &metrics)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "gate `exact_match >= 0.6 && perplexity < 5` failed, nothing was deployed:\n  exact_match = 0.42, needs >= 0.6"
        );
        let e = check_gate("f1 > 0", &metrics).unwrap_err().to_string();
        assert!(e.contains("f1"), "{e}");
    }
}
