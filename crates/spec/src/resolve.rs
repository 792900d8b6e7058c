//! Validation and resolution: turns a deserialised [`Workflow`] into a [`ResolvedWorkflow`],
//! collecting every problem with its position. Pure: no IO, the source text comes in as a string.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use crate::error::{Pos, SpecError, SpecErrors, closest, suggestion};
use crate::kinds::{KindInfo, Kinds};
use crate::resolved::{Dependency, InputSource, Needs, ResolvedStage, ResolvedWorkflow};
use crate::template::{self, Ref, Segment};
use crate::workflow::{FORMAT_VERSION, Fallback, Stage, Workflow};
use crate::yaml::{self, SourceMap};

/// A `-p NAME=VALUE` given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamOverride {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for ParamOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<ParamOverride, String> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok(ParamOverride {
                name: name.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!("expected NAME=VALUE, found `{s}`")),
        }
    }
}

/// Parses, validates and resolves a workflow file's text.
pub fn load(
    file: &Path,
    source: &str,
    overrides: &[ParamOverride],
    kinds: &dyn Kinds,
) -> Result<ResolvedWorkflow, SpecErrors> {
    let map = yaml::source_map(file, source).map_err(SpecErrors)?;
    if map.span(&[]).is_none() {
        return Err(
            SpecError::new(file, Pos::new(1, 1), "the workflow file is empty")
                .with_hint("a workflow needs at least `version: 1`, `name` and `stages`")
                .into(),
        );
    }
    let workflow: Workflow = yaml::from_str(file, source)?;
    let mut r = Resolver {
        file,
        source,
        map: &map,
        errors: Vec::new(),
        kinds: kinds.kinds(),
        checker: kinds,
    };
    let resolved = r.resolve(&workflow, overrides);
    if r.errors.is_empty() {
        Ok(resolved)
    } else {
        let mut errors = r.errors;
        errors.sort_by_key(|e| e.pos);
        errors.dedup();
        Err(SpecErrors(errors))
    }
}

struct Resolver<'a> {
    file: &'a Path,
    source: &'a str,
    map: &'a SourceMap,
    errors: Vec<SpecError>,
    kinds: Vec<KindInfo>,
    checker: &'a dyn Kinds,
}

/// A file-name-safe form of the workflow's name, for default output paths.
fn path_segment(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_owned();
    if s.is_empty() {
        "workflow".to_owned()
    } else {
        s
    }
}

/// Which references a field may hold.
#[derive(Clone, Copy)]
struct Allowed {
    stages: bool,
    io: bool,
}

/// The paths a stage's `${{ inputs.X }}` / `${{ outputs.X }}` resolve to.
struct StageIo<'s> {
    inputs: &'s BTreeMap<String, InputSource>,
    outputs: &'s BTreeMap<String, String>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Lexically normalises a workspace-relative path; rejects absolute paths and escapes.
