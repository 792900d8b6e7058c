//! Answer-matching metrics of the SQuAD evaluation scripts: answer normalisation, exact match and
//! token F1, each also over several acceptable references.
//!
//! Normalisation follows `normalize_answer` of the official SQuAD v1.1 `evaluate-v1.1.py` step by
//! step: lower-case; drop every character of Python's `string.punctuation` (the 32 ASCII
//! punctuation characters, nothing outside ASCII); replace the articles matched by
//! `\b(a|an|the)\b` with a space; split on whitespace and join with single spaces. Word characters
//! for `\b` are Rust's alphanumerics and `_`, which agree with Python's `\w` except for a few
//! combining marks of non-Latin scripts. Whitespace is Python's `str.split()` set.
//!
//! One deliberate departure from v1.1: [`token_f1`] of two answers that are both empty after
//! normalisation is 1.0 (as in SQuAD v2.0's `compute_f1`), where v1.1 returns 0.

/// `answer` normalised as SQuAD does before comparing: lower-cased, without ASCII punctuation,
/// without the articles `a`, `an` and `the`, and with whitespace collapsed to single spaces.
pub fn normalize_answer(answer: &str) -> String {
    let lower: Vec<char> = answer
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let without_articles = remove_articles(&lower);
    without_articles
        .split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1.0 if `prediction` and `reference` are equal after [`normalize_answer`], else 0.0.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    if normalize_answer(prediction) == normalize_answer(reference) {
        1.0
    } else {
        0.0
    }
}

/// SQuAD's token F1: the harmonic mean of precision and recall of the normalised prediction's
/// tokens against the reference's, counting each shared token as often as it occurs in both
/// (Python's `Counter` intersection). Both empty gives 1.0, exactly one empty gives 0.0.
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let prediction = normalize_answer(prediction);
    let reference = normalize_answer(reference);
    let predicted: Vec<&str> = prediction.split(' ').filter(|t| !t.is_empty()).collect();
    let expected: Vec<&str> = reference.split(' ').filter(|t| !t.is_empty()).collect();
    if predicted.is_empty() || expected.is_empty() {
        return if predicted.is_empty() && expected.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut remaining = std::collections::HashMap::<&str, usize>::new();
    for token in &expected {
        *remaining.entry(token).or_default() += 1;
    }
    let mut same = 0usize;
    for token in &predicted {
        if let Some(n) = remaining.get_mut(token)
            && *n > 0
        {
            *n -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    // The same operations in the same order as the Python script, so the floats agree exactly.
    let precision = same as f64 / predicted.len() as f64;
    let recall = same as f64 / expected.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// The best [`exact_match`] of `prediction` against any of `references`; 0.0 when there are none.
pub fn max_exact_match<S: AsRef<str>>(prediction: &str, references: &[S]) -> f64 {
    max_over(references, |r| exact_match(prediction, r))
}

/// The best [`token_f1`] of `prediction` against any of `references`; 0.0 when there are none.
pub fn max_token_f1<S: AsRef<str>>(prediction: &str, references: &[S]) -> f64 {
    max_over(references, |r| token_f1(prediction, r))
}

fn max_over<S: AsRef<str>>(references: &[S], score: impl Fn(&str) -> f64) -> f64 {
    references
        .iter()
        .map(|r| score(r.as_ref()))
        .fold(0.0, f64::max)
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`: boundaries are judged on the original characters, and
/// the alternatives are tried in order at each position, as Python's backtracking engine does.
fn remove_articles(text: &[char]) -> String {
    const ARTICLES: [&str; 3] = ["a", "an", "the"];
    let is_word = |i: usize| text.get(i).is_some_and(|c| is_word_char(*c));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let at_boundary = i == 0 || !is_word(i - 1);
        let article = ARTICLES.iter().find(|a| {
            at_boundary
                && text
                    .get(i..i + a.len())
                    .is_some_and(|t| a.chars().eq(t.iter().copied()))
                && !is_word(i + a.len())
        });
        match article {
            Some(a) => {
                out.push(' ');
                i += a.len();
            }
            None => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    out
}

/// Python's `\w` on `str` patterns: alphanumerics and the underscore.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `str.isspace`: Unicode whitespace plus the four ASCII information separators.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_normalize(input: &str, expected: &str) {
        assert_eq!(
            normalize_answer(input),
            expected,
            "normalize_answer({input:?})"
        );
    }

    /// `expected` is `(exact match, token F1)`.
    fn check(prediction: &str, reference: &str, expected: (f64, f64)) {
        let actual = (
            exact_match(prediction, reference),
            token_f1(prediction, reference),
        );
        assert!(
            (actual.0 - expected.0).abs() < 1e-12 && (actual.1 - expected.1).abs() < 1e-12,
            "{prediction:?} vs {reference:?}: got {actual:?}, expected {expected:?}"
        );
    }

    #[test]
    fn normalisation_follows_the_squad_script() {
        check_normalize("The Eiffel Tower!", "eiffel tower");
        check_normalize("  an   Apple,  a  day ", "apple day");
        // Articles are removed as whole words only.
        check_normalize("Theatre another banana", "theatre another banana");
        check_normalize("a", "");
        check_normalize("A-an the", "aan");
        // Punctuation goes before articles, so `a.` and `(the)` become articles.
        check_normalize("(the) end a.", "end");
        // Punctuation is removed without leaving a space: `well-known` joins up.
        check_normalize("well-known", "wellknown");
        check_normalize("U.S.A.", "usa");
        // Only ASCII punctuation is punctuation; `’` is a non-word character, so `\b` sees the
        // `a` in `a’s` as a whole word, as Python does.
        check_normalize("a’s «the» café", "’s « » café");
        // `_` is punctuation; digits are word characters: no boundary, no article.
        check_normalize("the_a a1 1a", "thea a1 1a");
        check_normalize("tab\tnew\nline\u{a0}nbsp\u{1f}us", "tab new line nbsp us");
        check_normalize("ÀN THE Σ", "àn σ");
        check_normalize("", "");
    }

    #[test]
    fn exact_match_and_f1_against_worked_examples() {
        check("the Eiffel Tower!", "Eiffel tower", (1.0, 1.0));
        // "cat sat on mat" vs "cat is on mat": 3 shared tokens of 4 and 4.
        check("a cat sat on the mat", "the cat is on the mat", (0.0, 0.75));
        // "1976" vs "in 1976": precision 1, recall 1/2, F1 2/3.
        check("1976", "in 1976", (0.0, 2.0 / 3.0));
        // Counter intersection: "the" is an article, so "new new york" vs "new york":
        // shared = min(2,1) + min(1,1) = 2, precision 2/3, recall 1, F1 0.8.
        check("new new york", "the new york", (0.0, 0.8));
        check("Denver Broncos", "Carolina Panthers", (0.0, 0.0));
        // Both empty after normalisation, and one of them empty.
        check("The!", "a", (1.0, 1.0));
        check("", "an answer", (0.0, 0.0));
        check("an answer", "...", (0.0, 0.0));
        // Order does not matter to F1 but does to EM.
        check("york new", "new york", (0.0, 1.0));
    }

    #[test]
    fn many_references_take_the_best() {
        let references = ["Denver Broncos", "The Broncos", "Broncos"];
        assert_eq!(max_exact_match("broncos", &references), 1.0);
        assert_eq!(max_token_f1("the denver", &references), 2.0 / 3.0);
        assert_eq!(max_exact_match("x", &[] as &[&str]), 0.0);
        assert_eq!(max_token_f1("x", &Vec::<String>::new()), 0.0);
    }
}
