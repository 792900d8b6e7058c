//! Text normalisation shared by the stages: Unicode NFC, whitespace, and the normalised form that
//! de-duplication compares.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

/// Unicode NFC (composed characters), so that `é` typed two ways is one string.
#[cfg(test)]
pub fn nfc(text: &str) -> String {
    nfc_cow(text).into_owned()
}

/// NFC, borrowing `text` when it is already in NFC (ASCII always is).
fn nfc_cow(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfc().collect()),
    }
}

/// Whether [`whitespace`] would return `text` unchanged: no whitespace at either end, only
/// single spaces and `\n` inside, no space next to a line break, at most one blank line in a row.
fn whitespace_is_normal(text: &str) -> bool {
    let bytes = text.as_bytes();
    if memchr::memchr(b'\n', bytes).is_some() {
        // Lines (a few percent of texts): character by character.
        return whitespace_is_normal_slow(text);
    }
    // One line: no space at either end, no other ASCII whitespace, no two spaces in a row, no
    // Unicode whitespace. Each is one vectorised scan, where most texts are already normal.
    !matches!(bytes.first(), Some(b' '))
        && !matches!(bytes.last(), Some(b' '))
        && memchr::memchr3(b'\t', 0x0b, 0x0c, bytes).is_none()
        && memchr::memchr(b'\r', bytes).is_none()
        && memchr::memmem::find(bytes, b"  ").is_none()
        && (bytes.is_ascii() || !has_unicode_whitespace(text))
}

/// Whether `text` has whitespace outside ASCII (no-break and typographic spaces, line
/// separators…). All of it is encoded with a first byte of 0xC2, 0xE1, 0xE2 or 0xE3, so only the
/// characters that start with one of those are looked at.
fn has_unicode_whitespace(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr3_iter(0xC2, 0xE1, 0xE2, bytes)
        .chain(memchr::memchr_iter(0xE3, bytes))
        // These bytes only ever start a character, so `at` is a character boundary.
        .any(|at| text[at..].chars().next().is_some_and(char::is_whitespace))
}

fn whitespace_is_normal_slow(text: &str) -> bool {
    if text.is_ascii() {
        // Byte by byte: the same test without decoding UTF-8.
        is_normal(text.bytes().map(char::from))
    } else {
        is_normal(text.chars())
    }
}

#[inline(always)]
fn is_normal(chars: impl Iterator<Item = char>) -> bool {
    let mut prev: Option<char> = None;
    let mut newlines = 0usize;
    for c in chars {
        match c {
            '\n' => {
                if prev.is_none() || prev == Some(' ') {
                    return false;
                }
                newlines += 1;
                if newlines > 2 {
                    return false;
                }
            }
            ' ' => {
                if prev.is_none() || prev == Some(' ') || prev == Some('\n') {
                    return false;
                }
                newlines = 0;
            }
            c if c.is_whitespace() => return false,
            _ => newlines = 0,
        }
        prev = Some(c);
    }
    !matches!(prev, Some(' ' | '\n'))
}

/// [`whitespace`], borrowing `text` when there is nothing to change.
pub fn whitespace_cow(text: &str) -> Cow<'_, str> {
    if whitespace_is_normal(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(whitespace(text))
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

/// NFC then whitespace normalisation: what `clean` does to every text field first; borrows
/// `text` when it is already normalised.
pub fn normalize_cow(text: &str) -> Cow<'_, str> {
    match nfc_cow(text) {
        Cow::Borrowed(t) => whitespace_cow(t),
        Cow::Owned(t) => Cow::Owned(whitespace_cow(&t).into_owned()),
    }
}

/// The form normalised de-duplication compares: lowercase, without punctuation or symbols, words
/// separated by single spaces.
pub fn dedup_key(text: &str) -> String {
    let mut out = String::new();
    dedup_key_into(text, &mut out);
    out
}

/// [`dedup_key`] into `out` (cleared first), so that a caller can reuse one buffer.
pub fn dedup_key_into(text: &str, out: &mut String) {
    out.clear();
    out.reserve(text.len());
    if text.is_ascii() {
        // NFKC leaves ASCII as it is, and its lowercase is ASCII's.
        ascii_key_into(text.as_bytes(), out);
        return;
    }
    if is_nfkc_by_runs(text) {
        mixed_key_into(text, out);
    } else {
        key_chars(text.nfkc(), out);
    }
}

