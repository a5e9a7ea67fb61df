//! Tests of checkpoint files, validation, storage and registration (the upload path).

use super::*;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use safetensors::Dtype;

use crate::ml::bert::{self, BertConfig};
use crate::ml::config::{LlamaConfig, ModelConfig};
use crate::ml::prompt::{PROMPT_TEMPLATE_FILE, PromptTemplate};

const PROVER: CheckpointKind = CheckpointKind::Prover;

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        raw_name(&mut header, path);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes the name bytes as given (the builder's `set_path` refuses `..` and absolute paths,
/// which the tests need to produce).
fn raw_name(header: &mut tar::Header, path: &str) {
    let name = &mut header.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}

fn special(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    raw_name(&mut header, path);
    if let Some(link) = link {
        header.set_link_name_literal(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
    builder.into_inner().unwrap()
}

fn names(files: &CheckpointFiles) -> Vec<&str> {
    files.files().iter().map(|f| f.name.as_str()).collect()
}

fn ignored(files: &CheckpointFiles) -> Vec<String> {
    files.ignored().iter().map(|i| i.to_string()).collect()
}

/// A models folder shared by the unit tests: each staging folder in it is removed when its
/// files are dropped, so only the empty `uploads/` stays.
fn models_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("legibility-checkpoint-unit-tests");
    fs::create_dir_all(&dir).expect("models dir");
    dir
}

/// Receives files as an upload does (names may hold folders), with the default limits.
fn staged(files: &[(&str, &[u8])]) -> Result<CheckpointFiles, AddCheckpointError> {
    staged_with(files, CheckpointLimits::default())
}

fn staged_with(
    files: &[(&str, &[u8])],
    limits: CheckpointLimits,
) -> Result<CheckpointFiles, AddCheckpointError> {
    let mut staging = Staging::new(&models_dir(), limits)?;
    for (name, bytes) in files {
        staging.add(name, *bytes)?;
    }
    staging.finish()
}

/// Receives one tar archive as an upload or the CLI does.
fn from_tar(bytes: &[u8]) -> Result<CheckpointFiles, AddCheckpointError> {
    let mut staging = Staging::new(&models_dir(), CheckpointLimits::default())?;
    staging.add_tar(bytes)?;
    staging.finish()
}

#[test]
fn plain_file_names_only() {
    for good in [
        "config.json",
        "model-00001-of-00002.safetensors",
        "README.md",
        "a b.json",
    ] {
        assert!(check_file_name(good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("", "empty"),
        ("dir/config.json", "without folders"),
        ("dir\\config.json", "without folders"),
        (".hidden", "hidden"),
        ("..", "hidden"),
        (".", "hidden"),
        ("a\0b", "NUL"),
        ("a\nb", "control"),
    ] {
        let err = check_file_name(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    assert!(check_file_name(&"x".repeat(300)).is_err());
    let mut staging = Staging::new(&models_dir(), CheckpointLimits::default()).unwrap();
    for i in 0..files::MAX_FILES {
        staging.add(&format!("sub/{i}.png"), &b""[..]).unwrap();
    }
    let err = staging
        .add("one-more.png", &b""[..])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("more than 10000 files arrived"), "{err}");
}

#[test]
fn dangerous_names_are_refused_and_duplicates_too() {
    for (bad, why) in [
        ("../config.json", "\"..\" component"),
        ("ckpt/../../evil", "\"..\" component"),
        ("/etc/passwd", "absolute"),
        ("ckpt\\config.json", "backslash"),
        ("a\0b", "NUL"),
        ("a\nb", "control"),
        ("", "no file name"),
        ("./", "no file name"),
    ] {
        let err = staged(&[(bad, b"{}")]).unwrap_err().to_string();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let err = staged(&[("config.json", b"{}"), ("config.json", b"{}")]).unwrap_err();
    assert!(
        matches!(
            err,
            AddCheckpointError::Rejected(CheckpointRejected::Duplicate(ref n)) if n == "config.json"
        ),
        "{err}"
    );
    assert!(check_file_name(&"x".repeat(300)).is_err());
    let mut staging = Staging::new(&models_dir(), CheckpointLimits::default()).unwrap();
    for i in 0..files::MAX_FILES {
        staging.add(&format!("sub/{i}.png"), &b""[..]).unwrap();
    }
    let err = staging
        .add("one-more.png", &b""[..])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("more than 10000 files arrived"), "{err}");
    let long = format!("{}.safetensors", "x".repeat(300));
    let err = staged(&[(&long, b"")]).unwrap_err().to_string();
    assert!(err.contains("too long"), "{err}");
}

#[test]
fn what_is_not_needed_is_ignored_and_listed() {
    let files = staged(&[
        ("config.json", b"{}"),
        (".gitattributes", b"*.safetensors filter=lfs"),
        ("README.md", b"# card"),
        ("LICENSE", b"license"),
        ("merges.txt", b"a b"),
        ("vocab.json", b"{}"),
        ("tokenizer.model", b"sp"),
        ("pytorch_model.bin", b"pickle"),
        ("training_args.bin", b"pickle"),
        ("original/consolidated.00.pth", b"pickle"),
        ("original/params.json", b"{}"),
        ("1_Pooling/config.json", b"{}"),
    ])
    .expect("received");
    assert_eq!(names(&files), ["config.json"]);
    assert_eq!(
        ignored(&files),
        [
            ".gitattributes (hidden)",
            "README.md (not used here)",
            "LICENSE (not used here)",
            "merges.txt (not used here)",
            "vocab.json (not used here)",
            "tokenizer.model (sentencepiece model; tokenizer.json is used)",
            "pytorch_model.bin (PyTorch weights; only safetensors are read)",
            "training_args.bin (not used here)",
            "original/ (a sub-folder)",
            "1_Pooling/ (a sub-folder)",
        ]
    );
    // Only the kept file was written.
    let written: Vec<String> = fs::read_dir(files.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, ["config.json"]);
    let dir = files.dir().to_path_buf();
    drop(files);
    assert!(
        !dir.exists(),
        "dropping received files removes their folder"
    );
}

#[test]
fn a_folder_upload_is_one_top_level_folder() {
    // A browser's folder upload (or an archive) names files inside the chosen folder.
    let files = staged(&[
        ("Llama-tiny/.gitattributes", b"x"),
        ("Llama-tiny/config.json", b"{}"),
        ("Llama-tiny/original/params.json", b"{}"),
        ("Llama-tiny/tokenizer.json", b"{}"),
        (".DS_Store", b"x"),
        (".cache/huggingface/download/config.json.metadata", b"x"),
    ])
    .expect("received");
    assert_eq!(names(&files), ["config.json", "tokenizer.json"]);
    assert_eq!(
        ignored(&files),
        [
            ".gitattributes (hidden)",
            "original/ (a sub-folder)",
            ".DS_Store (hidden)",
            ".cache/ (hidden)"
        ]
    );
    // Files at the top level make the checkpoint; a folder beside them is a sub-folder.
    let files = staged(&[("config.json", b"{}"), ("ckpt/tokenizer.json", b"{}")]).unwrap();
    assert_eq!(names(&files), ["config.json"]);
    assert_eq!(ignored(&files), ["ckpt/ (a sub-folder)"]);
    // Two folders that both hold checkpoint files: which one is it?
    let err = staged(&[("a/config.json", b"{}"), ("b/tokenizer.json", b"{}")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("second top-level folder"), "{err}");
}

#[test]
fn the_limit_is_enforced_while_the_files_arrive() {
    let limits = CheckpointLimits {
        max_bytes: 1024 * 1024,
    };
    let mut staging = Staging::new(&models_dir(), limits).unwrap();
    let dir = staging.dir().to_path_buf();
    staging.add("config.json", &b"{}"[..]).unwrap();
    // An endless file: refused once the limit is passed, not read to its end.
    let err = staging
        .add("model.safetensors", std::io::repeat(0))
        .unwrap_err();
    match err {
        AddCheckpointError::Rejected(rejected) => {
            assert!(rejected.is_too_large(), "{rejected}");
            assert!(
                rejected
                    .to_string()
                    .contains("over the limit of 1048576 bytes"),
                "{rejected}"
            );
        }
        other => panic!("{other}"),
    }
    drop(staging);
    assert!(!dir.exists(), "a refused upload leaves no temp folder");

    // Ignored files do not count; files other than the weights have their own cap.
    let mut staging = Staging::new(&models_dir(), limits).unwrap();
    staging
        .add(
            "pytorch_model.bin",
            std::io::Read::take(std::io::repeat(0), 3 * 1024 * 1024),
        )
        .expect("ignored bytes are read past");
    staging
        .add("config.json", &b"{}"[..])
        .expect("kept bytes count");
    drop(staging);

    let err = staged_with(
        &[("config.json", &[0u8; 100])],
        CheckpointLimits { max_bytes: 99 },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AddCheckpointError::Rejected(CheckpointRejected::TooLarge {
                total: 100,
                limit: 99
            })
        ),
        "{err}"
    );
}

#[test]
fn pytorch_or_gguf_only_checkpoints_are_refused_saying_what_to_do() {
    let err = refused(
        staged(&[
            ("config.json", b"{}"),
            ("tokenizer.json", b"{}"),
            ("pytorch_model-00001-of-00002.bin", b"x"),
            ("pytorch_model-00002-of-00002.bin", b"x"),
            ("pytorch_model.bin.index.json", b"{}"),
        ])
        .unwrap(),
        PROVER,
    );
    assert!(
        err.starts_with("this checkpoint has PyTorch .bin weights only (pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin)"),
        "{err}"
    );
    assert!(
        err.contains("save_pretrained(..., safe_serialization=True)"),
        "{err}"
    );
    // A GGUF prover needs the original config and tokenizer; a GGUF verifier is refused.
    let err = refused(
        staged(&[("llama-q4.gguf", b"x"), ("README.md", b"x")]).unwrap(),
        PROVER,
    );
    assert!(
        err.starts_with("config.json is missing: a GGUF prover (llama-q4.gguf) needs the original model's config.json and tokenizer.json"),
        "{err}"
    );
    let err = refused(
        staged(&[("llama-q4.gguf", b"x"), ("README.md", b"x")]).unwrap(),
        VERIFIER,
    );
    assert!(
        err.starts_with("this verifier has GGUF weights only (llama-q4.gguf)"),
        "{err}"
    );
    let err = refused(
        staged(&[("config.json", b"{}"), ("tokenizer.model", b"sp")]).unwrap(),
        PROVER,
    );
    assert!(
        err.starts_with("tokenizer.json is missing (tokenizer.model"),
        "{err}"
    );
    let err = refused(staged(&[("config.json", b"{}")]).unwrap(), PROVER);
    assert_eq!(
        err,
        CheckpointRejected::Missing(TOKENIZER_FILE.into()).to_string()
    );
}

const VERIFIER: CheckpointKind = CheckpointKind::Verifier;

/// A WordLevel tokenizer with `size` tokens and a whitespace pre-tokenizer.
fn tokenizer_json(size: usize) -> Vec<u8> {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..size)
        .map(|i| (format!("w{i}"), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null, "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "w0" }
    })
    .to_string()
    .into_bytes()
}

/// Zero tensors with these names and shapes (F32, or I64 for `position_ids` buffers).
fn safetensors_of(shapes: &[(String, Vec<usize>)]) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = shapes
        .iter()
        .map(|(name, shape)| {
            let dtype = if name.ends_with("position_ids") {
                Dtype::I64
            } else {
                Dtype::F32
            };
            let bytes = vec![0u8; shape.iter().product::<usize>() * dtype.bitsize() / 8];
            (name.clone(), shape.clone(), dtype, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).expect("view");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serialize")
}

fn llama_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 16
    })
}

fn bert_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 16,
        "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 32, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "transformers_version": "4.8.2"
    })
}

