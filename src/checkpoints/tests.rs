//! Tests of checkpoint files, validation, storage and registration (the upload path).

use super::*;

use std::fs;
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
    files.files().iter().map(|(n, _)| n.as_str()).collect()
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
}

#[test]
fn validate_refuses_bad_names_duplicates_and_unknown_files_before_parsing() {
    let limits = CheckpointLimits::default();
    let files = |list: &[(&str, &[u8])]| {
        CheckpointFiles::from_files(
            list.iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect(),
        )
    };
    let err = validate(files(&[("sub/config.json", b"{}")]), PROVER, &limits).unwrap_err();
    assert!(matches!(err, CheckpointRejected::BadName { .. }), "{err}");
    assert!(err.to_string().contains("sub/config.json"), "{err}");
    let err = validate(
        files(&[("config.json", b"{}"), ("config.json", b"{}")]),
        PROVER,
        &limits,
    )
    .unwrap_err();
    assert_eq!(err, CheckpointRejected::Duplicate("config.json".into()));
    let err = validate(
        files(&[("config.json", b"{}"), ("weights.bin", b"")]),
        PROVER,
        &limits,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("weights.bin is not a file"),
        "{err}"
    );
    let err = validate(files(&[("config.json", b"{}")]), PROVER, &limits).unwrap_err();
    assert_eq!(err, CheckpointRejected::Missing(TOKENIZER_FILE.into()));
    let err = validate(files(&[(".safetensors", b"")]), PROVER, &limits).unwrap_err();
    assert!(matches!(err, CheckpointRejected::BadName { .. }), "{err}");
    let err = validate(
        files(&[("config.json", &[0u8; 100])]),
        PROVER,
        &CheckpointLimits { max_bytes: 99 },
    )
    .unwrap_err();
    assert_eq!(
        err,
        CheckpointRejected::TooLarge {
            total: 100,
            limit: 99
        }
    );
    assert!(err.is_too_large());
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
    let mut files = CheckpointFiles::new();
    files.push(CONFIG_FILE, config.to_string().into_bytes());
    files.push(TOKENIZER_FILE, tokenizer_json(14));
    files.push("model.safetensors", safetensors_of(tensors));
    for (name, bytes) in extra {
        files.push(*name, bytes.to_vec());
    }
    files
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
    let err = refused(
        checkpoint(&llama_config(), &tensors, &[("vocab.txt", b"w0\n")]),
        PROVER,
    );
    assert!(
        err.starts_with(
            "vocab.txt is not a file a checkpoint may contain (a prover checkpoint allows"
        ),
        "{err}"
    );
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
    let root =
        CheckpointFiles::from_tar(&tar_of(&[("config.json", b"{}"), ("./README.md", b"hi")]))
            .unwrap();
    assert_eq!(names(&root), ["config.json", "README.md"]);
    assert_eq!(root.files()[1].1, b"hi");

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
    let rest = tar_of(&[("ckpt/config.json", b"{}"), ("ckpt/tokenizer.json", b"[]")]);
    bytes.extend_from_slice(&rest);
    let folder = CheckpointFiles::from_tar(&bytes).unwrap();
    assert_eq!(names(&folder), ["config.json", "tokenizer.json"]);
}

#[test]
fn tar_layout_rules() {
    type Members<'a> = &'a [(&'a str, &'a [u8])];
    let cases: &[(Members, &str)] = &[
        (&[("a/b/config.json", b"")], "nested too deeply"),
        (
            &[("a/config.json", b""), ("b/tokenizer.json", b"")],
            "second top-level folder",
        ),
        (
            &[("config.json", b""), ("a/tokenizer.json", b"")],
            "both at the top level and inside a folder",
        ),
        (&[("../evil", b"")], "\"..\""),
        (&[("ckpt/../../evil", b"")], "\"..\""),
        (&[("/etc/passwd", b"")], "absolute"),
        (&[("ckpt\\config.json", b"")], "backslash"),
    ];
    for (members, why) in cases {
        let err = CheckpointFiles::from_tar(&tar_of(members))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{members:?}: {err}");
        let named = format!("{:?}", members.last().unwrap().0);
        assert!(err.contains(&named), "{members:?}: {err}");
    }
    let err = CheckpointFiles::from_tar(&tar_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no files"), "{err}");
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
        let err = CheckpointFiles::from_tar(&special("model.safetensors", kind, link))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(what) && err.contains("\"model.safetensors\""),
            "{err}"
        );
    }
}