/// Whether the NFKC quick check answers yes for `text`, checking only its runs of non-ASCII
/// characters: an ASCII character is always allowed and has combining class 0, which is where
/// the check starts a run anyway, so each run is checked on its own.
fn is_nfkc_by_runs(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(start) = bytes[at..].iter().position(|b| !b.is_ascii()) {
        let start = at + start;
        let end = bytes[start..]
            .iter()
            .position(u8::is_ascii)
            .map_or(bytes.len(), |n| start + n);
        // A run starts and ends at an ASCII byte (or an end), so at character boundaries.
        if is_nfkc_quick(text[start..end].chars()) != IsNormalized::Yes {
            return false;
        }
        at = end;
    }
    true
}

/// [`key_chars`] of text already in NFKC that is mostly ASCII: ASCII bytes through the
/// [`KEY_BYTES`] table, only the other characters decoded.
fn mixed_key_into(text: &str, out: &mut String) {
    let mut pending_space = false;
    let mut rest = text;
    while let Some(&b) = rest.as_bytes().first() {
        if b.is_ascii() {
            match KEY_BYTES[usize::from(b)] {
                DROP => {}
                b' ' => pending_space = true,
                k => {
                    if pending_space && !out.is_empty() {
                        out.push(' ');
                    }
                    pending_space = false;
                    out.push(char::from(k));
                }
            }
            rest = &rest[1..];
        } else {
            let c = rest
                .chars()
                .next()
                .expect("a non-empty string has a character");
            key_char(c, &mut pending_space, out);
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// [`dedup_key_into`] for ASCII text, without a branch per byte: every byte is written at the end
/// of the key, which grows past letters, digits, and a space whose last letter, digit or space
/// before it is not a space (nor the start); a space left at the end is dropped. What decides a
/// byte depends on the bytes before it only through the last byte that is not punctuation, never
/// through what was kept, so that bytes do not wait on each other.
fn ascii_key_into(text: &[u8], out: &mut String) {
    let mut key = std::mem::take(out).into_bytes();
    key.clear();
    key.resize(text.len(), 0);
    let mut len = 0usize;
    // The last byte that is not punctuation; a space at the start, so that leading whitespace
    // is never kept.
    let mut last = b' ';
    for &b in text {
        let k = KEY_BYTES[usize::from(b & 0x7f)];
        let kept = (k != DROP) & !((k == b' ') & (last == b' '));
        key[len] = k;
        len += usize::from(kept);
        last = if k == DROP { last } else { k };
    }
    key.truncate(len);
    if key.last() == Some(&b' ') {
        key.pop();
    }
    *out = String::from_utf8(key).expect("an ASCII key is UTF-8");
}

/// What the dedup key makes of each ASCII byte: letters and digits their lowercase, whitespace
/// a space, punctuation, symbols and control characters [`DROP`].
const KEY_BYTES: [u8; 128] = key_bytes();
const DROP: u8 = 0;

const fn key_bytes() -> [u8; 128] {
    let mut table = [DROP; 128];
    let mut b = 0u8;
    while b < 128 {
        table[b as usize] = if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else if matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            b' '
        } else {
            DROP
        };
        b += 1;
    }
    table
}

fn key_chars(chars: impl Iterator<Item = char>, out: &mut String) {
    let mut pending_space = false;
    for c in chars {
        key_char(c, &mut pending_space, out);
    }
}

#[inline]
fn key_char(c: char, pending_space: &mut bool, out: &mut String) {
    if c.is_alphanumeric() {
        if *pending_space && !out.is_empty() {
            out.push(' ');
        }
        *pending_space = false;
        out.extend(c.to_lowercase());
    } else if c.is_whitespace() {
        *pending_space = true;
    }
    // Punctuation and symbols vanish without splitting words: "e-mail" ~ "email".
}

/// Characters, as a reader counts them.
pub fn char_count(text: &str) -> usize {
    text.chars().count()
}

/// Whether `text` has at least `limit` characters. A character is 1 to 4 bytes of UTF-8, so the
/// byte length alone answers for most texts; only those near the limit are counted.
pub fn chars_at_least(text: &str, limit: usize) -> bool {
    let bytes = text.len();
    if bytes < limit {
        false
    } else if bytes / 4 >= limit {
        true
    } else {
        char_count(text) >= limit
    }
}

/// Whether `text` has at most `limit` characters, counting only where the byte length cannot
/// tell (see [`chars_at_least`]).
pub fn chars_at_most(text: &str, limit: usize) -> bool {
    let bytes = text.len();
    if bytes <= limit {
        true
    } else if bytes / 4 > limit {
        false
    } else {
        char_count(text) <= limit
    }
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

    /// The byte-length shortcuts give what counting gives, at every limit around the length, for
    /// texts of 1-, 2-, 3- and 4-byte characters and mixes of them.
    #[test]
    fn char_bounds_agree_with_counting() {
        for text in [
            "",
            "a",
            "abcd",
            "é",
            "éé",
            "aé€",
            "€€€",
            "𝄞",
            "𝄞𝄞a",
            "a𝄞é€ b",
        ] {
            let text = text.repeat(3);
            let chars = char_count(&text);
            for limit in 0..=text.len() + 2 {
                assert_eq!(
                    chars_at_least(&text, limit),
                    chars >= limit,
                    "{text} {limit}"
                );
                assert_eq!(
                    chars_at_most(&text, limit),
                    chars <= limit,
                    "{text} {limit}"
                );
            }
        }
    }

    #[test]
    fn fast_paths_agree_with_the_slow_ones() {
        let samples = [
            "",
            " ",
            "\n",
            "a",
            "a b",
            "a  b",
            "a \nb",
            "a\n b",
            "a\nb",
            "a\n\nb",
            "a\n\n\nb",
            "a\n \nb",
            "a\tb",
            "a\rb",
            "a\u{000b}b",
            "a\u{00a0}b",
            "a\u{2003}b",
            "a\u{0085}b",
            " a",
            "a ",
            "a\n",
            "\na",
            "Hello, World! E-mail me? $AAPL 3.5%",
            "caf\u{00e9} na\u{0131}ve \u{00c9}COLE",
            "cafe\u{0301}",
            "\u{FB01}ne \u{2460} \u{FF21}BC",
            "\u{212B}ngstr\u{00F6}m",
            "STRASSE stra\u{00DF}e \u{0130}stanbul",
            "x\u{001c}y\u{001f}z",
            // Unicode whitespace and its neighbours, which share first bytes with it.
            "a\u{3000}b",
            "a\u{1680}b",
            "a\u{202f}b",
            "a\u{205f}b",
            "a\u{2028}b",
            "\u{2019}quoted\u{2019} \u{00e9}t\u{00e9} \u{3001}",
            "\u{00a0}a",
            "a\u{00a0}",
            "\u{2003}",
            "tab\tand\u{000c}feed",
            "x\u{007f}y",
            "  lead",
            "trail  ",
            "one two  three",
            "line\r\nbreak",
            "a\n\u{00a0}b",
            // Words of punctuation only, at either end and inside.
            "a - b",
            "- a",
            " - a",
            "a -",
            "a - ",
            "-- -- a -- b -- --",
            "a -  - b",
            " ",
            "-",
            "a,b ,c , d",
            // Mostly ASCII with some other characters, in NFKC and not.
            "Caf\u{00e9} au lait \u{2014} tr\u{00e8}s bien!",
            "\u{00c0}B  c",
            "cafe\u{0301} ok",
            "\u{0301}start",
            "the \u{fb01}le",
            "\u{01c4}ebt and \u{0130}stanbul",
            "Stra\u{00df}e, ok",
            "x\u{2003}y\u{00a0}z",
            "\u{65e5}\u{672c}\u{8a9e} text",
            "\u{ff11}\u{ff12}\u{ff13} go",
            "a\u{0308}\u{0301}b",
            "\u{00e9}-\u{00e9} \u{2014} -",
        ];
        for s in samples {
            let slow_ws = whitespace(s);
            assert_eq!(whitespace_cow(s), slow_ws, "{s:?}");
            assert_eq!(
                whitespace_is_normal(s),
                slow_ws == s,
                "fast path misjudged {s:?}"
            );
            let slow_norm = whitespace(&s.nfc().collect::<String>());
            assert_eq!(normalize_cow(s), slow_norm, "{s:?}");
            assert_eq!(nfc(s), s.nfc().collect::<String>(), "{s:?}");
            let mut slow_key = String::new();
            key_chars(s.nfkc(), &mut slow_key);
            assert_eq!(dedup_key(s), slow_key, "{s:?}");
        }
    }

    /// The branchless ASCII key against the character-by-character one, on strings of letters,
    /// digits, spaces, other whitespace and punctuation in every mix and position.
    #[test]
    fn ascii_keys_are_keys_by_the_character() {
        let alphabet = b"aZ9 ,.-?$\t\n\r  xyQ";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut key = String::new();
        for len in 0..200 {
            for _ in 0..40 {
                let text: String = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        char::from(alphabet[(state % alphabet.len() as u64) as usize])
                    })
                    .collect();
                let mut expected = String::new();
                key_chars(text.chars(), &mut expected);
                ascii_key_into(text.as_bytes(), &mut key);
                assert_eq!(key, expected, "{text:?}");
            }
        }
        for text in [
            "Hi, how do I reset it?  ok",
            "        ",
            "a-b-c-d-e-f-g-h-i",
            "x  ,  ,y",
        ] {
            assert_eq!(dedup_key(text), {
                let mut k = String::new();
                key_chars(text.chars(), &mut k);
                k
            });
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