fn score_head() -> Vec<(String, Vec<usize>)> {
    vec![
        ("score.weight".into(), vec![1, 8]),
        ("score.bias".into(), vec![1]),
    ]
}

/// The tensors of a Llama verifier (body without `lm_head`, plus the score head).
fn llama_verifier_tensors() -> Vec<(String, Vec<usize>)> {
    let config: LlamaConfig = serde_json::from_value(llama_config()).expect("config");
    let mut tensors: Vec<_> = config
        .expected_tensors()
        .into_iter()
        .filter(|(n, _)| n != "lm_head.weight")
        .collect();
    tensors.extend(score_head());
    tensors
}

fn bert_tensors(prefix: &str) -> Vec<(String, Vec<usize>)> {
    let config: BertConfig = serde_json::from_value(bert_config()).expect("config");
    config.expected_tensors(prefix)
}

fn checkpoint(
    config: &serde_json::Value,
    tensors: &[(String, Vec<usize>)],
    extra: &[(&str, &[u8])],
) -> CheckpointFiles {
    let config = config.to_string().into_bytes();
    let tokenizer = tokenizer_json(14);
    let weights = safetensors_of(tensors);
    let mut files: Vec<(&str, &[u8])> = vec![
        (CONFIG_FILE, &config),
        (TOKENIZER_FILE, &tokenizer),
        ("model.safetensors", &weights),
    ];
    files.extend_from_slice(extra);
    staged(&files).expect("received")
}

