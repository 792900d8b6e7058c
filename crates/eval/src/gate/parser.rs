//! Recursive descent over the tokens, one function per precedence level of the grammar in
//! [`super`]. Nesting depth is counted so that no input can exhaust the stack.

use super::token::{Token, TokenKind, tokenize};
use super::{CompareOp, Expr, GateError, MAX_NESTING};

/// The expression of a whole gate.
pub(super) fn parse(text: &str) -> Result<Expr, GateError> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        pos: 0,
        depth: 0,
    };
    let expr = parser.parse_or()?;
    if parser.peek().kind != TokenKind::End {
        return Err(parser.expected("`&&`, `||` or the end of the gate"));
    }
    Ok(expr)
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// Open `(` and `!` around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        // The tokenizer always ends the list with `End`, and `bump` never passes it.
        self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.kind != TokenKind::End {
            self.pos += 1;
        }
        token
    }

    fn expected(&self, expected: impl Into<String>) -> GateError {
        let found = self.peek();
        GateError::Expected {
            expected: expected.into(),
            found: found.describe(),
            column: found.column,
        }
    }

    fn nest(&mut self, at: Token<'a>) -> Result<(), GateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(GateError::TooDeep { column: at.column });
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, GateError> {
        let mut items = vec![self.parse_and()?];
        while self.peek().kind == TokenKind::Or {
            self.bump();
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Any(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, GateError> {
        let mut items = vec![self.parse_unary()?];
        while self.peek().kind == TokenKind::And {
            self.bump();
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::All(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, GateError> {
        if self.peek().kind != TokenKind::Not {
            return self.parse_primary();
        }
        let not = self.bump();
        self.nest(not)?;
        let inner = self.parse_unary()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn parse_primary(&mut self) -> Result<Expr, GateError> {
        let token = self.peek();
        match token.kind {
            TokenKind::Open => {
                self.bump();
                self.nest(token)?;
                let inner = self.parse_or()?;
                if self.peek().kind != TokenKind::Close {
                    return Err(self.expected(format!(
                        "`&&`, `||` or `)` to close the `(` at column {}",
                        token.column
                    )));
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Metric => {
                self.bump();
                let op = self.comparison_op(token)?;
                let number = self.peek();
                let TokenKind::Number(threshold) = number.kind else {
                    return Err(self.expected(format!("a number after `{op}`")));
                };
                self.bump();
                Ok(Expr::Compare {
                    metric: token.text.to_owned(),
                    op,
                    threshold,
                })
            }
            TokenKind::Number(threshold) => {
                self.bump();
                let op = self.comparison_op(token)?;
                let metric = self.peek();
                if metric.kind != TokenKind::Metric {
                    return Err(self.expected(format!("a metric name after `{op}`")));
                }
                self.bump();
                Ok(Expr::Compare {
                    metric: metric.text.to_owned(),
                    op: op.swapped(),
                    threshold,
                })
            }
            _ => Err(self.expected("a comparison such as `exact_match >= 0.6`, `!` or `(`")),
        }
    }

    fn comparison_op(&mut self, after: Token<'a>) -> Result<CompareOp, GateError> {
        match self.peek().kind {
            TokenKind::Op(op) => {
                self.bump();
                Ok(op)
            }
            _ => Err(self.expected(format!(
                "a comparison operator (`<`, `<=`, `>`, `>=`, `==` or `!=`) after `{}`",
                after.text
            ))),
        }
    }
}