pub fn normalise_path(p: &str) -> Result<String, String> {
    if p.trim().is_empty() {
        return Err("the path is empty".into());
    }
    let path = Path::new(p);
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(format!(
                    "`{p}` is an absolute path; paths are relative to the workspace root"
                ));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!("`{p}` is outside the workspace"));
                }
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{p}` is the workspace root itself"));
    }
    if parts[0] == ".sluice" {
        return Err(format!(
            "`{p}` is inside `.sluice/`, which belongs to the store"
        ));
    }
    Ok(parts.join("/"))
}

/// True when `inner` is `outer` or lies inside it.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn param_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

impl Resolver<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        let mut e = SpecError::new(self.file, pos, message).with_source(self.source);
        if let Some(h) = hint {
            e = e.with_hint(h);
        }
        self.errors.push(e);
    }

    fn error_w(
        &mut self,
        pos: Pos,
        width: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut e = SpecError::new(self.file, pos, message)
            .with_source(self.source)
            .with_width(width);
        if let Some(h) = hint {
            e = e.with_hint(h);
        }
        self.errors.push(e);
    }

    fn resolve(&mut self, wf: &Workflow, overrides: &[ParamOverride]) -> ResolvedWorkflow {
        if wf.version != FORMAT_VERSION {
            self.error(
                self.map.value_pos(&["version"]),
                format!("unsupported workflow version {}", wf.version),
                Some(format!("this sluice reads version {FORMAT_VERSION}")),
            );
        }
        if wf.stages.is_empty() {
            self.error(
                self.map.key_pos(&["stages"]),
                "the workflow has no stages",
                None,
            );
        }
        let params = self.params(wf, overrides);

        // Names first, so that references can be checked against them.
        for (name, stage) in &wf.stages {
            if !is_name(name) {
                self.error(
                    self.map.key_pos(&["stages", name]),
                    format!("invalid stage name `{name}`"),
                    Some("use letters, digits, `_` and `-`".into()),
                );
            }
            for (section, names) in [("inputs", &stage.inputs), ("outputs", &stage.outputs)] {
                for key in names.keys() {
                    if !is_name(key) {
                        self.error(
                            self.map.key_pos(&["stages", name, section, key]),
                            format!("invalid {} name `{key}`", &section[..section.len() - 1]),
                            Some("use letters, digits, `_` and `-`".into()),
                        );
                    }
                }
            }
            self.shape(name, stage);
            for key in stage.env.keys() {
                if !is_env_name(key) {
                    self.error(
                        self.map.key_pos(&["stages", name, "env", key]),
                        format!("invalid environment variable name `{key}`"),
                        Some("use letters, digits and `_`, not starting with a digit".into()),
                    );
                }
            }
        }

        // Outputs: params only; must be unique, inside the workspace, and not nested in each other.
        let mut outputs: Vec<BTreeMap<String, String>> = Vec::new();
        let mut claimed: Vec<(String, String, String)> = Vec::new(); // (path, stage, output)
        for (name, stage) in &wf.stages {
            let mut outs = BTreeMap::new();
            let mut used = BTreeMap::new();
            for (out, raw) in self.declared_outputs(&wf.name, name, stage) {
                let (out, raw) = (&out, &raw);
                let at = ["stages", name.as_str(), "outputs", out.as_str()];
                let no_io = Allowed {
                    stages: false,
                    io: false,
                };
                let Some(text) = self.interpolate(raw, &at, no_io, &params, None, &mut used, None)
                else {
                    continue;
                };
                match normalise_path(&text) {
                    Err(why) => self.error(
                        self.map.value_pos(&at),
                        format!("invalid output path for `{out}` of stage `{name}`: {why}"),
                        Some("outputs are written inside the workspace".into()),
                    ),
                    Ok(path) => {
                        if let Some((other, s, o)) = claimed
                            .iter()
                            .find(|(p, _, _)| within(&path, p) || within(p, &path))
                        {
                            let how = if *other == path {
                                "is also"
                            } else {
                                "overlaps"
                            };
                            self.error(
                                self.map.value_pos(&at),
                                format!(
                                    "output path `{path}` of stage `{name}` {how} the output `{o}` of stage `{s}` (`{other}`)"
                                ),
                                Some(format!(
                                    "each output path belongs to one stage; see line {}",
                                    self.map
                                        .value_pos(&["stages", s, "outputs", o])
                                        .line
                                )),
                            );
                        } else {
                            claimed.push((path.clone(), name.clone(), out.clone()));
                        }
                        outs.insert(out.clone(), path);
                    }
                }
            }
            outputs.push(outs);
        }
        let output_index: HashMap<&str, &BTreeMap<String, String>> = wf
            .stages
            .keys()
            .map(String::as_str)
            .zip(outputs.iter())
            .collect();

        let mut stages = Vec::new();
        for ((name, stage), outs) in wf.stages.iter().zip(outputs.iter()) {
            let resolved = self.stage(name, stage, outs, &params, &output_index, &claimed);
            stages.push(resolved);
        }

        let canonical = serde_json::to_string(wf).unwrap_or_default();
        ResolvedWorkflow {
            file: self.file.to_path_buf(),
            source: self.source.to_owned(),
            name: wf.name.clone(),
            canonical,
            params: params.into_iter().collect(),
            stages,
        }
    }

    fn kind(&self, name: &str) -> Option<&KindInfo> {
        self.kinds.iter().find(|k| k.name == name)
    }

    /// A stage is a `run` stage or a `uses` stage, with the keys that go with each.
    fn shape(&mut self, name: &str, stage: &Stage) {
        let at = self.map.key_pos(&["stages", name]);
        match (&stage.run, &stage.uses) {
            (Some(_), Some(_)) => self.error(
                self.map.key_pos(&["stages", name, "uses"]),
                format!("stage `{name}` has both `run` and `uses`"),
                Some(
                    "a stage runs a shell command (`run`) or a builtin stage kind (`uses`)".into(),
                ),
            ),
            (None, None) => {
                let names: Vec<String> =
                    self.kinds.iter().map(|k| format!("`{}`", k.name)).collect();
                let hint = if names.is_empty() {
                    "add `run: <shell command>`".to_owned()
                } else {
                    format!(
                        "add `run: <shell command>`, or `uses:` one of {}",
                        names.join(", ")
                    )
                };
                self.error(
                    at,
                    format!("stage `{name}` has neither `run` nor `uses`"),
                    Some(hint),
                );
            }
            (None, Some(kind)) => {
                if self.kind(kind).is_none() {
                    let names: Vec<&str> = self.kinds.iter().map(|k| k.name.as_str()).collect();
                    let hint = suggestion(kind, "stage kinds", names.iter().copied())
                        .unwrap_or_else(|| "this sluice has no builtin stage kinds".to_owned());
                    self.error_w(
                        self.map.value_pos(&["stages", name, "uses"]),
                        kind.chars().count(),
                        format!("unknown stage kind `{kind}` in stage `{name}`"),
                        Some(hint),
                    );
                }
                for (key, present) in [
                    ("inputs", !stage.inputs.is_empty()),
                    ("env", !stage.env.is_empty()),
                ] {
                    if present {
                        self.error(
                            self.map.key_pos(&["stages", name, key]),
                            format!("stage `{name}` uses `{kind}` and cannot have `{key}`"),
                            Some("a builtin stage takes its inputs in `with:`, e.g. `data: ${{ stages.S.outputs.data }}`".into()),
                        );
                    }
                }
            }
            (Some(_), None) => {
                if stage.with.is_some() {
                    self.error(
                        self.map.key_pos(&["stages", name, "with"]),
                        format!("stage `{name}` has `with` but no `uses`"),
                        Some("`with` configures a builtin stage kind (`uses: …`); a `run` stage takes `inputs`, `outputs` and `env`".into()),
                    );
                }
            }
        }
    }

    /// A stage's outputs as (name, path as written): a `run` stage's declared ones, or a builtin
    /// kind's, at their default paths unless `outputs:` moves them.
    fn declared_outputs(
        &mut self,
        workflow: &str,
        name: &str,
        stage: &Stage,
    ) -> Vec<(String, String)> {
        let Some(kind) = stage.uses.as_deref().and_then(|k| self.kind(k)).cloned() else {
            return stage
                .outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        };
        for out in stage.outputs.keys() {
            if !kind.outputs.iter().any(|o| &o.name == out) {
                let names: Vec<&str> = kind.outputs.iter().map(|o| o.name.as_str()).collect();
                self.error(
                    self.map.key_pos(&["stages", name, "outputs", out]),
                    format!("stage kind `{}` has no output `{out}`", kind.name),
                    suggestion(out, "outputs", names.iter().copied()),
                );
            }
        }
        kind.outputs
            .iter()
            .map(|o| {
                let path = stage.outputs.get(&o.name).cloned().unwrap_or_else(|| {
                    format!("build/{}/{name}/{}", path_segment(workflow), o.file)
                });
                (o.name.clone(), path)
            })
            .collect()
    }

    /// Resolves a builtin stage's `with:` (params to values, stage references to paths) and
    /// checks it against its kind.
    #[allow(clippy::too_many_arguments)]
    fn with_options(
        &mut self,
        name: &str,
        kind: &str,
        raw: &serde_json::Value,
        params: &BTreeMap<String, serde_json::Value>,
        graph: &HashMap<&str, &BTreeMap<String, String>>,
        used: &mut BTreeMap<String, serde_json::Value>,
        deps: &mut Vec<Dependency>,
        inputs: &mut BTreeMap<String, InputSource>,
    ) -> serde_json::Value {
        let mut path = vec!["stages".to_owned(), name.to_owned(), "with".to_owned()];
        let resolved = self.resolve_value(raw, &mut path, params, graph, used, deps, inputs);
        if self.kind(kind).is_some() {
            for e in self.checker.check(kind, &resolved) {
                let mut at: Vec<&str> = vec!["stages", name, "with"];
                at.extend(e.path.iter().map(String::as_str));
                let pos = self.map.key_pos(&at);
                let shown = if e.path.is_empty() {
                    String::new()
                } else {
                    format!("`{}` ", e.path.join("."))
                };
                self.error(
                    pos,
                    format!("stage `{name}` ({kind}): {shown}{}", e.message),
                    e.hint,
                );
            }
        }
        resolved
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve_value(
        &mut self,
        value: &serde_json::Value,
        path: &mut Vec<String>,
        params: &BTreeMap<String, serde_json::Value>,
        graph: &HashMap<&str, &BTreeMap<String, String>>,
        used: &mut BTreeMap<String, serde_json::Value>,
        deps: &mut Vec<Dependency>,
        inputs: &mut BTreeMap<String, InputSource>,
    ) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    path.push(k.clone());
                    let r = self.resolve_value(v, path, params, graph, used, deps, inputs);
                    path.pop();
                    out.insert(k.clone(), r);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(self.resolve_value(v, path, params, graph, used, deps, inputs));
                    path.pop();
                }
                serde_json::Value::Array(out)
            }
            serde_json::Value::String(text) => {
                let at: Vec<&str> = path.iter().map(String::as_str).collect();
                // A string that is exactly one param reference takes the param's value and type.
                if let Ok(segs) = template::parse(text.trim())
                    && let [
                        Segment::Ref {
                            target: Ref::Param(p),
                            ..
                        },
                    ] = segs.as_slice()
                    && let Some(v) = params.get(p)
                {
                    used.insert(p.clone(), v.clone());
                    return v.clone();
                }
                let before = deps.len();
                let allowed = Allowed {
                    stages: true,
                    io: false,
                };
                let resolved = self
                    .interpolate_with(
                        text,
                        &at,
                        allowed,
                        params,
                        Some(graph),
                        used,
                        Some(deps),
                        None,
                    )
                    .unwrap_or_default();
                let name = format!("with.{}", path[3..].join("."));
                for dep in &deps[before..] {
                    if let Some(p) = graph
                        .get(dep.stage.as_str())
                        .and_then(|o| o.get(&dep.output))
                    {
                        let key = if deps.len() - before == 1 {
                            name.clone()
                        } else {
                            format!("{name}.{}.{}", dep.stage, dep.output)
                        };
                        inputs.insert(
                            key,
                            InputSource::Stage {
                                stage: dep.stage.clone(),
                                output: dep.output.clone(),
                                path: p.clone(),
                            },
                        );
                    }
                }
                serde_json::Value::String(resolved)
            }
            other => other.clone(),
        }
    }

    fn params(
        &mut self,
        wf: &Workflow,
        overrides: &[ParamOverride],
    ) -> BTreeMap<String, serde_json::Value> {
        let mut params: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (name, value) in &wf.params {
            if !is_name(name) {
                self.error(
                    self.map.key_pos(&["params", name]),
                    format!("invalid param name `{name}`"),
                    Some("use letters, digits, `_` and `-`".into()),
                );
            }
            params.insert(name.clone(), value.clone());
        }
        for o in overrides {
            let Some(default) = params.get(&o.name) else {
                self.error(
                    self.map.key_pos(&["params"]),
                    format!(
                        "-p {}={}: param `{}` is not defined",
                        o.name, o.value, o.name
                    ),
                    suggestion(&o.name, "params", params.keys().map(String::as_str)).or(Some(
                        "a param must be declared under `params:` before it can be set".into(),
                    )),
                );
                continue;
            };
            let parsed: serde_json::Value = serde_yaml::from_str(&o.value)
                .unwrap_or_else(|_| serde_json::Value::String(o.value.clone()));
            let value = match (default, &parsed) {
                (serde_json::Value::String(_), serde_json::Value::String(_)) => parsed,
                (serde_json::Value::String(_), _) => serde_json::Value::String(o.value.clone()),
                (serde_json::Value::Null, _) => parsed,
                (serde_json::Value::Number(_), serde_json::Value::Number(_))
                | (serde_json::Value::Bool(_), serde_json::Value::Bool(_))
                | (serde_json::Value::Array(_), serde_json::Value::Array(_))
                | (serde_json::Value::Object(_), serde_json::Value::Object(_)) => parsed,
                _ => {
                    self.error(
                        self.map.value_pos(&["params", &o.name]),
                        format!(
                            "-p {}={}: param `{}` is {}, and `{}` is not",
                            o.name,
                            o.value,
                            o.name,
                            kind_of(default),
                            o.value
                        ),
                        None,
                    );
                    continue;
                }
            };
            params.insert(o.name.clone(), value);
        }
        params
    }

    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        name: &str,
        stage: &Stage,
        outputs: &BTreeMap<String, String>,
        params: &BTreeMap<String, serde_json::Value>,
        output_index: &HashMap<&str, &BTreeMap<String, String>>,
        claimed: &[(String, String, String)],
    ) -> ResolvedStage {
        let mut used = BTreeMap::new();
        let mut deps: Vec<Dependency> = Vec::new();
        let mut inputs = BTreeMap::new();
        let graph = Some(output_index);
        if let Some(kind) = &stage.uses {
            let raw = stage
                .with
                .clone()
                .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
            let with = self.with_options(
                name,
                kind,
                &raw,
                params,
                output_index,
                &mut used,
                &mut deps,
                &mut inputs,
            );
            self.no_self_reference(name, &deps);
            let needs = self.needs(name, stage);
            return ResolvedStage {
                name: name.to_owned(),
                desc: stage.desc.clone(),
                pos: self.map.key_pos(&["stages", name]),
                command_template: String::new(),
                command: String::new(),
                uses: Some(kind.clone()),
                with,
                params: used,
                inputs,
                outputs: outputs.clone(),
                env: BTreeMap::new(),
                dependencies: deps,
                needs,
                retries: stage.retries.unwrap_or(0),
                timeout: stage.timeout.map(|t| t.0),
            };
        }
        let run = stage.run.clone().unwrap_or_default();

        for (input, raw) in &stage.inputs {
            let at = ["stages", name, "inputs", input.as_str()];
            let trimmed = raw.trim();
            // A value that is exactly one stage reference is an edge; anything else is a path.
            if let Ok(segs) = template::parse(trimmed)
                && let [
                    Segment::Ref {
                        target: Ref::StageOutput { .. },
                        ..
                    },
                ] = segs.as_slice()
            {
                let before = deps.len();
                let allowed = Allowed {
                    stages: true,
                    io: false,
                };
                if let Some(path) =
                    self.interpolate(raw, &at, allowed, params, graph, &mut used, Some(&mut deps))
                    && let Some(dep) = deps.get(before)
                {
                    inputs.insert(
                        input.clone(),
                        InputSource::Stage {
                            stage: dep.stage.clone(),
                            output: dep.output.clone(),
                            path,
                        },
                    );
                }
                continue;
            }
            let allowed = Allowed {
                stages: false,
                io: false,
            };
            let Some(text) = self.interpolate(raw, &at, allowed, params, None, &mut used, None)
            else {
                continue;
            };
            match normalise_path(&text) {
                Err(why) => self.error(
                    self.map.value_pos(&at),
                    format!("invalid input path for `{input}` of stage `{name}`: {why}"),
                    None,
                ),
                Ok(path) => {
                    if let Some((_, s, o)) = claimed
                        .iter()
                        .find(|(p, _, _)| within(&path, p) || within(p, &path))
                    {
                        let hint = if s == name {
                            "a stage cannot read its own output".to_owned()
                        } else {
                            format!(
                                "write `${{{{ stages.{s}.outputs.{o} }}}}` so that `{name}` runs after `{s}`"
                            )
                        };
                        self.error(
                            self.map.value_pos(&at),
                            format!(
                                "input `{input}` of stage `{name}` is `{path}`, which stage `{s}` writes (output `{o}`)"
                            ),
                            Some(hint),
                        );
                    }
                    inputs.insert(input.clone(), InputSource::Path(path));
                }
            }
        }

        let io = StageIo {
            inputs: &inputs,
            outputs,
        };
        let before = deps.len();
        let command = self.interpolate_io(
            &run,
            &["stages", name, "run"],
            params,
            graph,
            &mut used,
            &mut deps,
            &io,
        );
        let mut env = BTreeMap::new();
        for (var, raw) in &stage.env {
            let at = ["stages", name, "env", var.as_str()];
            if let Some(v) = self.interpolate_io(raw, &at, params, graph, &mut used, &mut deps, &io)
            {
                env.insert(var.clone(), v);
            }
        }
        // References written in `run` or `env` rather than `inputs` are inputs all the same.
        for dep in &deps[before..] {
            let key = format!("stages.{}.outputs.{}", dep.stage, dep.output);
            if let Some(path) = output_index
                .get(dep.stage.as_str())
                .and_then(|o| o.get(&dep.output))
            {
                inputs.entry(key).or_insert_with(|| InputSource::Stage {
                    stage: dep.stage.clone(),
                    output: dep.output.clone(),
                    path: path.clone(),
                });
            }
        }
        self.no_self_reference(name, &deps);

        let needs = self.needs(name, stage);
        ResolvedStage {
            name: name.to_owned(),
            desc: stage.desc.clone(),
            pos: self.map.key_pos(&["stages", name]),
            command_template: run.clone(),
            command: command.unwrap_or_default(),
            uses: None,
            with: serde_json::Value::Null,
            params: used,
            inputs,
            outputs: outputs.clone(),
            env,
            dependencies: deps,
            needs,
            retries: stage.retries.unwrap_or(0),
            timeout: stage.timeout.map(|t| t.0),
        }
    }

    fn no_self_reference(&mut self, name: &str, deps: &[Dependency]) {
        if let Some(d) = deps.iter().find(|d| d.stage == name) {
            self.error(
                d.pos,
                format!("stage `{name}` refers to its own output"),
                Some("a stage cannot depend on itself".into()),
            );
        }
    }

    fn needs(&mut self, name: &str, stage: &Stage) -> Needs {
        let Some(r) = &stage.resources else {
            return Needs::default();
        };
        let at = |key: &str| ["stages", name, "resources", key].map(str::to_owned);
        let pos_of = |this: &Self, key: &str| {
            let path = at(key);
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            this.map.value_pos(&path)
        };
        if r.cpu == Some(0) {
            let p = pos_of(self, "cpu");
            self.error(
                p,
                format!("stage `{name}` asks for 0 CPU slots"),
                Some("`cpu` is at least 1".into()),
            );
        }
        let gpu = r.gpu.unwrap_or(0);
        if gpu == 0 && r.gpu_memory.is_some() {
            let p = pos_of(self, "gpu_memory");
            self.error(
                p,
                format!("stage `{name}` sets `gpu_memory` without asking for a GPU"),
                Some("add `gpu: 1`".into()),
            );
        }
        if gpu == 0 && r.fallback.is_some() {
            let p = pos_of(self, "fallback");
            self.error(
                p,
                format!("stage `{name}` sets `fallback` without asking for a GPU"),
                Some("a fallback applies to stages with `gpu: N`".into()),
            );
        }
        Needs {
            cpu: r.cpu.unwrap_or(1).max(1),
            memory: r.memory.map(|b| b.0),
            gpu,
            gpu_memory: r.gpu_memory.map(|b| b.0),
            fallback_cpu: r.fallback == Some(Fallback::Cpu),
            pos: self.map.key_pos(&["stages", name, "resources"]),
        }
    }

    /// Interpolation with `${{ inputs.X }}` / `${{ outputs.X }}` available.
    #[allow(clippy::too_many_arguments)]
    fn interpolate_io(
        &mut self,
        raw: &str,
        at: &[&str],
        params: &BTreeMap<String, serde_json::Value>,
        graph: Option<&HashMap<&str, &BTreeMap<String, String>>>,
        used: &mut BTreeMap<String, serde_json::Value>,
        deps: &mut Vec<Dependency>,
        io: &StageIo<'_>,
    ) -> Option<String> {
        let allowed = Allowed {
            stages: true,
            io: true,
        };
        self.interpolate_with(raw, at, allowed, params, graph, used, Some(deps), Some(io))
    }

    #[allow(clippy::too_many_arguments)]
    fn interpolate(
        &mut self,
        raw: &str,
        at: &[&str],
        allowed: Allowed,
        params: &BTreeMap<String, serde_json::Value>,
        graph: Option<&HashMap<&str, &BTreeMap<String, String>>>,
        used: &mut BTreeMap<String, serde_json::Value>,
        deps: Option<&mut Vec<Dependency>>,
    ) -> Option<String> {
        self.interpolate_with(raw, at, allowed, params, graph, used, deps, None)
    }

    /// Replaces every reference in `raw`; reports each bad one at its own position.
    #[allow(clippy::too_many_arguments)]
    fn interpolate_with(
        &mut self,
        raw: &str,
        at: &[&str],
        allowed: Allowed,
        params: &BTreeMap<String, serde_json::Value>,
        graph: Option<&HashMap<&str, &BTreeMap<String, String>>>,
        used: &mut BTreeMap<String, serde_json::Value>,
        mut deps: Option<&mut Vec<Dependency>>,
        io: Option<&StageIo<'_>>,
    ) -> Option<String> {
        let base = self.map.value_pos(at);
        let segments = match template::parse(raw) {
            Ok(s) => s,
            Err(e) => {
                let pos = self.locate(base, &raw[e.offset..e.offset + e.len]);
                self.error_w(pos, e.len, e.message, e.hint);
                return None;
            }
        };
        let mut out = String::new();
        let mut ok = true;
        for seg in segments {
            let (target, start, end) = match seg {
                Segment::Text(t) => {
                    out.push_str(&t);
                    continue;
                }
                Segment::Ref { target, start, end } => (target, start, end),
            };
            let text = &raw[start..end];
            let pos = self.locate(base, text);
            let width = text.chars().count();
            match &target {
                Ref::Param(p) => match params.get(p) {
                    None => {
                        ok = false;
                        self.error_w(
                            pos,
                            width,
                            format!("param `{p}` is not defined"),
                            suggestion(p, "params", params.keys().map(String::as_str))
                                .or(Some("declare it under `params:`".into())),
                        );
                    }
                    Some(v) => match param_text(v) {
                        Some(t) => {
                            used.insert(p.clone(), v.clone());
                            out.push_str(&t);
                        }
                        None => {
                            ok = false;
                            self.error_w(
                                pos,
                                width,
                                format!(
                                    "param `{p}` is {} and cannot be written into a string",
                                    kind_of(v)
                                ),
                                None,
                            );
                        }
                    },
                },
                Ref::StageOutput { stage, output } => {
                    if !allowed.stages {
                        ok = false;
                        self.error_w(
                            pos,
                            width,
                            format!("`{text}` cannot be used here"),
                            Some("output paths may reference only params".into()),
                        );
                        continue;
                    }
                    let Some(graph) = graph else {
                        continue;
                    };
                    match graph.get(stage.as_str()) {
                        None => {
                            ok = false;
                            self.error_w(
                                pos,
                                width,
                                format!("unknown stage `{stage}` in `{text}`"),
                                suggestion(stage, "stages", graph.keys().copied()),
                            );
                        }
                        Some(outs) => match outs.get(output) {
                            None => {
                                ok = false;
                                let hint = if outs.is_empty() {
                                    format!("stage `{stage}` declares no outputs")
                                } else {
                                    let names = || outs.keys().map(String::as_str);
                                    match closest(output, names()) {
                                        Some(best) => format!(
                                            "did you mean `{best}`? (stage `{stage}` has outputs: {})",
                                            names()
                                                .map(|k| format!("`{k}`"))
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                        None => suggestion(output, "outputs", names())
                                            .unwrap_or_default(),
                                    }
                                };
                                self.error_w(
                                    pos,
                                    width,
                                    format!("stage `{stage}` has no output `{output}`"),
                                    Some(hint),
                                );
                            }
                            Some(path) => {
                                out.push_str(path);
                                if let Some(d) = deps.as_deref_mut() {
                                    d.push(Dependency {
                                        stage: stage.clone(),
                                        output: output.clone(),
                                        pos,
                                    });
                                }
                            }
                        },
                    }
                }
                Ref::Input(name) | Ref::Output(name) => {
                    let is_input = matches!(target, Ref::Input(_));
                    let Some(io) = io.filter(|_| allowed.io) else {
                        ok = false;
                        self.error_w(
                            pos,
                            width,
                            format!("`{text}` cannot be used here"),
                            Some(
                                "`inputs.X` and `outputs.X` are available in `run` and `env`"
                                    .into(),
                            ),
                        );
                        continue;
                    };
                    let found = if is_input {
                        io.inputs.get(name).map(|i| i.path().to_owned())
                    } else {
                        io.outputs.get(name).cloned()
                    };
                    match found {
                        Some(path) => out.push_str(&path),
                        None => {
                            ok = false;
                            let (what, names): (&str, Vec<&str>) = if is_input {
                                (
                                    "input",
                                    io.inputs
                                        .keys()
                                        .map(String::as_str)
                                        .filter(|k| !k.contains('.'))
                                        .collect(),
                                )
                            } else {
                                ("output", io.outputs.keys().map(String::as_str).collect())
                            };
                            let hint = suggestion(name, &format!("{what}s"), names.iter().copied())
                                .or(Some(format!("declare it under `{what}s:`")));
                            self.error_w(
                                pos,
                                width,
                                format!("the stage has no {what} `{name}`"),
                                hint,
                            );
                        }
                    }
                }
            }
        }
        ok.then_some(out)
    }

    /// Position of `needle` in the source, searching from the start of the scalar at `base`.
    fn locate(&self, base: Pos, needle: &str) -> Pos {
        let from = self.map.offset(self.source, base);
        match self.source.get(from..).and_then(|rest| rest.find(needle)) {
            Some(i) => self.map.pos_of(self.source, from + i),
            None => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &str, expected: Result<&str, &str>) {
        let got = normalise_path(p);
        match expected {
            Ok(e) => assert_eq!(got.as_deref(), Ok(e), "{p}"),
            Err(fragment) => {
                let err = got.expect_err(p);
                assert!(err.contains(fragment), "{p}: {err}");
            }
        }
    }

    #[test]
    fn paths_are_normalised_and_confined() {
        check("a/b.txt", Ok("a/b.txt"));
        check("./a//b/", Ok("a/b"));
        check("a/../b", Ok("b"));
        check("../x", Err("outside the workspace"));
        check("a/../../x", Err("outside the workspace"));
        check("/etc/passwd", Err("absolute path"));
        check(".", Err("workspace root"));
        check(".sluice/objects", Err("belongs to the store"));
        check("", Err("empty"));
    }

    #[test]
    fn override_parsing() {
        let o: ParamOverride = "lr=0.001".parse().unwrap();
        assert_eq!(
            o,
            ParamOverride {
                name: "lr".into(),
                value: "0.001".into()
            }
        );
        let o: ParamOverride = "cmd=a=b".parse().unwrap();
        assert_eq!(o.value, "a=b");
        assert!("novalue".parse::<ParamOverride>().is_err());
        assert!("=3".parse::<ParamOverride>().is_err());
    }
}