fn without(tensors: Vec<(String, Vec<usize>)>, name: &str) -> Vec<(String, Vec<usize>)> {
    let kept: Vec<_> = tensors.into_iter().filter(|(n, _)| n != name).collect();
    kept
}

fn refused(files: CheckpointFiles, kind: CheckpointKind) -> String {
    validate(files, kind, &CheckpointLimits::default())
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_llama_verifier_needs_its_score_head_and_not_lm_head() {
    let limits = CheckpointLimits::default();
    let tensors = llama_verifier_tensors();
    let ok = validate(
        checkpoint(&llama_config(), &tensors, &[]),
        VERIFIER,
        &limits,
    )
    .expect("a Llama verifier without lm_head is accepted");
    assert_eq!(ok.kind(), VERIFIER);
    assert!(ok.score_head());
    assert!(ok.config().as_llama().is_some());
    let metadata = ok.metadata();
    assert_eq!(metadata["model_type"], "llama");
    assert_eq!(metadata["architecture"]["model_type"], "llama");
    assert_eq!(metadata["score_head"], true);
    assert_eq!(
        ok.parameters(),
        tensors
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum::<u64>()
    );

    // lm_head is accepted when present (with its shape), and so are the
    // sentence-transformers side files.
    let mut with_lm_head = tensors.clone();
    with_lm_head.push(("lm_head.weight".into(), vec![16, 8]));
    let extra: &[(&str, &[u8])] = &[
        ("vocab.txt", b"[PAD]\nw1\n"),
        ("modules.json", br#"[{"idx": 0, "name": "0", "path": ""}]"#),
        ("sentence_bert_config.json", br#"{"max_seq_length": 256}"#),
    ];
    validate(
        checkpoint(&llama_config(), &with_lm_head, extra),
        VERIFIER,
        &limits,
    )
    .expect("lm_head and side files are accepted");
    let mut bad_lm_head = tensors.clone();
    bad_lm_head.push(("lm_head.weight".into(), vec![8, 16]));
    let err = refused(checkpoint(&llama_config(), &bad_lm_head, &[]), VERIFIER);
    assert!(err.contains("lm_head.weight has shape [8, 16]"), "{err}");

    // A reward model saved by transformers has a score head without bias: accepted. Without
    // any head (a language model to train a verifier on) too: it starts at zero.
    let no_bias = validate(
        checkpoint(
            &llama_config(),
            &without(tensors.clone(), "score.bias"),
            &[],
        ),
        VERIFIER,
        &limits,
    )
    .expect("a score head without bias is accepted");
    assert!(no_bias.score_head());
    let headless = validate(
        checkpoint(
            &llama_config(),
            &without(without(tensors.clone(), "score.bias"), "score.weight"),
            &[],
        ),
        VERIFIER,
        &limits,
    )
    .expect("a decoder without a score head is a verifier to train");
    assert!(!headless.score_head());
    let mut wrong = without(tensors.clone(), "score.weight");
    wrong.push(("score.weight".into(), vec![8, 1]));
    let err = refused(checkpoint(&llama_config(), &wrong, &[]), VERIFIER);
    assert!(
        err.contains("score.weight has shape [8, 1] but config.json implies [1, 8]"),
        "{err}"
    );

    // A prompt template means nothing to a verifier; JSON side files must be well formed.
    let template = serde_json::to_vec(&PromptTemplate::default()).expect("json");
    let err = refused(
        checkpoint(
            &llama_config(),
            &tensors,
            &[(PROMPT_TEMPLATE_FILE, &template)],
        ),
        VERIFIER,
    );
    assert!(
        err.starts_with("prompt_template.json belongs to prover checkpoints only"),
        "{err}"
    );
    let err = refused(
        checkpoint(&llama_config(), &tensors, &[("modules.json", b"{}")]),
        VERIFIER,
    );
    assert!(err.starts_with("modules.json is not a JSON array"), "{err}");

    // A prover keeps its rules: lm_head required, no score head, no verifier side files.
    let err = refused(checkpoint(&llama_config(), &with_lm_head, &[]), PROVER);
    assert!(
        err.contains("unexpected tensor(s) for a Llama prover"),
        "{err}"
    );
    assert!(err.contains("score.bias, score.weight"), "{err}");
    let err = refused(checkpoint(&llama_config(), &tensors, &[]), PROVER);
    assert!(err.contains("missing: lm_head.weight"), "{err}");
    // A verifier's side file in a prover is not refused: ignored, like a Hub side file.
    let config: LlamaConfig = serde_json::from_value(llama_config()).expect("config");
    let ok = validate(
        checkpoint(
            &llama_config(),
            &config.expected_tensors(),
            &[("vocab.txt", b"w0\n")],
        ),
        PROVER,
        &limits,
    )
    .expect("a prover with vocab.txt");
    assert_eq!(
        ok.ignored()
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        ["vocab.txt (not used by this kind of checkpoint)"]
    );
    assert!(!ok.dir().join("vocab.txt").exists(), "not kept on disk");
    assert!(!ok.files().iter().any(|f| f.name == "vocab.txt"));
}

#[test]
fn bert_verifiers_with_or_without_prefix_and_score_head() {
    let limits = CheckpointLimits::default();
    for prefix in ["", bert::BERT_PREFIX] {
        for with_head in [false, true] {
            let mut tensors = bert_tensors(prefix);
            // The pooler and the position-ids buffer of real exports are accepted.
            tensors.extend(
                serde_json::from_value::<BertConfig>(bert_config())
                    .expect("config")
                    .pooler_tensors(prefix),
            );
            tensors.push((format!("{prefix}embeddings.position_ids"), vec![1, 32]));
            if with_head {
                tensors.extend(score_head());
            }
            let extra: &[(&str, &[u8])] = &[
                ("vocab.txt", b"[PAD]\n[UNK]\n"),
                ("special_tokens_map.json", br#"{"pad_token": "[PAD]"}"#),
                ("tokenizer_config.json", br#"{"do_lower_case": true}"#),
                (
                    "config_sentence_transformers.json",
                    br#"{"__version__": {}}"#,
                ),
                ("modules.json", br#"[]"#),
            ];
            let ok = validate(
                checkpoint(&bert_config(), &tensors, extra),
                VERIFIER,
                &limits,
            )
            .unwrap_or_else(|e| panic!("prefix {prefix:?}, head {with_head}: {e}"));
            assert_eq!(ok.score_head(), with_head);
            assert_eq!(ok.tensor_prefix(), prefix);
            assert_eq!(ok.config().as_bert().map(|c| c.num_hidden_layers), Some(2));
            let metadata = ok.metadata();
            assert_eq!(metadata["model_type"], "bert");
            assert_eq!(metadata["architecture"]["hidden_act"], "gelu");
            assert_eq!(metadata["score_head"], with_head);
            assert_eq!(metadata["tensor_prefix"], prefix);
            assert_eq!(
                metadata["dtypes"],
                serde_json::json!(["F32"]),
                "buffers are not weights"
            );
        }
    }
}

#[test]
fn bert_checkpoints_that_do_not_fit_are_refused() {
    let err = refused(checkpoint(&bert_config(), &bert_tensors(""), &[]), PROVER);
    assert!(err.contains("prover checkpoints must be"), "{err}");
    let err = refused(
        checkpoint(
            &bert_config(),
            &without(
                bert_tensors("bert."),
                "bert.encoder.layer.1.attention.self.key.bias",
            ),
            &[],
        ),
        VERIFIER,
    );
    assert!(
        err.contains("missing: bert.encoder.layer.1.attention.self.key.bias"),
        "{err}"
    );
    let mut half_head = bert_tensors("");
    half_head.push(("score.weight".into(), vec![1, 8]));
    let err = refused(checkpoint(&bert_config(), &half_head, &[]), VERIFIER);
    assert!(
        err.contains("score.weight is present but score.bias is missing"),
        "{err}"
    );
    let mut masked_lm = bert_tensors("bert.");
    masked_lm.push(("cls.predictions.bias".into(), vec![16]));
    let err = refused(checkpoint(&bert_config(), &masked_lm, &[]), VERIFIER);
    assert!(
        err.contains("unexpected tensor(s) for a BERT verifier")
            && err.contains("cls.predictions.bias"),
        "{err}"
    );
    let mut config = bert_config();
    config["hidden_act"] = "swish".into();
    let err = refused(checkpoint(&config, &bert_tensors(""), &[]), VERIFIER);
    assert!(
        err.starts_with("config.json: hidden_act \"swish\""),
        "{err}"
    );
    let mut config = bert_config();
    config["vocab_size"] = 10.into();
    let err = refused(checkpoint(&config, &bert_tensors(""), &[]), VERIFIER);
    assert!(err.contains("tokenizer.json has 14 tokens"), "{err}");
    let mut buffer = bert_tensors("");
    buffer.push(("embeddings.position_ids".into(), vec![1, 31]));
    let err = refused(checkpoint(&bert_config(), &buffer, &[]), VERIFIER);
    assert!(
        err.contains("embeddings.position_ids has shape [1, 31]"),
        "{err}"
    );
    let err = refused(
        checkpoint(
            &serde_json::json!({"model_type": "t5"}),
            &bert_tensors(""),
            &[],
        ),
        VERIFIER,
    );
    assert!(err.contains("model_type is \"t5\""), "{err}");
}

#[test]
fn tar_files_at_the_root_or_in_one_folder() {
    let root = from_tar(&tar_of(&[
        ("config.json", b"{}"),
        ("./training.json", b"{}"),
        ("./README.md", b"hi"),
    ]))
    .unwrap();
    assert_eq!(names(&root), ["config.json", "training.json"]);
    assert_eq!(ignored(&root), ["README.md (not used here)"]);
    assert_eq!(fs::read(root.path("training.json")).unwrap(), b"{}");

    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    raw_name(&mut dir, "ckpt/");
    dir.set_cksum();
    builder.append(&dir, &[][..]).unwrap();
    let mut bytes = builder.into_inner().unwrap();
    bytes.truncate(512); // drop the end-of-archive blocks to append more members
    let rest = tar_of(&[
        ("ckpt/config.json", b"{}"),
        ("ckpt/tokenizer.json", b"[]"),
        ("ckpt/original/consolidated.00.pth", b"x"),
        ("ckpt/a/b/c/model.safetensors", b"x"),
    ]);
    bytes.extend_from_slice(&rest);
    let folder = from_tar(&bytes).unwrap();
    assert_eq!(names(&folder), ["config.json", "tokenizer.json"]);
    assert_eq!(
        ignored(&folder),
        ["original/ (a sub-folder)", "a/ (a sub-folder)"]
    );
}

#[test]
fn tar_layout_rules() {
    type Members<'a> = &'a [(&'a str, &'a [u8])];
    let cases: &[(Members, &str)] = &[
        (
            &[("a/config.json", b""), ("b/tokenizer.json", b"")],
            "second top-level folder",
        ),
        (&[("../evil", b"")], "\"..\""),
        (&[("ckpt/../../evil", b"")], "\"..\""),
        (&[("/etc/passwd", b"")], "absolute"),
        (&[("ckpt\\config.json", b"")], "backslash"),
        (
            &[("config.json", b""), ("./config.json", b"")],
            "more than once",
        ),
    ];
    for (members, why) in cases {
        let err = from_tar(&tar_of(members)).unwrap_err().to_string();
        assert!(err.contains(why), "{members:?}: {err}");
        let named = members.last().unwrap().0.replace('\\', "\\\\");
        assert!(err.contains(&named), "{members:?}: {err}");
    }
    let err = from_tar(&tar_of(&[])).unwrap_err().to_string();
    assert!(err.contains("holds no files"), "{err}");
    let err = from_tar(&tar_of(&[("config.json", b"")])).map(|_| ());
    assert!(err.is_ok(), "one file is an archive");
    // An archive comes alone.
    let mut staging = Staging::new(&models_dir(), CheckpointLimits::default()).unwrap();
    staging.add("config.json", &b"{}"[..]).unwrap();
    let err = staging
        .add_tar(&tar_of(&[("tokenizer.json", b"{}")])[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one .tar archive or the checkpoint's files"),
        "{err}"
    );
}

#[test]
fn tar_refuses_anything_but_regular_files() {
    for (kind, link, what) in [
        (
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
            "symbolic link",
        ),
        (tar::EntryType::Link, Some("config.json"), "hard link"),
        (tar::EntryType::Char, None, "device"),
        (tar::EntryType::Block, None, "device"),
        (tar::EntryType::Fifo, None, "FIFO"),
    ] {
        // Even where the file would have been ignored.
        for name in ["model.safetensors", "original/params.json"] {
            let err = from_tar(&special(name, kind, link))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(what) && err.contains(&format!("{name:?}")),
                "{err}"
            );
        }
    }
}

#[test]
fn tar_refuses_garbage_and_truncation() {
    let full = tar_of(&[("config.json", &[b'x'; 2000])]);
    let err = from_tar(&full[..1000]).unwrap_err().to_string();
    assert!(err.contains("tar archive"), "{err}");
    let err = from_tar(&[7u8; 1024]).unwrap_err().to_string();
    assert!(err.contains("tar archive"), "{err}");
}

fn tiny_llama() -> ModelConfig {
    ModelConfig::Llama(
        serde_json::from_str(
            r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#,
        )
        .unwrap(),
    )
}

/// Files as validation would hand them over, without checking them.
fn unchecked(files: CheckpointFiles) -> ValidatedCheckpoint {
    ValidatedCheckpoint {
        files,
        kind: PROVER,
        config: tiny_llama(),
        prompts: None,
        score_head: false,
        tensor_prefix: String::new(),
        parameters: 0,
        dtypes: vec![],
    }
}

#[test]
fn store_is_atomic_and_removable_and_the_sweep_clears_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut staging = Staging::new(dir.path(), CheckpointLimits::default()).unwrap();
    staging.add("training.json", &b"{}"[..]).unwrap();
    staging.add("LICENSE", &b"x"[..]).unwrap();
    let staged = staging.finish().unwrap();
    let temp = staged.dir().to_path_buf();
    assert!(
        temp.starts_with(dir.path().join(UPLOADS_DIR))
            && temp
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(TEMP_PREFIX),
        "{}",
        temp.display()
    );
    let mut checkpoint = unchecked(staged);
    let rel = store_checkpoint(dir.path(), &mut checkpoint).unwrap();
    drop(checkpoint);
    assert!(rel.starts_with("uploads/"), "{rel}");
    assert!(!temp.exists(), "the temp folder was renamed");
    assert_eq!(
        fs::read(dir.path().join(&rel).join("training.json")).unwrap(),
        b"{}"
    );
    assert!(!dir.path().join(&rel).join("LICENSE").exists());
    let listed: Vec<_> = fs::read_dir(dir.path().join(UPLOADS_DIR))
        .unwrap()
        .collect();
    assert_eq!(listed.len(), 1, "no temp folder is left");

    // A folder read in place is copied, not moved.
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("training.json"), b"{\"a\":1}").unwrap();
    let mut files = CheckpointFiles::from_dir(source.path(), &CheckpointLimits::default()).unwrap();
    files.compute_digests().unwrap();
    let mut checkpoint = unchecked(files);
    let copied = store_checkpoint(dir.path(), &mut checkpoint).unwrap();
    assert_eq!(
        fs::read(dir.path().join(&copied).join("training.json")).unwrap(),
        b"{\"a\":1}"
    );
    assert!(source.path().join("training.json").exists());
    remove_stored(dir.path(), &copied).unwrap();

    assert!(remove_stored(dir.path(), "../etc").is_err());
    assert!(remove_stored(dir.path(), "uploads/../x").is_err());
    remove_stored(dir.path(), &rel).unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join(UPLOADS_DIR)).unwrap().count(),
        0
    );

    fs::create_dir_all(dir.path().join("uploads/.tmp-crashed/x")).unwrap();
    fs::create_dir_all(dir.path().join("uploads/kept")).unwrap();
    assert_eq!(
        sweep_temp_dirs(dir.path(), TEMP_DIR_GRACE).unwrap(),
        0,
        "young temp folders are kept"
    );
    assert_eq!(sweep_temp_dirs(dir.path(), Duration::ZERO).unwrap(), 1);
    let left: Vec<String> = fs::read_dir(dir.path().join(UPLOADS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["kept"]);
    assert_eq!(
        sweep_temp_dirs(&dir.path().join("absent"), Duration::ZERO).unwrap(),
        0
    );
}

#[test]
fn a_failed_copy_leaves_no_temp_folder() {
    let dir = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("config.json"), b"{}").unwrap();
    fs::write(source.path().join("training.json"), b"{}").unwrap();
    let mut files = CheckpointFiles::from_dir(source.path(), &CheckpointLimits::default()).unwrap();
    files.compute_digests().unwrap();
    // Changed after validation: the copy does not match, and nothing is stored.
    fs::write(source.path().join("training.json"), b"{\"changed\":1}").unwrap();
    let mut checkpoint = unchecked(files);
    let err = store_checkpoint(dir.path(), &mut checkpoint).unwrap_err();
    assert!(err.to_string().contains("training.json changed"), "{err}");
    assert_eq!(
        fs::read_dir(dir.path().join(UPLOADS_DIR)).unwrap().count(),
        0
    );
    // Removed meanwhile: the same.
    fs::remove_file(source.path().join("config.json")).unwrap();
    assert!(store_checkpoint(dir.path(), &mut checkpoint).is_err());
    assert_eq!(
        fs::read_dir(dir.path().join(UPLOADS_DIR)).unwrap().count(),
        0
    );
}

#[test]
fn folders_on_disk_follow_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("outer/ckpt");
    fs::create_dir_all(&ckpt).unwrap();
    fs::write(ckpt.join("config.json"), b"{}").unwrap();
    fs::write(ckpt.join("README.md"), b"hi").unwrap();
    fs::write(dir.path().join("outer/.DS_Store"), b"x").unwrap();
    let limits = CheckpointLimits::default();
    // One folder inside is descended into (hidden files beside it do not count).
    let files = CheckpointFiles::from_dir(&dir.path().join("outer"), &limits).unwrap();
    assert_eq!(names(&files), ["config.json"]);
    assert_eq!(ignored(&files), ["README.md (not used here)"]);
    assert_eq!(files.dir(), ckpt);
    assert!(!files.is_staged());
    drop(files);
    assert!(
        ckpt.join("config.json").exists(),
        "a folder read in place is never removed"
    );
    let err = CheckpointFiles::from_dir(&ckpt, &CheckpointLimits { max_bytes: 1 }).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    // Sub-folders and hidden entries are ignored without being opened.
    fs::create_dir_all(ckpt.join("original")).unwrap();
    fs::create_dir_all(ckpt.join(".cache/huggingface")).unwrap();
    fs::write(ckpt.join(".gitattributes"), b"x").unwrap();
    let files = CheckpointFiles::from_dir(&ckpt, &limits).unwrap();
    assert_eq!(
        ignored(&files),
        [
            ".cache/ (hidden)",
            ".gitattributes (hidden)",
            "README.md (not used here)",
            "original/ (a sub-folder)"
        ]
    );
    // A file read whole has a size cap (a sparse file: nothing is written).
    let big = fs::File::create(ckpt.join("tokenizer.json")).unwrap();
    big.set_len(MAX_SIDE_FILE_BYTES + 1).unwrap();
    let err = CheckpointFiles::from_dir(&ckpt, &limits).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    assert!(
        err.to_string().starts_with("tokenizer.json is larger than"),
        "{err}"
    );
    fs::remove_file(ckpt.join("tokenizer.json")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", ckpt.join("tokenizer.json")).unwrap();
        let err = CheckpointFiles::from_dir(&ckpt, &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("symbolic link"),
            "{err}"
        );
        // A link under a name that is ignored anyway is never followed, and not refused.
        fs::remove_file(ckpt.join("tokenizer.json")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ckpt.join("LICENSE")).unwrap();
        let files = CheckpointFiles::from_dir(&ckpt, &limits).unwrap();
        assert!(ignored(&files).contains(&"LICENSE (not used here)".to_string()));
    }
}

#[test]
#[ignore = "needs a real all-MiniLM-L6-v2 in LEGIBILITY_TEST_BERT_DIR"]
fn a_real_sentence_encoder_is_a_valid_verifier_upload() {
    // Its top-level files (sub-folders such as 1_Pooling/ and hidden files left out) pass
    // verifier upload validation as they are.
    let dir = std::env::var("LEGIBILITY_TEST_BERT_DIR").expect("LEGIBILITY_TEST_BERT_DIR");
    let files = CheckpointFiles::from_dir(std::path::Path::new(&dir), &CheckpointLimits::default())
        .expect("readable");
    let checkpoint = validate(
        files,
        CheckpointKind::Verifier,
        &CheckpointLimits::default(),
    )
    .expect("a real all-MiniLM-L6-v2 is a valid verifier upload");
    assert!(!checkpoint.score_head());
    assert_eq!(checkpoint.parameters(), 22_713_216);
}

/// A tiny Llama prover split into two shards with `model.safetensors.index.json`, plus
/// `extra` files; `map` may rewrite the index's weight map.
fn sharded(
    extra: &[(&str, &[u8])],
    map: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> CheckpointFiles {
    let config: LlamaConfig = serde_json::from_value(llama_config()).expect("config");
    let tensors = config.expected_tensors();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (part, shard) in [
        (first, "model-00001-of-00002.safetensors"),
        (second, "model-00002-of-00002.safetensors"),
    ] {
        for (name, _) in part {
            weight_map.insert(name.clone(), shard.into());
        }
    }
    map(&mut weight_map);
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map})
        .to_string()
        .into_bytes();
    let config = llama_config().to_string().into_bytes();
    let tokenizer = tokenizer_json(14);
    let (one, two) = (safetensors_of(first), safetensors_of(second));
    let mut files: Vec<(&str, &[u8])> = vec![
        (CONFIG_FILE, &config),
        (TOKENIZER_FILE, &tokenizer),
        ("model-00001-of-00002.safetensors", &one),
        ("model-00002-of-00002.safetensors", &two),
        (INDEX_FILE, &index),
    ];
    files.extend_from_slice(extra);
    staged(&files).expect("received")
}

