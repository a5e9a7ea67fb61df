//! Machine learning on candle: the Llama prover, its tokenizer, sampling with the GSM8K
//! calculator, training, and checkpoint files.

pub mod config;
