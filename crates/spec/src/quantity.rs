//! Quantities written in workflow files: byte sizes (`512MiB`, `8GiB`, `20GB`) and durations
//! (`90s`, `30m`, `1h30m`). Parsing only.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written as an integer or with a unit: `B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB`, `TB`/`TiB` (decimal units are powers of 1000, binary ones of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("KIB", 1 << 10),
    ("K", 1 << 10),
    ("MB", 1_000_000),
    ("MIB", 1 << 20),
    ("M", 1 << 20),
    ("GB", 1_000_000_000),
    ("GIB", 1 << 30),
    ("G", 1 << 30),
    ("TB", 1_000_000_000_000),
    ("TIB", 1 << 40),
    ("T", 1 << 40),
];

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_uppercase();
        let bad = || {
            format!(
                "invalid size `{s}`: write a number and a unit, like `512MiB`, `8GiB` or `20GB`"
            )
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        let factor = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, f)| *f)
                .ok_or_else(bad)?
        };
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BINARY: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < BINARY.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 || v.fract() == 0.0 {
            write!(f, "{}{}", v as u64, BINARY[u])
        } else {
            write!(f, "{v:.1}{}", BINARY[u])
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes: an integer, or a number with a unit (`512MiB`, `8GiB`, `20GB`).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KkMmGgTt]([Ii]?[Bb])?|[Bb])?\\s*$"}
            ]
        })
    }
}

/// A duration: `500ms`, `90s`, `30m`, `2h`, `1h30m`, `1d`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    pub fn parse(s: &str) -> Result<Span, String> {
        let t = s.trim();
        let bad = || format!("invalid duration `{s}`: write it like `90s`, `30m` or `1h30m`");
        if t.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = t.parse::<f64>() {
            return Duration::try_from_secs_f64(secs)
                .map(Span)
                .map_err(|_| bad());
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let seconds = match rest[..unit_len].trim() {
                "ms" => 0.001,
                "s" | "sec" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total += Duration::try_from_secs_f64(value * seconds).map_err(|_| bad())?;
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        match (s / 3600, (s / 60) % 60, s % 60) {
            (0, 0, s) => write!(f, "{s}s"),
            (0, m, 0) => write!(f, "{m}m"),
            (0, m, s) => write!(f, "{m}m{s}s"),
            (h, 0, 0) => write!(f, "{h}h"),
            (h, m, 0) => write!(f, "{h}h{m}m"),
            (h, m, s) => write!(f, "{h}h{m}m{s}s"),
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Duration::try_from_secs_f64(n)
                .map(Span)
                .map_err(|_| serde::de::Error::custom(format!("invalid duration `{n}`"))),
            Raw::Text(t) => Span::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: `500ms`, `90s`, `30m`, `2h`, `1h30m`, `1d`, or a number of seconds.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ms|s|sec|m|min|h|d)\\s*)+$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str, expected: Option<u64>) {
        assert_eq!(ByteSize::parse(s).ok().map(|b| b.0), expected, "{s}");
    }

    #[test]
    fn sizes() {
        size("8GiB", Some(8 << 30));
        size("8 GiB", Some(8 << 30));
        size("20GB", Some(20_000_000_000));
        size("512MiB", Some(512 << 20));
        size("1.5GiB", Some(3 << 29));
        size("4g", Some(4 << 30));
        size("100", Some(100));
        size("12 parsecs", None);
        size("GiB", None);
        size("-1GiB", None);
        assert_eq!(ByteSize(8 << 30).to_string(), "8GiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5GiB");
    }

    fn span(s: &str, expected: Option<u64>) {
        assert_eq!(
            Span::parse(s).ok().map(|d| d.0.as_millis() as u64),
            expected,
            "{s}"
        );
    }

    #[test]
    fn durations() {
        span("30m", Some(1_800_000));
        span("1h30m", Some(5_400_000));
        span("90s", Some(90_000));
        span("500ms", Some(500));
        span("1.5s", Some(1500));
        span("2", Some(2000));
        span("1d", Some(86_400_000));
        span("30 minutes", None);
        span("m", None);
        span("", None);
        assert_eq!(Span(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
    }
}
