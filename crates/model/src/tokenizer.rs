//! Tokenizers through the `tokenizers` crate: loaded from a model directory's `tokenizer.json`,
//! or trained here (byte-level BPE) on the training text for a base built from scratch: with
//! chat specials for a llama, with BERT's (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, ids 0–4,
//! and a post-processor that puts `[CLS]` and `[SEP]` around a text) for a BERT classifier.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, TokenizerBuilder, TokenizerImpl,
};

use crate::error::{ModelError, Result};

pub use tokenizers::Tokenizer;

/// The special tokens of a tokenizer trained here, in id order.
pub const PAD: &str = "<pad>";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const SPECIALS: [&str; 5] = [PAD, BOS, EOS, IM_START, IM_END];

/// The special tokens of a BERT tokenizer trained here, in id order.
pub const BERT_PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";
pub const MASK: &str = "[MASK]";
pub const BERT_SPECIALS: [&str; 5] = [BERT_PAD, UNK, CLS, SEP, MASK];

pub fn load(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| ModelError::file(path, format!("cannot read tokenizer: {e}")))
}

pub fn save(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    tokenizer
        .save(path, false)
        .map_err(|e| ModelError::file(path, format!("cannot write tokenizer: {e}")))
}

/// Trains a byte-level BPE tokenizer of `vocab` entries (special tokens included) on `texts`.
/// Deterministic: the same texts give the same `tokenizer.json`.
///
/// Its post-processor puts `<s>` before a text when special tokens are asked for, as sluice
/// itself prompts the model ([`crate::generate::prompt_ids`]): Transformers' `tokenizer(text)`
/// then gives the ids sluice trained on. sluice encodes without special tokens and adds the
/// begin token itself.
pub fn train<'a>(texts: impl Iterator<Item = &'a str> + Send, vocab: usize) -> Result<Tokenizer> {
    let bos = SPECIALS.iter().position(|s| *s == BOS).expect("a special") as u32;
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A {BOS} $B:1")))
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?
        .special_tokens(vec![(BOS, bos)])
        .build()
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    train_bpe(texts, vocab, &SPECIALS, post.into())
}

/// As [`train`], with BERT's special tokens and `[CLS] … [SEP]` added around each text.
pub fn train_bert<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab: usize,
) -> Result<Tokenizer> {
    let id = |token: &str| {
        BERT_SPECIALS
            .iter()
            .position(|s| *s == token)
            .expect("a BERT special") as u32
    };
    let post = BertProcessing::new((SEP.into(), id(SEP)), (CLS.into(), id(CLS)));
    train_bpe(texts, vocab, &BERT_SPECIALS, post.into())
}

fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab: usize,
    specials: &[&str],
    post: PostProcessorWrapper,
) -> Result<Tokenizer> {
    let minimum = specials.len() + ByteLevel::alphabet().len();
    if vocab <= minimum {
        return Err(ModelError::Config(format!(
            "a byte-level BPE vocabulary needs more than {minimum} entries, got {vocab}"
        )));
    }
    let specials: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default().into())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(byte_level.into()))
        .with_post_processor(Some(post))
        .with_decoder(Some(byte_level.into()))
        .build()
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    tokenizer
        .train(&mut trainer, texts.map(str::to_owned))
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(Tokenizer::from(tokenizer))
}

/// Token ids of `text`, without special tokens added around it.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode_fast(text, false)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(encoding.get_ids().to_vec())
}

/// Text of `ids`, special tokens left out.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, true)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))
}
