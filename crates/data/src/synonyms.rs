//! Synonym tables for EDA's synonym replacement and insertion.
//!
//! A table is a text file with one group of interchangeable words per line, separated by commas
//! (`buy, purchase, order`); every word of a group is a synonym of every other. Blank lines and
//! lines starting with `#` are ignored; words are matched lowercase. A `.json` file may instead
//! map each word to its synonyms (`{"buy": ["purchase", "order"]}`), one way only. A small
//! English table ships with sluice (`synonyms.txt` beside this file) and is used when the
//! workflow names none.

use std::collections::HashMap;

/// The table shipped with sluice.
const DEFAULT: &str = include_str!("synonyms.txt");

/// Word → synonyms, each list in the order the table gives it.
#[derive(Clone, Debug, Default)]
pub struct Synonyms {
    words: HashMap<String, Vec<String>>,
}

impl Synonyms {
    pub fn builtin() -> Synonyms {
        Synonyms::parse_groups(DEFAULT)
    }

    /// Reads a table file's text; `json` selects the map form.
    pub fn parse(text: &str, json: bool) -> Result<Synonyms, String> {
        if !json {
            return Ok(Synonyms::parse_groups(text));
        }
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let mut table = Synonyms::default();
        for (word, synonyms) in map {
            let list = synonyms
                .as_array()
                .ok_or_else(|| format!("`{word}`: expected a list of synonyms"))?;
            for s in list {
                let s = s
                    .as_str()
                    .ok_or_else(|| format!("`{word}`: expected a list of strings"))?;
                table.add(&word, s);
            }
        }
        Ok(table)
    }

    fn parse_groups(text: &str) -> Synonyms {
        let mut table = Synonyms::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let group: Vec<&str> = line
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect();
            for a in &group {
                for b in &group {
                    table.add(a, b);
                }
            }
        }
        table
    }

    fn add(&mut self, word: &str, synonym: &str) {
        let word = word.to_lowercase();
        let synonym = synonym.to_lowercase();
        if word == synonym {
            return;
        }
        let list = self.words.entry(word).or_default();
        if !list.contains(&synonym) {
            list.push(synonym);
        }
    }

    /// The synonyms of a lowercase word.
    pub fn of(&self, word: &str) -> &[String] {
        self.words.get(word).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_symmetric() {
        let t = Synonyms::parse("# comment\nbuy, Purchase ,order\n\nfast, quick\n", false).unwrap();
        assert_eq!(t.of("purchase"), ["buy", "order"]);
        assert_eq!(t.of("quick"), ["fast"]);
        assert!(t.of("slow").is_empty());
    }

    #[test]
    fn json_maps_are_one_way() {
        let t = Synonyms::parse(r#"{"big": ["large", "huge"]}"#, true).unwrap();
        assert_eq!(t.of("big"), ["large", "huge"]);
        assert!(t.of("large").is_empty());
        assert!(Synonyms::parse(r#"{"big": "large"}"#, true).is_err());
    }

    #[test]
    fn builtin_table_is_not_empty() {
        let t = Synonyms::builtin();
        assert!(!t.of("help").is_empty());
    }
}
