//! The fast path of `collect` for the most common source: JSON Lines of prompt / completion
//! records (`style: pairs`) whose mapped fields are top-level strings.
//!
//! A line is parsed by serde_json straight into the few fields the mapping reads, borrowing their
//! text from the file where it has no escapes; no `Value` tree, no map of every field. Whenever a
//! line is anything else (malformed JSON, not an object, a missing or null field, a number where
//! text is expected, a dotted field name), the fast path declines and the line goes through the
//! general path ([`crate::format`] and [`crate::style`]), which gives the same rows and the exact
//! same error messages as before. Every value is parsed (not skipped), so that a line the fast path
//! accepts is one the general path accepts too, with the same field values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::style::{Fields, Mapping, Style};

/// The field names a pairs mapping reads, and which of them a record may lack.
pub struct PairNames<'a> {
    id: &'a str,
    id_required: bool,
    input: &'a str,
    output: &'a str,
    label: &'a str,
    label_required: bool,
}

impl<'a> PairNames<'a> {
    /// The names for a mapping, if it is one the fast path handles.
    pub fn new(mapping: &'a Mapping) -> Option<PairNames<'a>> {
        if mapping.style != Style::Pairs {
            return None;
        }
        let Fields {
            id,
            input,
            output,
            label,
            ..
        } = &mapping.fields;
        // As `Mapping::example`: a field the user named is required, a default one is not.
        Some(PairNames {
            id: id.as_deref().unwrap_or("id"),
            id_required: id.is_some(),
            input: input.as_deref().unwrap_or("input"),
            output: output.as_deref().unwrap_or("output"),
            label: label.as_deref().unwrap_or("label"),
            label_required: label.is_some(),
        })
    }

    /// The fields of one line, or `None` when the general path must handle it.
    pub fn parse<'de>(&self, line: &'de [u8]) -> Option<Pair<'de>> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let fields = de.deserialize_map(LineVisitor { names: self }).ok()?;
        de.end().ok()?;
        // A field the record lacks: the general path either reports it or looks it up by a
        // dotted path.
        let optional = |value: Option<Text<'de>>, name: &str, required: bool| match value {
            Some(Text::Str(s)) => Some(Some(s)),
            Some(Text::Null) if !required => Some(None),
            None if !required && !name.contains('.') => Some(None),
            _ => None,
        };
        let required = |value: Option<Text<'de>>| match value {
            Some(Text::Str(s)) => Some(s),
            _ => None,
        };
        Some(Pair {
            id: optional(fields.id, self.id, self.id_required)?,
            input: required(fields.input)?,
            output: required(fields.output)?,
            label: optional(fields.label, self.label, self.label_required)?,
        })
    }
}

/// One record's mapped fields.
pub struct Pair<'de> {
    pub id: Option<Cow<'de, str>>,
    pub input: Cow<'de, str>,
    pub output: Cow<'de, str>,
    pub label: Option<Cow<'de, str>>,
}

/// A mapped field's value as the fast path sees it.
enum Text<'de> {
    Str(Cow<'de, str>),
    Null,
    /// A number, boolean, array or object: the general path decides what it means.
    Other,
}

#[derive(Default)]
struct LineFields<'de> {
    id: Option<Text<'de>>,
    input: Option<Text<'de>>,
    output: Option<Text<'de>>,
    label: Option<Text<'de>>,
}

struct LineVisitor<'n, 'a> {
    names: &'n PairNames<'a>,
}

impl<'de> Visitor<'de> for LineVisitor<'_, '_> {
    type Value = LineFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineFields<'de>, A::Error> {
        let mut fields = LineFields::default();
        let names = self.names;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.0;
            // A later duplicate key wins, as it does in a serde_json map.
            let slot = if key == names.input {
                &mut fields.input
            } else if key == names.output {
                &mut fields.output
            } else if key == names.id {
                &mut fields.id
            } else if key == names.label {
                &mut fields.label
            } else {
                map.next_value::<Checked>()?;
                continue;
            };
            *slot = Some(map.next_value::<Text<'de>>()?);
        }
        Ok(fields)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CheckedVisitor.visit_seq(seq).map(|_| Text::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CheckedVisitor.visit_map(map).map(|_| Text::Other)
    }
}

/// A value that is not kept but is parsed all the same (strings decoded, escapes and surrogates
/// checked), as building a `Value` would: `serde::de::IgnoredAny` alone would let through strings that
/// serde_json rejects when it decodes them.
struct Checked;

impl<'de> de::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_string<E: de::Error>(self, _: String) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests;
