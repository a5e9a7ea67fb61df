//! The prover's tokenizer: a byte-level BPE trained by the project on its own corpus.
//!
//! Digits are split one per token before BPE, so numbers copied from a question or produced by
//! the calculator are spelled the same way wherever they appear, which a tiny model needs to
//! learn copying. Written as a standard `tokenizer.json`, so any Hugging Face tool reads it.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::ModelError;

/// Beginning-of-sequence marker, prepended to every prompt.
pub const BOS: &str = "<s>";
/// End-of-sequence marker, appended after the final-answer line in training.
pub const EOS: &str = "</s>";
/// Padding for batches; never trained on.
pub const PAD: &str = "<pad>";

/// Reads a `tokenizer.json`, returning its error as text. The tokenizers crate (0.23) panics
/// instead of returning an error on some malformed files (a syntax error inside `decoder`, a
/// bad `Precompiled` normalizer; found by the `checkpoint_validator` fuzz target), and an
/// uploaded file must be refused, never crash the request or the worker: syntax is checked
/// first, and any remaining panic is caught and reported as the file's error.
pub fn from_json_bytes(bytes: &[u8]) -> Result<Tokenizer, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| e.to_string())?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tokenizer::from_bytes(bytes)
    })) {
        Ok(loaded) => loaded.map_err(|e| e.to_string()),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown reason".into());
            Err(format!(
                "the tokenizers library could not read it ({reason})"
            ))
        }
    }
}

/// Trains a byte-level BPE with `vocab_size` entries (special tokens included) on `texts`.
pub fn train_bpe<I>(texts: I, vocab_size: usize) -> Result<Tokenizer, ModelError>
where
    I: Iterator<Item = String> + Send,
{
    let specials = [BOS, EOS, PAD]
        .into_iter()
        .map(|t| AddedToken::from(t, true))
        .collect::<Vec<_>>();
    let mut trainer = TrainerWrapper::BpeTrainer(
        BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build(),
    );
    let mut tokenizer = Tokenizer::new(ModelWrapper::BPE(BPE::default()));
    tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]))));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// The id of a special token the prover relies on.
pub fn special_id(tokenizer: &Tokenizer, token: &str) -> Option<u32> {
    tokenizer.token_to_id(token)
}

/// Token ids of `text` without any special tokens added.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}

/// Text of `ids`, special tokens dropped.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String, ModelError> {
    tokenizer
        .decode(ids, true)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files on which the tokenizers crate panics are refused with a message instead.
    #[test]
    fn files_the_library_panics_on_are_refused() {
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/prover-tiny/tokenizer.json"),
        )
        .expect("the shipped tokenizer");
        assert!(from_json_bytes(shipped.as_bytes()).is_ok());
        // Valid JSON that tokenizers 0.23 `expect`s on.
        let precompiled = shipped.replace(
            "\"normalizer\":null",
            "\"normalizer\":{\"type\":\"Precompiled\"}",
        );
        assert_ne!(precompiled, shipped);
        let error = from_json_bytes(precompiled.as_bytes()).expect_err("refused");
        assert!(error.contains("could not read it"), "{error}");
        // A syntax error inside `decoder` (the fuzzer's find).
        let broken = shipped.replace("\"decoder\":{\"type\":", "\"decoder\":{\"type\" ");
        assert_ne!(broken, shipped);
        let error = from_json_bytes(broken.as_bytes()).expect_err("refused");
        assert!(error.contains("expected `:`"), "{error}");
    }

    #[test]
    fn round_trips_and_splits_digits() {
        let corpus = (0..200).map(|i| {
            format!(
                "Tom has {i} apples.\nHe eats <<{i}-1={}>>{} of them.\n#### {}",
                i - 1,
                i - 1,
                i - 1
            )
        });
        let tokenizer = train_bpe(corpus, 300).expect("train");
        let text = "Tom has 128 apples.\nHe eats <<128/2=64>>64.\n#### 64";
        let ids = encode(&tokenizer, text).expect("encode");
        assert_eq!(decode(&tokenizer, &ids).expect("decode"), text);
        let digits = encode(&tokenizer, "128").expect("encode");
        assert_eq!(digits.len(), 3, "one token per digit");
        assert!(special_id(&tokenizer, EOS).is_some() && special_id(&tokenizer, PAD).is_some());
    }
}
