//! Text normalisation shared by the stages: Unicode NFC, whitespace, and the normalised form that
//! de-duplication compares.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Unicode NFC (composed characters), so that `é` typed two ways is one string.
pub fn nfc(text: &str) -> String {
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => text.to_owned(),
        _ => text.nfc().collect(),
    }
}

/// Whitespace normalisation: line breaks become `\n`; inside a line every run of whitespace
/// (tabs, no-break spaces…) becomes one space; lines lose trailing spaces; more than one blank line
/// in a row becomes one; the text is trimmed.
pub fn whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0usize;
    let text = text.replace("\r\n", "\n");
    for line in text.split(['\n', '\r']) {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_lines > 0 {
                out.push('\n');
            }
        }
        blank_lines = 0;
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// NFC then whitespace normalisation: what `clean` does to every text field first.
pub fn normalize(text: &str) -> String {
    whitespace(&nfc(text))
}

/// The form normalised de-duplication compares: lowercase, without punctuation or symbols, words
/// separated by single spaces.
pub fn dedup_key(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkc() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else if c.is_whitespace() {
            pending_space = true;
        }
        // Punctuation and symbols vanish without splitting words: "e-mail" ~ "email".
    }
    out
}

/// Characters, as a reader counts them.
pub fn char_count(text: &str) -> usize {
    text.chars().count()
}

/// Whitespace-separated tokens.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_whitespace() {
        for (input, expected) in [
            ("  a \t b  ", "a b"),
            ("a\r\nb", "a\nb"),
            ("a  \n\n\n\n  b", "a\n\nb"),
            ("a\u{00a0}b", "a b"),
            ("\n\n", ""),
        ] {
            assert_eq!(whitespace(input), expected, "{input:?}");
        }
    }

    #[test]
    fn composes_unicode() {
        assert_eq!(nfc("e\u{0301}"), "\u{00e9}");
    }

    #[test]
    fn dedup_keys_ignore_case_punctuation_and_spacing() {
        assert_eq!(dedup_key("Hello,   World!"), "hello world");
        assert_eq!(dedup_key("hello world"), "hello world");
        assert_eq!(dedup_key("  E-mail  me? "), "email me");
    }
}