#[test]
fn tar_refuses_garbage_and_truncation() {
    let full = tar_of(&[("config.json", &[b'x'; 2000])]);
    let err = CheckpointFiles::from_tar(&full[..1000])
        .unwrap_err()
        .to_string();
    assert!(err.contains("tar archive"), "{err}");
    let err = CheckpointFiles::from_tar(&[7u8; 1024])
        .unwrap_err()
        .to_string();
    assert!(err.contains("tar archive"), "{err}");
}

#[test]
fn store_is_atomic_and_removable_and_the_sweep_clears_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = ValidatedCheckpoint {
            files: vec![("a.json".into(), b"{}".to_vec()), ("b.md".into(), b"hi".to_vec())],
            kind: PROVER,
            config: ModelConfig::Llama(
                serde_json::from_str(
                    r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#,
                )
                .unwrap(),
            ),
            prompts: None,
            score_head: false,
            tensor_prefix: String::new(),
            parameters: 0,
            dtypes: vec![],
        };
    let rel = store_checkpoint(dir.path(), &checkpoint).unwrap();
    assert!(rel.starts_with("uploads/"), "{rel}");
    assert_eq!(fs::read(dir.path().join(&rel).join("b.md")).unwrap(), b"hi");
    let listed: Vec<_> = fs::read_dir(dir.path().join(UPLOADS_DIR))
        .unwrap()
        .collect();
    assert_eq!(listed.len(), 1, "no temp folder is left");

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
fn a_failed_write_leaves_no_temp_folder() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = ValidatedCheckpoint {
            // Invalid on purpose: a name with a separator makes the write fail midway.
            files: vec![("a.json".into(), b"{}".to_vec()), ("missing/b.md".into(), b"hi".to_vec())],
            kind: PROVER,
            config: ModelConfig::Llama(
                serde_json::from_str(
                    r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#,
                )
                .unwrap(),
            ),
            prompts: None,
            score_head: false,
            tensor_prefix: String::new(),
            parameters: 0,
            dtypes: vec![],
        };
    assert!(store_checkpoint(dir.path(), &checkpoint).is_err());
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
    let limits = CheckpointLimits::default();
    // One folder inside is descended into; the files come back sorted.
    let files = CheckpointFiles::from_dir(&dir.path().join("outer"), &limits).unwrap();
    assert_eq!(names(&files), ["README.md", "config.json"]);
    let err = CheckpointFiles::from_dir(&ckpt, &CheckpointLimits { max_bytes: 3 }).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    fs::create_dir(ckpt.join("sub")).unwrap();
    let err = CheckpointFiles::from_dir(&ckpt, &limits)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sub") && err.contains("nested too deeply"),
        "{err}"
    );
    fs::remove_dir(ckpt.join("sub")).unwrap();
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
    }
}

#[test]
#[ignore = "needs a real all-MiniLM-L6-v2 in LEGIBILITY_TEST_BERT_DIR"]
fn a_real_sentence_encoder_is_a_valid_verifier_upload() {
    // Its top-level files (sub-folders such as 1_Pooling/ and hidden files left out) pass
    // verifier upload validation as they are.
    let dir = std::env::var("LEGIBILITY_TEST_BERT_DIR").expect("LEGIBILITY_TEST_BERT_DIR");
    let mut files = CheckpointFiles::new();
    for entry in std::fs::read_dir(&dir).expect("list") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("type").is_file() && !name.starts_with('.') {
            files.push(name, std::fs::read(entry.path()).expect("read"));
        }
    }
    let checkpoint = validate(
        files,
        CheckpointKind::Verifier,
        &CheckpointLimits::default(),
    )
    .expect("a real all-MiniLM-L6-v2 is a valid verifier upload");
    assert!(!checkpoint.score_head());
    assert_eq!(checkpoint.parameters(), 22_713_216);
}
