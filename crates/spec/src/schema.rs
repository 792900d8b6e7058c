//! The JSON Schema of workflow files, generated from the serde types in `workflow`, so that it
//! can never drift from what the parser accepts, with the `with:` options of every builtin stage
//! kind spliced in. `schemas/pipeline.schema.json` is this output for the binary's kinds.

use serde_json::{Map, Value, json};

use crate::kinds::KindInfo;
use crate::workflow::Workflow;

/// Rewrites `#/$defs/X` references to `#/$defs/PREFIX.X`.
fn prefix_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "$ref"
                    && let Value::String(r) = v
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *r = format!("#/$defs/{prefix}.{name}");
                } else {
                    prefix_refs(v, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| prefix_refs(v, prefix)),
        _ => {}
    }
}

/// The schema of a value written as a reference (`${{ params.seed }}`), allowed for every option.
fn reference() -> Value {
    json!({"type": "string", "pattern": "^\\s*\\$\\{\\{[^}]*\\}\\}\\s*$"})
}

/// Lets every option of a kind's schema be written as a reference instead of its value: each
/// property, item and additional-property schema becomes `anyOf: [itself, reference]`.
fn allow_references(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            for child in children.values_mut() {
                allow_references(child);
                if key == "properties" {
                    wrap(child);
                }
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get_mut(key)
            && child.is_object()
        {
            allow_references(child);
            wrap(child);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            items.iter_mut().for_each(allow_references);
        }
    }
}

fn wrap(schema: &mut Value) {
    let inner = std::mem::take(schema);
    let description = inner.get("description").cloned();
    let mut wrapped = json!({"anyOf": [inner, reference()]});
    if let (Some(d), Value::Object(w)) = (description, &mut wrapped) {
        w.insert("description".into(), d);
    }
    *schema = wrapped;
}

/// The JSON Schema for workflow files, pretty-printed, ending with a newline.
pub fn json_schema(kinds: &[KindInfo]) -> String {
    let schema = schemars::schema_for!(Workflow);
    let mut root = serde_json::to_value(&schema).unwrap_or(Value::Null);
    let Some(obj) = root.as_object_mut() else {
        return String::new();
    };
    obj.insert(
        "$id".into(),
        "https://sluice.dev/schemas/pipeline.schema.json".into(),
    );
    let mut defs: Map<String, Value> = obj
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut conditions = Vec::new();
    for kind in kinds {
        let mut with = kind.schema.clone();
        allow_references(&mut with);
        prefix_refs(&mut with, &kind.name);
        if let Some(w) = with.as_object_mut() {
            if let Some(Value::Object(nested)) = w.remove("$defs") {
                for (name, def) in nested {
                    defs.insert(format!("{}.{name}", kind.name), def);
                }
            }
            w.remove("$schema");
            w.insert("description".into(), kind.description.clone().into());
        }
        defs.insert(format!("{}.with", kind.name), with);
        let outputs: Vec<&str> = kind.outputs.iter().map(|o| o.name.as_str()).collect();
        conditions.push(json!({
            "if": {"properties": {"uses": {"const": kind.name}}, "required": ["uses"]},
            "then": {"properties": {
                "with": {"$ref": format!("#/$defs/{}.with", kind.name)},
                "outputs": {"propertyNames": {"enum": outputs}}
            }}
        }));
    }
    if let Some(Value::Object(stage)) = defs.get_mut("Stage") {
        stage.insert(
            "oneOf".into(),
            json!([{"required": ["run"]}, {"required": ["uses"]}]),
        );
        if !kinds.is_empty() {
            let names: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
            if let Some(Value::Object(props)) = stage.get_mut("properties")
                && let Some(Value::Object(uses)) = props.get_mut("uses")
            {
                uses.insert("enum".into(), json!(names));
            }
            stage.insert("allOf".into(), Value::Array(conditions));
        }
    }
    obj.insert("$defs".into(), Value::Object(defs));
    let mut text = serde_json::to_string_pretty(&root).unwrap_or_default();
    text.push('\n');
    text
}
