//! The gate tokenizer: text to metric names, numbers, operators and parentheses, each with its
//! 1-based column in characters.

use super::{CompareOp, GateError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TokenKind {
    Metric,
    Number(f64),
    Op(CompareOp),
    And,
    Or,
    Not,
    Open,
    Close,
    End,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) kind: TokenKind,
    pub(super) text: &'a str,
    /// 1-based, in characters.
    pub(super) column: usize,
}

impl Token<'_> {
    /// The token as an error message names it.
    pub(super) fn describe(&self) -> String {
        match self.kind {
            TokenKind::Metric => format!("metric name `{}`", self.text),
            TokenKind::Number(_) => format!("number `{}`", self.text),
            TokenKind::End => "the end of the gate".to_owned(),
            _ => format!("`{}`", self.text),
        }
    }
}

fn is_metric_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

pub(super) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, GateError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let char_at = |i: usize| chars.get(i).map(|(_, c)| *c);
    let describe_at = |i: usize| match char_at(i) {
        Some(c) => format!("`{c}`"),
        None => "the end of the gate".to_owned(),
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = char_at(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = char_at(i + 1);
        let kind = match (c, next) {
            _ if is_metric_start(c) => {
                while char_at(i).is_some_and(is_metric_char) {
                    i += 1;
                }
                match &text[byte_at(start)..byte_at(i)] {
                    "and" => TokenKind::And,
                    "or" => TokenKind::Or,
                    "not" => TokenKind::Not,
                    _ => TokenKind::Metric,
                }
            }
            _ if c.is_ascii_digit()
                || (c == '.' || c == '-') && next.is_some_and(|n| n.is_ascii_digit())
                || c == '-' && next == Some('.') =>
            {
                i = scan_number(&char_at, start).map_err(|(at, expected)| GateError::Expected {
                    expected: format!("{expected} after `{}`", &text[byte_at(start)..byte_at(at)]),
                    found: describe_at(at),
                    column: at + 1,
                })?;
                let literal = &text[byte_at(start)..byte_at(i)];
                match literal.parse::<f64>() {
                    Ok(n) if n.is_finite() => TokenKind::Number(n),
                    _ => {
                        return Err(GateError::NumberOutOfRange {
                            text: literal.to_owned(),
                            column: start + 1,
                        });
                    }
                }
            }
            ('<', Some('=')) | ('>', Some('=')) | ('=', Some('=')) | ('!', Some('=')) => {
                i += 2;
                TokenKind::Op(match c {
                    '<' => CompareOp::Le,
                    '>' => CompareOp::Ge,
                    '=' => CompareOp::Eq,
                    _ => CompareOp::Ne,
                })
            }
            ('<', _) | ('>', _) => {
                i += 1;
                TokenKind::Op(if c == '<' {
                    CompareOp::Lt
                } else {
                    CompareOp::Gt
                })
            }
            ('&', Some('&')) | ('|', Some('|')) => {
                i += 2;
                if c == '&' {
                    TokenKind::And
                } else {
                    TokenKind::Or
                }
            }
            ('!', _) => {
                i += 1;
                TokenKind::Not
            }
            ('(', _) => {
                i += 1;
                TokenKind::Open
            }
            (')', _) => {
                i += 1;
                TokenKind::Close
            }
            _ => {
                let hint = match (c, next) {
                    ('=', Some('<')) => Some("did you mean `<=`?"),
                    ('=', Some('>')) => Some("did you mean `>=`?"),
                    ('=', _) => Some("did you mean `==`?"),
                    ('&', _) => Some("did you mean `&&`?"),
                    ('|', _) => Some("did you mean `||`?"),
                    ('-', _) => Some("`-` starts a number only right before a digit"),
                    _ if c.is_alphabetic() => {
                        Some("metric names are ASCII letters, digits, `_`, `.`, `/` and `-`")
                    }
                    _ => None,
                };
                return Err(GateError::UnexpectedCharacter {
                    character: c,
                    column: i + 1,
                    hint: hint.map(str::to_owned),
                });
            }
        };
        tokens.push(Token {
            kind,
            text: &text[byte_at(start)..byte_at(i)],
            column: start + 1,
        });
    }
    tokens.push(Token {
        kind: TokenKind::End,
        text: "",
        column: chars.len() + 1,
    });
    Ok(tokens)
}

/// Scans a number literal starting at character `start`, returning the index just past it, or
/// the index where a digit was missing and what was expected there.
fn scan_number(
    char_at: &impl Fn(usize) -> Option<char>,
    start: usize,
) -> Result<usize, (usize, &'static str)> {
    let is_digit = |i: usize| char_at(i).is_some_and(|c| c.is_ascii_digit());
    let digits = |mut i: usize| {
        while is_digit(i) {
            i += 1;
        }
        i
    };
    let mut i = start;
    if char_at(i) == Some('-') {
        i += 1;
    }
    i = digits(i);
    if char_at(i) == Some('.') {
        i += 1;
        if !is_digit(i) {
            return Err((i, "a digit"));
        }
        i = digits(i);
    }
    if matches!(char_at(i), Some('e' | 'E')) {
        i += 1;
        if matches!(char_at(i), Some('+' | '-')) {
            i += 1;
        }
        if !is_digit(i) {
            return Err((i, "a digit of the exponent"));
        }
        i = digits(i);
    }
    Ok(i)
}
