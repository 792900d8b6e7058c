//! How an example becomes text: a prompt template for input/output pairs and ChatML for
//! conversations. The template a model was trained with is saved in its `sluice.json`, so that
//! evaluation and serving prompt it the same way.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{IM_END, IM_START};

/// The default prompt for an input/output pair; the output follows it directly.
pub const DEFAULT_PROMPT: &str = "### Input:\n{input}\n\n### Response:\n";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The prompt, with `{input}` where the example's input goes.
    pub prompt: String,
}

impl Default for Template {
    fn default() -> Template {
        Template {
            prompt: DEFAULT_PROMPT.to_owned(),
        }
    }
}

impl Template {
    pub fn new(prompt: &str) -> Template {
        Template {
            prompt: prompt.to_owned(),
        }
    }

    /// The prompt for `input`.
    pub fn render(&self, input: &str) -> String {
        self.prompt.replace("{input}", input)
    }
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// A ChatML segment: the text before a turn's content, and after it.
pub fn chat_open(role: &str) -> String {
    format!("{IM_START}{role}\n")
}

pub fn chat_close() -> String {
    format!("{IM_END}\n")
}

/// The prompt that asks for the next assistant turn after `turns`.
pub fn chat_prompt(turns: &[Turn<'_>]) -> String {
    let mut text = String::new();
    for t in turns {
        text.push_str(&chat_open(t.role));
        text.push_str(t.content);
        text.push_str(&chat_close());
    }
    text.push_str(&chat_open("assistant"));
    text
}
