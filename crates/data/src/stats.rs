//! The `stats.json` output every data stage writes beside its data: rows in, rows out, and what
//! each rule did, in the order the rules ran. Pretty JSON with sorted keys and a trailing newline,
//! so that it diffs well and its digest is stable.

use std::path::Path;

use serde_json::{Map, Value};
use sluice_stage::StageError;

/// What one rule did: how many rows it removed, changed or added.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleCount {
    pub rule: String,
    /// `removed`, `changed` or `added`.
    pub effect: &'static str,
    pub count: u64,
    /// Extra keys that say which instance of the rule this is (`pattern`, `field`).
    pub detail: Vec<(&'static str, Value)>,
}

impl RuleCount {
    pub fn removed(rule: impl Into<String>, count: usize) -> RuleCount {
        RuleCount {
            rule: rule.into(),
            effect: "removed",
            count: count as u64,
            detail: Vec::new(),
        }
    }

    pub fn changed(rule: impl Into<String>, count: usize) -> RuleCount {
        RuleCount {
            rule: rule.into(),
            effect: "changed",
            count: count as u64,
            detail: Vec::new(),
        }
    }

    pub fn added(rule: impl Into<String>, count: usize) -> RuleCount {
        RuleCount {
            rule: rule.into(),
            effect: "added",
            count: count as u64,
            detail: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> RuleCount {
        self.detail.push((key, value.into()));
        self
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("rule".into(), self.rule.clone().into());
        m.insert(self.effect.into(), self.count.into());
        for (k, v) in &self.detail {
            m.insert((*k).into(), v.clone());
        }
        Value::Object(m)
    }
}

/// The content of a `stats.json`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    fields: Map<String, Value>,
    rules: Vec<RuleCount>,
}

impl Stats {
    pub fn new(rows_in: usize, rows_out: usize) -> Stats {
        let mut stats = Stats::default();
        stats.set("rows_in", rows_in);
        stats.set("rows_out", rows_out);
        stats
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Stats {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    pub fn rule(&mut self, rule: RuleCount) -> &mut Stats {
        self.rules.push(rule);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        if !self.rules.is_empty() {
            m.insert(
                "rules".into(),
                Value::Array(self.rules.iter().map(RuleCount::to_json).collect()),
            );
        }
        sorted(Value::Object(m))
    }

    /// The file's bytes.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_json()).expect("stats are plain JSON");
        text.push('\n');
        text
    }

    pub fn write(&self, path: &Path) -> Result<(), StageError> {
        std::fs::write(path, self.render())
            .map_err(|e| StageError::failed(format!("cannot write {}: {e}", path.display())))
    }
}

/// Sorts object keys at every level, whatever map type serde_json was built with.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_with_trailing_newline() {
        let mut stats = Stats::new(3, 2);
        stats
            .set("b", 1)
            .rule(RuleCount::removed("dedup_exact", 1))
            .rule(RuleCount::changed("strip", 2).with("pattern", "x"));
        assert_eq!(
            stats.render(),
            r#"{
  "b": 1,
  "rows_in": 3,
  "rows_out": 2,
  "rules": [
    {
      "removed": 1,
      "rule": "dedup_exact"
    },
    {
      "changed": 2,
      "pattern": "x",
      "rule": "strip"
    }
  ]
}
"#
        );
    }
}
