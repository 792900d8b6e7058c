//! `sluice stages`: the builtin stage kinds, their outputs and their options.

use anyhow::{Result, bail};
use serde_json::Value;

use crate::catalog::catalog;
use crate::cli::StagesArgs;
use crate::exit;
use crate::report::print_json;

/// One line per option: name, type, description (from the kind's JSON Schema).
fn options(schema: &Value) -> Vec<String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let width = props.keys().map(String::len).max().unwrap_or(0);
    let types: Vec<String> = props.values().map(|p| type_name(p, schema, 0)).collect();
    let type_width = types.iter().map(String::len).max().unwrap_or(0).max(8);
    props
        .iter()
        .zip(types)
        .map(|((name, p), ty)| {
            let desc = p.get("description").and_then(Value::as_str).unwrap_or("");
            let req = if required.contains(&name.as_str()) {
                " (required)"
            } else {
                ""
            };
            let head = format!("  {name:<width$}  {ty:<type_width$} ");
            let indent = " ".repeat(head.chars().count());
            wrap(
                &format!("{desc}{req}"),
                LINE_WIDTH.saturating_sub(indent.len()).max(40),
            )
            .iter()
            .enumerate()
            .map(|(i, line)| format!("{}{line}", if i == 0 { &head } else { &indent }))
            .collect::<Vec<_>>()
            .join("\n")
        })
        .collect()
}

/// The JSON type(s) an option takes, `|`-separated, `null` left out: through `$ref`s into the
/// schema's `$defs`, and over the branches of `anyOf`/`oneOf` (an enum is a `string`).
fn type_name(p: &Value, schema: &Value, depth: usize) -> String {
    let mut found: Vec<String> = Vec::new();
    match p.get("type") {
        Some(Value::String(t)) => found.push(t.clone()),
        Some(Value::Array(ts)) => {
            found.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    }
    if found.is_empty() && depth < 8 {
        if let Some(def) = p
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|target| target.strip_prefix("#/$defs/"))
            .and_then(|name| schema.get("$defs")?.get(name))
        {
            found.push(type_name(def, schema, depth + 1));
        }
        for key in ["anyOf", "oneOf"] {
            for branch in p.get(key).and_then(Value::as_array).into_iter().flatten() {
                found.push(type_name(branch, schema, depth + 1));
            }
        }
        if p.get("enum").is_some() || p.get("const").is_some_and(Value::is_string) {
            found.push("string".to_owned());
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for name in found.iter().flat_map(|f| f.split('|')) {
        if !name.is_empty() && name != "null" && !names.contains(&name) {
            names.push(name);
        }
    }
    names.join("|")
}

/// The width `sluice stages KIND` wraps descriptions to.
const LINE_WIDTH: usize = 100;

/// `text`'s words (its line breaks taken as spaces) in lines of at most `width` characters; a
/// longer word gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

pub fn stages(args: StagesArgs) -> Result<u8> {
    let catalog = catalog();
    match &args.kind {
        None => {
            if args.json {
                let list: Vec<Value> = catalog
                    .kinds()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name(),
                            "version": k.version(),
                            "description": k.description(),
                            "outputs": k.outputs().iter().map(|o| serde_json::json!({"name": o.name, "file": o.file, "description": o.description})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&list);
                return Ok(exit::OK);
            }
            let width = catalog.kinds().map(|k| k.name().len()).max().unwrap_or(0);
            for k in catalog.kinds() {
                println!("{:<width$}  {}", k.name(), k.description());
            }
            if catalog.kinds().next().is_none() {
                println!("this sluice has no builtin stage kinds");
            }
        }
        Some(name) => {
            let Some(kind) = catalog.get(name) else {
                let names: Vec<&str> = catalog.kinds().map(|k| k.name()).collect();
                let hint = sluice_spec::suggestion(name, "stage kinds", names.iter().copied())
                    .unwrap_or_default();
                bail!("no stage kind `{name}`\n  = hint: {hint}");
            };
            if args.json {
                print_json(&kind.schema());
                return Ok(exit::OK);
            }
            println!(
                "{} (version {}): {}",
                kind.name(),
                kind.version(),
                kind.description()
            );
            println!("outputs:");
            for o in kind.outputs() {
                println!("  {:<10} {:<16} {}", o.name, o.file, o.description);
            }
            println!("options (`with:`):");
            for line in options(&kind.schema()) {
                println!("{line}");
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_words_to_the_width() {
        assert_eq!(wrap("a bb\ncc  d", 4), ["a bb", "cc d"]);
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(wrap("abcdef g", 4), ["abcdef", "g"]);
    }

    #[test]
    fn types_are_found_through_refs_and_branches() {
        let schema = serde_json::json!({
            "$defs": {
                "Mode": {"oneOf": [{"const": "a", "type": "string"}, {"const": "b"}]},
                "Rules": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "array"}]},
                "Near": {"type": "object", "properties": {}},
            },
        });
        let of = |p: serde_json::Value| type_name(&p, &schema, 0);
        assert_eq!(
            of(serde_json::json!({"$ref": "#/$defs/Rules"})),
            "string|array"
        );
        assert_eq!(
            of(serde_json::json!({"anyOf": [{"$ref": "#/$defs/Near"}, {"type": "null"}]})),
            "object"
        );
        assert_eq!(
            of(serde_json::json!({"type": ["integer", "null"]})),
            "integer"
        );
        assert_eq!(of(serde_json::json!({"enum": ["x"]})), "string");
        assert_eq!(of(serde_json::json!({"$ref": "#/$defs/Missing"})), "");
    }

    #[test]
    fn an_option_shows_its_whole_description() {
        let schema = serde_json::json!({
            "properties": {"data": {"type": "string", "description": "The examples:\nall of them."}},
            "required": ["data"],
        });
        assert_eq!(
            options(&schema),
            ["  data  string   The examples: all of them. (required)"]
        );
    }
}