#[test]
fn sharded_weights_follow_their_index() {
    let limits = CheckpointLimits::default();
    // Mistral's own consolidated file beside the shards is not read, nor kept.
    let consolidated = safetensors_of(&[("layers.0.attention.wq.weight".into(), vec![8, 8])]);
    let ok = validate(
        sharded(&[("consolidated.safetensors", &consolidated)], |_| {}),
        PROVER,
        &limits,
    )
    .expect("a sharded prover");
    let kept: Vec<&str> = ok.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        kept,
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(
        ok.ignored()
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        ["consolidated.safetensors (not listed in model.safetensors.index.json)"]
    );
    assert!(!ok.dir().join("consolidated.safetensors").exists());
    assert_eq!(ok.metadata()["sharded"], true);
    let files = crate::ml::weight_files(ok.dir()).expect("weight files");
    assert_eq!(files.len(), 2);

    // A shard the index names must be there.
    let config: LlamaConfig = serde_json::from_value(llama_config()).expect("config");
    let mut without_second = sharded(&[], |_| {});
    without_second
        .ignore("model-00002-of-00002.safetensors", IgnoreReason::NotUsed)
        .unwrap();
    let err = refused(without_second, PROVER);
    assert!(
        err.starts_with(
            "model-00002-of-00002.safetensors is missing: model.safetensors.index.json maps"
        ),
        "{err}"
    );
    // Every tensor the index lists is in the shard it names.
    let err = refused(
        sharded(&[], |map| {
            map.insert(
                "model.norm.weight".into(),
                "model-00001-of-00002.safetensors".into(),
            );
        }),
        PROVER,
    );
    assert!(
        err.contains("maps model.norm.weight to model-00001-of-00002.safetensors, but it is in model-00002-of-00002.safetensors"),
        "{err}"
    );
    let err = refused(
        sharded(&[], |map| {
            map.insert(
                "model.layers.7.mlp.up_proj.weight".into(),
                "model-00002-of-00002.safetensors".into(),
            );
        }),
        PROVER,
    );
    assert!(
        err.contains("maps model.layers.7.mlp.up_proj.weight to model-00002-of-00002.safetensors, but model-00002-of-00002.safetensors does not hold it"),
        "{err}"
    );
    // And every tensor in the shards is listed.
    let err = refused(
        sharded(&[], |map| {
            map.remove("lm_head.weight");
        }),
        PROVER,
    );
    assert!(
        err.contains("1 tensor(s) in the shards are not listed in model.safetensors.index.json: lm_head.weight (in model-0000"),
        "{err}"
    );
    let err = refused(
        sharded(&[], |map| {
            map.insert("x".into(), "../evil.safetensors".into());
        }),
        PROVER,
    );
    assert!(err.contains("\"../evil.safetensors\""), "{err}");
    assert_eq!(config.num_hidden_layers, 1);
}

#[test]
fn safetensors_headers_are_read_without_the_weights() {
    // A file whose data is cut short is refused from its header and length alone.
    let weights = safetensors_of(&[("a".into(), vec![4, 4])]);
    for (bytes, why) in [
        (
            weights[..weights.len() - 4].to_vec(),
            "tensor data but the file holds",
        ),
        (weights[..6].to_vec(), "holds only 6 bytes"),
        (
            [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
            "its header claims",
        ),
        (
            [&2u64.to_le_bytes()[..], b"[]"].concat(),
            "not a valid safetensors",
        ),
    ] {
        let files = staged(&[("model.safetensors", &bytes)]).unwrap();
        let err = read_header_of(&files).unwrap_err().to_string();
        assert!(
            err.starts_with("model.safetensors is not a valid safetensors file")
                && err.contains(why),
            "{err}"
        );
    }
    let files = staged(&[("model.safetensors", &weights)]).unwrap();
    let header = read_header_of(&files).unwrap();
    assert_eq!(header.tensors()["a"].shape, [4, 4]);
}

fn read_header_of(
    files: &CheckpointFiles,
) -> Result<safetensors::tensor::Metadata, CheckpointRejected> {
    validate::read_header(files, "model.safetensors")
}
