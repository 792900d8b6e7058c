//! The JSON Schema of workflow files, generated from the serde types in `workflow`, so that it
//! can never drift from what the parser accepts. `schemas/pipeline.schema.json` is this output.

use crate::workflow::Workflow;

/// The JSON Schema for workflow files, pretty-printed, ending with a newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Workflow);
    schema.insert(
        "$id".into(),
        "https://sluice.dev/schemas/pipeline.schema.json".into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
