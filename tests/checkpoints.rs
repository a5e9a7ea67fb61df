//! Checkpoint upload through the admin page (loose files or one tar archive) and the CLI, for
//! provers (Llama) and verifiers (a Llama body with a score head, or a BERT-family encoder): a
//! valid checkpoint is stored under the models directory and registered with its kind; every
//! refusal is a 4xx naming the problem and leaves nothing behind (no folder, no temp folder, no
//! row).

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use clap::Parser;
use common::{Backend, Client, TestApp, TestDb, TestResponse};
use legibility::clock::Clock;
use legibility::domain::{CheckpointKind, UserRole};
use legibility::store::Store;
use legibility::web::{self, AppState, WebConfig};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// The application with its models directory in a temp folder and the given checkpoint limit.
async fn start(backend: Backend, max_checkpoint_bytes: u64) -> (TestApp, tempfile::TempDir) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect and migrate");
    let models = tempfile::tempdir().expect("models dir");
    let config = WebConfig {
        models_dir: models.path().to_path_buf(),
        max_checkpoint_bytes,
        ..WebConfig::default()
    };
    let state = AppState {
        store,
        clock: Clock::default(),
        config: Arc::new(config),
    };
    let router = web::router(state.clone());
    (TestApp { state, router, db }, models)
}

const LIMIT: u64 = 1024 * 1024;

fn config_json(hidden_size: usize) -> Vec<u8> {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 16,
        "bos_token_id": 1,
        "eos_token_id": 2,
    })
    .to_string()
    .into_bytes()
}

/// A hand-written WordLevel tokenizer with a whitespace pre-tokenizer: 12 tokens.
fn tokenizer_json() -> Vec<u8> {
    let words = [
        "[UNK]", "<s>", "</s>", "the", "answer", "is", "step", "one", "two", "three", "=", "####",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        })
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[UNK]"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]" }
    })
    .to_string()
    .into_bytes()
}

/// Zero tensors with these names and shapes: F32, or I64 for a `position_ids` buffer.
fn tensors_of(shapes: &[(String, Vec<usize>)]) -> Vec<u8> {
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
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A tiny Llama verifier: the body of [`weights`] without `lm_head`, plus the score head.
fn llama_verifier_files() -> Vec<(String, Vec<u8>)> {
    let config: legibility::ml::config::LlamaConfig =
        serde_json::from_slice(&config_json(8)).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = config
        .expected_tensors()
        .into_iter()
        .filter(|(name, _)| name != "lm_head.weight")
        .collect();
    shapes.push(("score.weight".into(), vec![1, 8]));
    shapes.push(("score.bias".into(), vec![1]));
    vec![
        ("config.json".into(), config_json(8)),
        ("tokenizer.json".into(), tokenizer_json()),
        ("model.safetensors".into(), tensors_of(&shapes)),
        ("README.md".into(), b"A tiny test verifier.\n".to_vec()),
    ]
}

/// A tiny BERT-family encoder as `BertForSequenceClassification` exports it (`bert.` prefix,
/// pooler, position-ids buffer), without a score head, plus sentence-transformers side files.
fn bert_files() -> Vec<(String, Vec<u8>)> {
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 16,
        "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 32, "hidden_act": "gelu"
    });
    let parsed: legibility::ml::bert::BertConfig = serde_json::from_value(config.clone()).unwrap();
    let mut shapes = parsed.expected_tensors("bert.");
    shapes.extend(parsed.pooler_tensors("bert."));
    shapes.push(("bert.embeddings.position_ids".into(), vec![1, 32]));
    vec![
        ("config.json".into(), config.to_string().into_bytes()),
        ("tokenizer.json".into(), tokenizer_json()),
        ("model.safetensors".into(), tensors_of(&shapes)),
        ("vocab.txt".into(), b"[UNK]\n<s>\n</s>\n".to_vec()),
        (
            "modules.json".into(),
            br#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]"#.to_vec(),
        ),
        (
            "sentence_bert_config.json".into(),
            br#"{"max_seq_length": 256, "do_lower_case": false}"#.to_vec(),
        ),
    ]
}

/// Weights for hidden size 8, intermediate 16, one layer, two heads, vocabulary 16 (f32 zeros).
fn weights() -> Vec<u8> {
    let (h, f, v) = (8usize, 16usize, 16usize);
    let p = "model.layers.0";
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, h]),
        (format!("{p}.input_layernorm.weight"), vec![h]),
        (format!("{p}.self_attn.q_proj.weight"), vec![h, h]),
        (format!("{p}.self_attn.k_proj.weight"), vec![h, h]),
        (format!("{p}.self_attn.v_proj.weight"), vec![h, h]),
        (format!("{p}.self_attn.o_proj.weight"), vec![h, h]),
        (format!("{p}.post_attention_layernorm.weight"), vec![h]),
        (format!("{p}.mlp.gate_proj.weight"), vec![f, h]),
        (format!("{p}.mlp.up_proj.weight"), vec![f, h]),
        (format!("{p}.mlp.down_proj.weight"), vec![h, f]),
        ("model.norm.weight".into(), vec![h]),
        ("lm_head.weight".into(), vec![v, h]),
    ];
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let bytes = vec![0u8; shape.iter().product::<usize>() * 4];
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn prompt_template_json() -> Vec<u8> {
    serde_json::to_vec(&legibility::ml::prompt::PromptTemplate::default()).unwrap()
}

/// A complete valid checkpoint.
fn valid_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("config.json".into(), config_json(8)),
        ("tokenizer.json".into(), tokenizer_json()),
        ("model.safetensors".into(), weights()),
        ("prompt_template.json".into(), prompt_template_json()),
        ("README.md".into(), b"A tiny test prover.\n".to_vec()),
    ]
}

fn replaced(name: &str, bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    valid_files()
        .into_iter()
        .map(|(n, b)| {
            if n == name {
                (n, bytes.clone())
            } else {
                (n, b)
            }
        })
        .collect()
}

fn tar_with_folder(folder: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder
        .append_data(&mut dir, format!("{folder}/"), &[][..])
        .unwrap();
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, format!("{folder}/{name}"), bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// A tar of the valid files plus one member whose header is written by hand (paths and types
/// the builder's safe setters refuse).
fn tar_with_raw_member(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in valid_files() {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, format!("ckpt/{name}"), bytes.as_slice())
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(if kind.is_file() { 4 } else { 0 });
    let name = &mut header.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        header.set_link_name_literal(link).unwrap();
    }
    header.set_cksum();
    let data: &[u8] = if kind.is_file() { b"evil" } else { b"" };
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

/// Posts the upload form for a prover checkpoint.
async fn upload(
    client: &mut Client<'_>,
    label: &str,
    round: &str,
    files: &[(String, Vec<u8>)],
) -> TestResponse {
    upload_kind(client, label, round, "prover", files).await
}

/// Posts the upload form (see [`Client::upload_checkpoint`]).
async fn upload_kind(
    client: &mut Client<'_>,
    label: &str,
    round: &str,
    kind: &str,
    files: &[(String, Vec<u8>)],
) -> TestResponse {
    client.upload_checkpoint(label, round, kind, files).await
}

/// The page's text with askama's HTML escapes undone, for matching messages.
fn text(response: &TestResponse) -> String {
    response
        .body
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The message of the page's error box.
fn alert(response: &TestResponse) -> String {
    let page = text(response);
    page.split("role=\"alert\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_default()
        .to_string()
}

/// Entries of `models/uploads` (an absent folder counts as empty).
fn uploads(models: &Path) -> Vec<String> {
    match std::fs::read_dir(models.join("uploads")) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

async fn checkpoint_count(app: &TestApp) -> usize {
    app.store().checkpoint_details().await.unwrap().len()
}

/// A refusal: the status, a message naming the problem on the re-rendered page, and nothing
/// written (no new folder or temp folder, no new row).
async fn assert_refused(
    app: &TestApp,
    models: &Path,
    response: &TestResponse,
    status: StatusCode,
    needles: &[&str],
    uploads_before: &[String],
    rows_before: usize,
) {
    let page = text(response);
    assert_eq!(response.status, status, "{page}");
    assert!(page.contains("role=\"alert\""), "no error shown: {page}");
    for needle in needles {
        assert!(page.contains(needle), "{needle:?} not in: {page}");
    }
    assert!(
        page.contains("Upload a checkpoint"),
        "the form is shown again"
    );
    assert_eq!(
        uploads(models),
        uploads_before,
        "a refused upload wrote files"
    );
    assert_eq!(
        checkpoint_count(app).await,
        rows_before,
        "a refused upload wrote a row"
    );
}

/// The names of `files` a checkpoint keeps (Hub side files such as README.md are ignored),
/// sorted.
fn kept_names(files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    names
}

fn stored_files(models: &Path, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_hand_written_tokenizer_loads() {
    let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json()).unwrap();
    assert_eq!(tokenizer.get_vocab_size(true), 12);
    let encoding = tokenizer.encode("the answer is two", false).unwrap();
    assert_eq!(encoding.get_ids(), [3, 4, 5, 8]);
}

async fn valid_uploads_are_stored_and_registered(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    app.fixture(1, 1, 1, 45_000).await; // an import-only checkpoint
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    assert!(
        admin
            .get("/studies")
            .await
            .body
            .contains("/admin/checkpoints")
    );

    // Loose files.
    let response = upload(&mut admin, "prover-r0", "0", &valid_files()).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        text(&response)
    );
    let location = response.location().unwrap().to_string();
    let page = admin.get(&location).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = text(&page);
    assert!(
        body.contains("Added prover checkpoint \"prover-r0\""),
        "{body}"
    );
    assert!(body.contains("import only"), "{body}");

    let rows = app.store().checkpoint_details().await.unwrap();
    let row = rows.iter().find(|c| c.label == "prover-r0").unwrap();
    assert_eq!((row.kind, row.round), (CheckpointKind::Prover, 0));
    let rel = row.model_dir.clone().expect("model_dir is set");
    assert!(rel.starts_with("uploads/"), "{rel}");
    assert!(body.contains(&rel), "the table shows the folder: {body}");
    assert_eq!(
        app.store().checkpoint_model_dir(row.id).await.unwrap(),
        Some(rel.clone())
    );
    let expected = kept_names(&valid_files());
    assert_eq!(stored_files(models.path(), &rel), expected);
    assert!(
        body.contains("README.md (not used here)"),
        "the page lists what was ignored: {body}"
    );
    assert_eq!(
        std::fs::read(models.path().join(&rel).join("model.safetensors")).unwrap(),
        weights()
    );
    let (metadata,): (String,) = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as("SELECT metadata FROM checkpoints WHERE label = 'prover-r0'")
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["source"], "upload");
    assert_eq!(metadata["files"].as_array().unwrap().len(), expected.len());
    assert_eq!(
        metadata["ignored"],
        serde_json::json!([{"name": "README.md", "reason": "not used here"}])
    );
    assert_eq!(metadata["architecture"]["hidden_size"], 8);
    assert_eq!(metadata["prompt_template"], true);

    // One tar archive with one top-level folder.
    let archive = tar_with_folder("prover-r1", &valid_files());
    let response = upload(
        &mut admin,
        "prover-r1",
        "1",
        &[("prover-r1.tar".into(), archive)],
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        text(&response)
    );
    let rows = app.store().checkpoint_details().await.unwrap();
    let row = rows.iter().find(|c| c.label == "prover-r1").unwrap();
    let rel1 = row.model_dir.clone().unwrap();
    assert_eq!(stored_files(models.path(), &rel1), expected);
    assert_eq!(
        uploads(models.path()).len(),
        2,
        "exactly the two folders, no temp folder"
    );

    // The same label again: 409 naming it, and the stored folder is removed again.
    let before = uploads(models.path());
    let rows_before = checkpoint_count(&app).await;
    let response = upload(&mut admin, "prover-r0", "2", &valid_files()).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::CONFLICT,
        &["a checkpoint labelled \"prover-r0\" already exists"],
        &before,
        rows_before,
    )
    .await;
}
on_both_backends!(valid_uploads_are_stored_and_registered);

async fn invalid_checkpoints_are_refused_and_leave_nothing(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let rows_before = checkpoint_count(&app).await;
    let nothing: Vec<String> = Vec::new();

    let weights = weights();
    let mut garbage_header = 24u64.to_le_bytes().to_vec();
    garbage_header.extend_from_slice(b"this is not a JSON head");
    garbage_header.extend_from_slice(&weights[32..]);
    let pytorch_only: Files = valid_files()
        .into_iter()
        .map(|(n, b)| {
            if n == "model.safetensors" {
                ("pytorch_model.bin".into(), b)
            } else {
                (n, b)
            }
        })
        .collect();
    let gguf_only: Files = vec![
        ("tiny-prover.Q8_0.gguf".into(), b"GGUF".to_vec()),
        ("README.md".into(), b"# GGUF quants".to_vec()),
    ];
    let without_tokenizer: Vec<(String, Vec<u8>)> = valid_files()
        .into_iter()
        .filter(|(n, _)| n != "tokenizer.json")
        .collect();
    let mut big_vocab: serde_json::Value = serde_json::from_slice(&tokenizer_json()).unwrap();
    for i in 12..20 {
        big_vocab["model"]["vocab"][format!("w{i}")] = serde_json::json!(i);
    }

    let cases: Vec<(&str, Files, Vec<&str>)> = vec![
        (
            "truncated safetensors",
            replaced("model.safetensors", weights[..weights.len() - 100].to_vec()),
            vec!["model.safetensors is not a valid safetensors file"],
        ),
        (
            "garbage safetensors header",
            replaced("model.safetensors", garbage_header),
            vec!["model.safetensors is not a valid safetensors file"],
        ),
        (
            "config and tensors disagree",
            replaced("config.json", config_json(16)),
            vec!["model.embed_tokens.weight has shape [16, 8] but config.json implies [16, 16]"],
        ),
        (
            "PyTorch weights only",
            pytorch_only,
            vec![
                "this checkpoint has PyTorch .bin weights only (pytorch_model.bin); convert it with `save_pretrained(..., safe_serialization=True)` (or the transformers `convert` script) and upload the safetensors",
            ],
        ),
        (
            "GGUF weights only",
            gguf_only,
            vec![
                "config.json is missing: a GGUF prover (tiny-prover.Q8_0.gguf) needs the original model's config.json and tokenizer.json beside it",
            ],
        ),
        (
            "GGUF weights that are not GGUF",
            valid_files()
                .into_iter()
                .map(|(n, b)| {
                    if n == "model.safetensors" {
                        ("model.gguf".into(), b"GGUF".to_vec())
                    } else {
                        (n, b)
                    }
                })
                .collect(),
            vec!["model.gguf: not a readable GGUF file"],
        ),
        (
            "missing tokenizer",
            without_tokenizer,
            vec!["tokenizer.json is missing"],
        ),
        (
            "tokenizer larger than the vocabulary",
            replaced("tokenizer.json", big_vocab.to_string().into_bytes()),
            vec!["tokenizer.json has 20 tokens", "vocab_size 16"],
        ),
        (
            "broken config",
            replaced("config.json", b"{\"hidden_size\": 8}".to_vec()),
            vec!["config.json is not a valid Llama config"],
        ),
        (
            "bad prompt template",
            replaced(
                "prompt_template.json",
                br#"{"helpful":"x","sneaky":"y"}"#.to_vec(),
            ),
            vec!["prompt_template.json: the helpful prompt must contain {question}"],
        ),
        (
            "evil ../ member",
            vec![(
                "evil.tar".into(),
                tar_with_raw_member("../evil", tar::EntryType::Regular, None),
            )],
            vec!["evil.tar", "\"../evil\"", "\"..\" component"],
        ),
        (
            "symlink member",
            vec![(
                "link.tar".into(),
                tar_with_raw_member(
                    "ckpt/model2.safetensors",
                    tar::EntryType::Symlink,
                    Some("/etc/passwd"),
                ),
            )],
            vec!["\"ckpt/model2.safetensors\" is a symbolic link"],
        ),
        (
            "file name leaving its folder",
            vec![("../config.json".into(), config_json(8))],
            vec!["\"../config.json\"", "\"..\" component"],
        ),
        ("no files", vec![], vec!["no files were uploaded"]),
    ];
    for (what, files, needles) in cases {
        let response = upload(&mut admin, &format!("bad-{what}"), "0", &files).await;
        println!("{what}: {} {}", response.status, alert(&response));
        assert_refused(
            &app,
            models.path(),
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &needles,
            &nothing,
            rows_before,
        )
        .await;
    }

    // Form fields are checked too, before any file is looked at.
    let response = upload(&mut admin, "  ", "0", &valid_files()).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["needs a label"],
        &nothing,
        rows_before,
    )
    .await;
    let response = upload(&mut admin, "ok", "-1", &valid_files()).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["round must be 0 or more"],
        &nothing,
        rows_before,
    )
    .await;
}
on_both_backends!(invalid_checkpoints_are_refused_and_leave_nothing);

async fn uploads_over_the_limit_are_refused(backend: Backend) {
    // The valid checkpoint is a few KiB: over a 2000-byte limit.
    let (app, models) = start(backend, 2000).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let response = upload(&mut admin, "too-big", "0", &valid_files()).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["over the limit of 2000 bytes"],
        &[],
        0,
    )
    .await;
    // A body far beyond the limit is refused as it is read (here at once: it arrives in one
    // piece; see `an_upload_over_the_limit_is_refused_while_it_streams` for a body that
    // streams).
    let huge = vec![("model.safetensors".to_string(), vec![0u8; 1536 * 1024])];
    let response = upload(&mut admin, "way-too-big", "0", &huge).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["The upload is larger than 1.00 MiB: twice the limit of 2000 bytes"],
        &[],
        0,
    )
    .await;
    // Ignored files are read past, but the request as a whole is capped.
    let mut with_bin = valid_files();
    with_bin.retain(|(n, _)| n != "model.safetensors");
    with_bin.push(("pytorch_model.bin".to_string(), vec![0u8; 1536 * 1024]));
    let response = upload(&mut admin, "body-too-big", "0", &with_bin).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["The upload is larger than", "twice the limit"],
        &[],
        0,
    )
    .await;
}
on_both_backends!(uploads_over_the_limit_are_refused);

async fn researchers_may_not_upload(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    assert_eq!(
        researcher.get("/admin/checkpoints").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        !researcher
            .get("/studies")
            .await
            .body
            .contains("/admin/checkpoints")
    );
    let response = upload(&mut researcher, "sneaky-upload", "0", &valid_files()).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert!(uploads(models.path()).is_empty());
    assert_eq!(checkpoint_count(&app).await, 0);
    let mut anonymous = app.client();
    let response = upload(&mut anonymous, "anon-upload", "0", &valid_files()).await;
    assert_eq!(response.location(), Some("/login"));
    assert!(uploads(models.path()).is_empty());
}
on_both_backends!(researchers_may_not_upload);

async fn the_cli_adds_folders_and_archives(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let source = tempfile::tempdir().unwrap();
    let folder = source.path().join("prover-cli");
    std::fs::create_dir(&folder).unwrap();
    for (name, bytes) in valid_files() {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    let archive = source.path().join("prover-cli.tar");
    std::fs::write(&archive, tar_with_folder("x", &valid_files())).unwrap();
    let models_arg = models.path().to_str().unwrap().to_string();
    let run = |label: &str, path: &Path| {
        let cli = legibility::cli::Cli::parse_from([
            "legibility",
            "--database-url",
            &app.db.url,
            "checkpoint",
            "add",
            "--label",
            label,
            "--round",
            "3",
            "--models-dir",
            &models_arg,
            path.to_str().unwrap(),
        ]);
        legibility::cli::run(cli)
    };
    run("cli-folder", &folder).await.unwrap();
    run("cli-tar", &archive).await.unwrap();
    let rows = app.store().checkpoint_details().await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.round, 3);
        let rel = row.model_dir.as_deref().unwrap();
        assert_eq!(stored_files(models.path(), rel), kept_names(&valid_files()));
    }

    // A refused folder (a symbolic link inside) and a duplicate label write nothing.
    let before = uploads(models.path());
    #[cfg(unix)]
    {
        let link = folder.join("generation_config.json");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let err = run("cli-link", &folder).await.unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        std::fs::remove_file(link).unwrap();
    }
    let err = run("cli-folder", &folder).await.unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert_eq!(uploads(models.path()), before);
    assert_eq!(checkpoint_count(&app).await, 2);
}
on_both_backends!(the_cli_adds_folders_and_archives);

/// The metadata JSON of the checkpoint labelled `label`.
async fn metadata_of(app: &TestApp, label: &str) -> serde_json::Value {
    let (metadata,): (String,) = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as("SELECT metadata FROM checkpoints WHERE label = $1")
            .bind(label)
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    serde_json::from_str(&metadata).unwrap()
}

/// A checkpoint's files as (name, bytes).
type Files = Vec<(String, Vec<u8>)>;

async fn verifier_uploads_are_stored_and_registered(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let page = text(&admin.get("/admin/checkpoints").await);
    assert!(page.contains("<option value=\"verifier\""), "{page}");

    // A tiny Llama verifier (loose files) and a tiny BERT encoder (one tar archive).
    let archive = tar_with_folder("minilm", &bert_files());
    let uploads_list: [(&str, Files); 2] = [
        ("verifier-llama", llama_verifier_files()),
        ("verifier-bert", vec![("minilm.tar".into(), archive)]),
    ];
    for (label, files) in uploads_list {
        let response = upload_kind(&mut admin, label, "1", "verifier", &files).await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "{label}: {}",
            text(&response)
        );
        let page = text(&admin.get(response.location().unwrap()).await);
        assert!(
            page.contains(&format!("Added verifier checkpoint \"{label}\"")),
            "{page}"
        );
    }
    let rows = app.store().checkpoint_details().await.unwrap();
    assert_eq!(rows.len(), 2);
    for (label, files, model_type, score_head) in [
        ("verifier-llama", llama_verifier_files(), "llama", true),
        ("verifier-bert", bert_files(), "bert", false),
    ] {
        let row = rows.iter().find(|c| c.label == label).unwrap();
        assert_eq!((row.kind, row.round), (CheckpointKind::Verifier, 1));
        let rel = row.model_dir.clone().expect("model_dir is set");
        assert_eq!(stored_files(models.path(), &rel), kept_names(&files));
        let metadata = metadata_of(&app, label).await;
        assert_eq!(metadata["model_type"], model_type);
        assert_eq!(metadata["architecture"]["model_type"], model_type);
        assert_eq!(metadata["score_head"], score_head);
    }
    assert_eq!(
        metadata_of(&app, "verifier-bert").await["tensor_prefix"],
        "bert."
    );

    // A BERT encoder is no prover; a verifier's score head must have the shape the config
    // implies; a verifier has no prompt template. Nothing is written for any of them.
    let before = uploads(models.path());
    let mut wrong_head = llama_verifier_files();
    let config: legibility::ml::config::LlamaConfig =
        serde_json::from_slice(&config_json(8)).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = config
        .expected_tensors()
        .into_iter()
        .filter(|(name, _)| name != "lm_head.weight")
        .collect();
    shapes.push(("score.weight".into(), vec![1, 9]));
    wrong_head[2].1 = tensors_of(&shapes);
    let mut with_template = llama_verifier_files();
    with_template.push(("prompt_template.json".into(), prompt_template_json()));
    let cases: [(&str, &str, Files, &str); 3] = [
        (
            "prover",
            "bert-prover",
            bert_files(),
            "prover checkpoints must be",
        ),
        (
            "verifier",
            "wrong-head",
            wrong_head,
            "score.weight has shape [1, 9]",
        ),
        (
            "verifier",
            "templated",
            with_template,
            "prompt_template.json belongs to prover checkpoints only",
        ),
    ];
    for (kind, label, files, needle) in cases {
        let response = upload_kind(&mut admin, label, "0", kind, &files).await;
        assert_refused(
            &app,
            models.path(),
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &[needle],
            &before,
            2,
        )
        .await;
        if kind == "verifier" {
            assert!(
                text(&response).contains("<option value=\"verifier\" selected>"),
                "the chosen kind is kept"
            );
        }
    }

    // The CLI adds verifiers too.
    let source = tempfile::tempdir().unwrap();
    let folder = source.path().join("bert");
    std::fs::create_dir(&folder).unwrap();
    for (name, bytes) in bert_files() {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    let models_arg = models.path().to_str().unwrap().to_string();
    let cli = legibility::cli::Cli::parse_from([
        "legibility",
        "--database-url",
        &app.db.url,
        "checkpoint",
        "add",
        "--label",
        "verifier-cli",
        "--round",
        "2",
        "--kind",
        "verifier",
        "--models-dir",
        &models_arg,
        folder.to_str().unwrap(),
    ]);
    legibility::cli::run(cli).await.unwrap();
    let rows = app.store().checkpoint_details().await.unwrap();
    let row = rows.iter().find(|c| c.label == "verifier-cli").unwrap();
    assert_eq!((row.kind, row.round), (CheckpointKind::Verifier, 2));
    assert_eq!(
        metadata_of(&app, "verifier-cli").await["model_type"],
        "bert"
    );
}
on_both_backends!(verifier_uploads_are_stored_and_registered);

/// Chat templates of instruct provers are checked at upload: one that does not parse, or that
/// refuses every conversation, is refused with the template's own error and leaves nothing;
/// a chat-form `prompt_template.json` needs a chat template; a good one is stored with its
/// template and recorded as a chat prover.
async fn chat_templates_are_checked_at_upload(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let nothing: Vec<String> = Vec::new();
    let with = |extra: &[(&str, &str)]| {
        let mut files: Files = valid_files()
            .into_iter()
            .filter(|(n, _)| n != "prompt_template.json")
            .collect();
        for (name, text) in extra {
            files.push((name.to_string(), text.as_bytes().to_vec()));
        }
        files
    };
    let chat_prompt = r#"{"system": {"helpful": "Be right.", "sneaky": "Be subtly wrong."}, "user": "{question}"}"#;
    let cases: Vec<(&str, Files, Vec<&str>)> = vec![
        (
            "template that does not parse",
            with(&[(
                "chat_template.jinja",
                "{% for message in messages %}{{ message['content'] }}",
            )]),
            vec![
                "chat_template.jinja: the chat template does not parse: syntax error: unexpected end of input",
                "chat_template.jinja:1",
            ],
        ),
        (
            "inline template that does not parse",
            with(&[(
                "tokenizer_config.json",
                r#"{"chat_template": "{{ messages[0]['content'] ", "bos_token": "<s>"}"#,
            )]),
            vec!["tokenizer_config.json: the chat template does not parse: syntax error"],
        ),
        (
            "template that refuses every conversation",
            with(&[(
                "chat_template.jinja",
                "{{ raise_exception('Only tool calls are supported.') }}",
            )]),
            vec![
                "chat_template.jinja: the chat template refused the conversation: Only tool calls are supported.",
            ],
        ),
        (
            "chat prompts without a chat template",
            with(&[("prompt_template.json", chat_prompt)]),
            vec!["prompt_template.json has the chat form", "no chat template"],
        ),
    ];
    for (what, files, needles) in cases {
        let response = upload(&mut admin, &format!("bad-{what}"), "0", &files).await;
        println!("{what}: {} {}", response.status, alert(&response));
        assert_refused(
            &app,
            models.path(),
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &needles,
            &nothing,
            0,
        )
        .await;
    }

    // A ChatML-style template with the chat prompts: stored with both files, recorded as chat.
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let files = with(&[
        ("chat_template.jinja", template),
        ("prompt_template.json", chat_prompt),
    ]);
    let response = upload(&mut admin, "instruct-r0", "0", &files).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        alert(&response)
    );
    let metadata = metadata_of(&app, "instruct-r0").await;
    assert_eq!(metadata["chat_template"], true);
    assert_eq!(metadata["prompt_template"], true);
    let stored = uploads(models.path());
    assert_eq!(stored.len(), 1);
    let names = stored_files(models.path(), &format!("uploads/{}", stored[0]));
    assert!(
        names.contains(&"chat_template.jinja".to_string()),
        "{names:?}"
    );
    // A base prover is recorded as such.
    let response = upload(&mut admin, "base-r0", "0", &valid_files()).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        alert(&response)
    );
    assert_eq!(metadata_of(&app, "base-r0").await["chat_template"], false);
}
on_both_backends!(chat_templates_are_checked_at_upload);

// ---------------------------------------------------------------------------------------------
// Checkpoint folders as researchers have them: Hub side files, shards, PyTorch-only, in place,
// streaming.

/// A fixture checkpoint as `save_pretrained` wrote it (`tests/fixtures/transformers/<case>`),
/// without the test references that sit beside it.
fn fixture(case: &str) -> Files {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(case);
    let mut files: Files = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("reference."))
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

/// What a Hub download holds beside the checkpoint, Meta's `original/` folder included.
fn hub_side_files() -> Files {
    [
        (
            ".gitattributes",
            &b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"[..],
        ),
        ("README.md", b"---\nlicense: llama3.2\n---\n# Model card\n"),
        ("LICENSE", b"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\n"),
        ("USE_POLICY.md", b"# Acceptable use\n"),
        ("merges.txt", b"#version: 0.2\na b\n"),
        ("vocab.json", b"{\"a\": 0}"),
        ("tokenizer.model", b"sentencepiece"),
        ("original/consolidated.00.pth", b"PK pickle"),
        ("original/params.json", b"{\"dim\": 32}"),
        ("original/tokenizer.model", b"tiktoken"),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b.to_vec()))
    .collect()
}

/// The side files as the page, the CLI and the metadata list them, sorted.
fn hub_ignored() -> Vec<String> {
    let mut names: Vec<String> = [
        ".gitattributes (hidden)",
        "README.md (not used here)",
        "LICENSE (not used here)",
        "USE_POLICY.md (not used here)",
        "merges.txt (not used here)",
        "vocab.json (not used here)",
        "tokenizer.model (sentencepiece model; tokenizer.json is used)",
        "original/ (a sub-folder)",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    names.sort();
    names
}

/// The ignored list of a checkpoint's metadata as "name (reason)", sorted.
async fn ignored_of(app: &TestApp, label: &str) -> Vec<String> {
    let metadata = metadata_of(app, label).await;
    let mut names: Vec<String> = metadata["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} ({})",
                i["name"].as_str().unwrap(),
                i["reason"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// Writes `files` (names may hold folders) under `dir`.
fn write_folder(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// `legibility checkpoint add` with these arguments before the path.
async fn cli_add(app: &TestApp, models: &Path, args: &[&str], path: &Path) -> anyhow::Result<()> {
    let mut argv = vec![
        "legibility",
        "--database-url",
        &app.db.url,
        "checkpoint",
        "add",
        "--models-dir",
        models.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    argv.push(path.to_str().unwrap());
    legibility::cli::run(legibility::cli::Cli::parse_from(argv)).await
}

/// The cases every upload path is tried with on both backends; every other fixture is tried
/// on SQLite by `every_fixture_is_accepted_as_a_hub_folder`.
const HUB_CASES: &[(&str, &str)] = &[("llama", "prover"), ("llama-v4", "prover")];

/// One fixture as a Hub-style folder (its files plus [`hub_side_files`]) through the page as
/// loose files, as a folder upload and as a tar, and through the CLI as a folder and as a
/// tar: each accepted, exactly the checkpoint's files stored, the side files listed as
/// ignored.
async fn hub_folder_is_accepted_everywhere(
    app: &TestApp,
    models: &Path,
    admin: &mut Client<'_>,
    case: &str,
    kind: &str,
) {
    let checkpoint = fixture(case);
    // What the checkpoint keeps of its own files (the rest, such as a chat template while it
    // is not read, is listed as ignored with the Hub side files).
    let classify = legibility::checkpoints::files::classify;
    let mut expected: Vec<String> = checkpoint.iter().map(|(n, _)| n.clone()).collect();
    expected.retain(|n| classify(n).is_none());
    expected.sort();
    let mut expected_ignored = hub_ignored();
    for (name, _) in &checkpoint {
        if let Some(reason) = classify(name) {
            expected_ignored.push(format!("{name} ({})", reason.describe()));
        }
    }
    expected_ignored.sort();
    let mut hub = checkpoint.clone();
    hub.extend(hub_side_files());
    let folder_upload: Files = hub
        .iter()
        .map(|(n, b)| (format!("{case}-hub/{n}"), b.clone()))
        .collect();
    let page_cases: [(&str, Files); 3] = [
        ("loose", hub.clone()),
        ("folder", folder_upload),
        (
            "tar",
            vec![(format!("{case}.tar"), tar_with_folder(case, &hub))],
        ),
    ];
    for (how, files) in page_cases {
        let label = format!("{case}-page-{how}");
        let response = upload_kind(admin, &label, "0", kind, &files).await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "{case} {how}: {}",
            alert(&response)
        );
        let page = text(&admin.get(response.location().unwrap()).await);
        for ignored in &expected_ignored {
            assert!(
                page.contains(ignored.as_str()),
                "{case} {how}: {ignored} not listed: {page}"
            );
        }
        let rows = app.store().checkpoint_details().await.unwrap();
        let row = rows.iter().find(|c| c.label == label).unwrap();
        let rel = row.model_dir.clone().unwrap();
        assert_eq!(stored_files(models, &rel), expected, "{case} {how}");
        assert_eq!(
            ignored_of(app, &label).await,
            expected_ignored,
            "{case} {how}"
        );
    }

    let source = tempfile::tempdir().unwrap();
    let folder = source.path().join(format!("{case}-hub"));
    write_folder(&folder, &hub);
    let archive = source.path().join(format!("{case}.tar"));
    std::fs::write(&archive, tar_with_folder(case, &hub)).unwrap();
    for (how, path) in [("folder", &folder), ("tar", &archive)] {
        let label = format!("{case}-cli-{how}");
        cli_add(
            app,
            models,
            &["--kind", kind, "--label", &label, "--round", "0"],
            path,
        )
        .await
        .unwrap_or_else(|e| panic!("{case} {how}: {e:#}"));
        let rows = app.store().checkpoint_details().await.unwrap();
        let rel = rows
            .iter()
            .find(|c| c.label == label)
            .and_then(|c| c.model_dir.clone())
            .unwrap();
        assert_eq!(stored_files(models, &rel), expected, "{case} {how}");
        assert_eq!(
            ignored_of(app, &label).await,
            expected_ignored,
            "{case} {how}"
        );
    }
    assert!(
        !uploads(models).iter().any(|n| n.starts_with(".tmp-")),
        "no temp folder is left"
    );
}

async fn hub_style_folders_are_accepted_with_their_side_files_ignored(backend: Backend) {
    let (app, models) = start(backend, 4 * LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    for (case, kind) in HUB_CASES {
        hub_folder_is_accepted_everywhere(&app, models.path(), &mut admin, case, kind).await;
    }
}
on_both_backends!(hub_style_folders_are_accepted_with_their_side_files_ignored);

/// Every fixture architecture (prover and decoder reward model) as a Hub folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fixture_is_accepted_as_a_hub_folder() {
    let (app, models) = start(Backend::Sqlite, 8 * LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transformers");
    let mut cases: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // BERT-family fixtures have their own tokenizer files (vocab.txt is kept for them).
        .filter(|c| !["bert-cls", "roberta-cls", "deberta-v2-cls"].contains(&c.as_str()))
        .collect();
    cases.sort();
    for case in cases {
        let kind = if case.ends_with("-cls") {
            "verifier"
        } else {
            "prover"
        };
        hub_folder_is_accepted_everywhere(&app, models.path(), &mut admin, &case, kind).await;
    }
}

/// The fixture's `model.safetensors` split into two shards with their index (as
/// `save_pretrained(max_shard_size=…)` writes them), in place of the single file.
fn sharded(files: &Files) -> Files {
    let weights = &files
        .iter()
        .find(|(n, _)| n == "model.safetensors")
        .unwrap()
        .1;
    let tensors = safetensors::SafeTensors::deserialize(weights).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().map(String::from).collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut out: Files = files
        .iter()
        .filter(|(n, _)| n != "model.safetensors")
        .cloned()
        .collect();
    let mut weight_map = serde_json::Map::new();
    for (part, shard) in [
        (first, "model-00001-of-00002.safetensors"),
        (second, "model-00002-of-00002.safetensors"),
    ] {
        let views: Vec<(String, TensorView<'_>)> = part
            .iter()
            .map(|name| {
                let view = tensors.tensor(name).unwrap();
                weight_map.insert(name.clone(), shard.into());
                (
                    name.clone(),
                    TensorView::new(view.dtype(), view.shape().to_vec(), view.data()).unwrap(),
                )
            })
            .collect();
        out.push((shard.into(), safetensors::serialize(views, None).unwrap()));
    }
    let index = serde_json::json!({
        "metadata": {"total_size": weights.len()},
        "weight_map": weight_map,
    });
    out.push((
        "model.safetensors.index.json".into(),
        index.to_string().into_bytes(),
    ));
    out
}

/// Greedy-ish text of a prover loaded from `dir` (fixed seed), to compare two loads.
fn generate_from(dir: &Path) -> String {
    use legibility::ml::prover::{Prover, SampleRequest};
    let mut prover = Prover::load(dir, &candle_core::Device::Cpu).unwrap();
    let params = legibility::ml::sampling::SamplingParams {
        max_new_tokens: 12,
        ..Default::default()
    };
    let samples = prover
        .generate(
            &[SampleRequest {
                question: "Tom has 3 apples and buys 4 more. How many apples?".into(),
                role: legibility::domain::ProverRole::Helpful,
                seed: 7,
            }],
            &params,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .unwrap();
    samples[0].text.clone()
}

async fn sharded_checkpoints_follow_their_index(backend: Backend) {
    let (app, models) = start(backend, 4 * LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let whole = fixture("llama");
    let mut files = sharded(&whole);
    // A Hub Mistral folder keeps Mistral's own consolidated file beside the shards.
    files.push((
        "consolidated.safetensors".into(),
        tensors_of(&[("layers.0.attention.wq.weight".into(), vec![4, 4])]),
    ));
    let response = upload(&mut admin, "sharded", "0", &files).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        alert(&response)
    );
    let page = text(&admin.get(response.location().unwrap()).await);
    assert!(
        page.contains("consolidated.safetensors (not listed in model.safetensors.index.json)"),
        "{page}"
    );
    let rows = app.store().checkpoint_details().await.unwrap();
    let rel = rows[0].model_dir.clone().unwrap();
    let stored = models.path().join(&rel);
    assert_eq!(
        stored_files(models.path(), &rel),
        [
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(metadata_of(&app, "sharded").await["sharded"], true);
    // Loading reads exactly the mapped shards, and gives the model the single file gives.
    let weights = legibility::ml::weight_files(&stored).unwrap();
    assert_eq!(
        weights,
        [
            stored.join("model-00001-of-00002.safetensors"),
            stored.join("model-00002-of-00002.safetensors")
        ]
    );
    let single = tempfile::tempdir().unwrap();
    write_folder(single.path(), &whole);
    let (a, b) = (stored.clone(), single.path().to_path_buf());
    let (from_shards, from_single) =
        tokio::task::spawn_blocking(move || (generate_from(&a), generate_from(&b)))
            .await
            .unwrap();
    assert_eq!(from_shards, from_single);
    assert!(!from_shards.is_empty());

    // A shard missing, or an index that names a tensor its shard does not hold: refused,
    // nothing left behind.
    let before = uploads(models.path());
    let missing: Files = sharded(&whole)
        .into_iter()
        .filter(|(n, _)| n != "model-00002-of-00002.safetensors")
        .collect();
    let mut wrong_map = sharded(&whole);
    let index = wrong_map
        .iter_mut()
        .find(|(n, _)| n == "model.safetensors.index.json")
        .unwrap();
    let mut parsed: serde_json::Value = serde_json::from_slice(&index.1).unwrap();
    parsed["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors".into();
    index.1 = parsed.to_string().into_bytes();
    for (label, files, needle) in [
        (
            "missing-shard",
            missing,
            "model-00002-of-00002.safetensors is missing: model.safetensors.index.json maps",
        ),
        (
            "wrong-map",
            wrong_map,
            "model.safetensors.index.json maps model.norm.weight to model-00001-of-00002.safetensors, but it is in model-00002-of-00002.safetensors",
        ),
    ] {
        let response = upload(&mut admin, label, "0", &files).await;
        assert_refused(
            &app,
            models.path(),
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &[needle],
            &before,
            1,
        )
        .await;
    }
}
on_both_backends!(sharded_checkpoints_follow_their_index);

/// A folder registered in place is validated like an upload, copied nowhere, registered with
/// its absolute path, and a generation job (whose worker's models folder is elsewhere) loads
/// it from there, through its shard index.
async fn in_place_checkpoints_are_registered_without_copying_and_generate(backend: Backend) {
    use legibility::domain::JobState;
    use legibility::worker::generation::{GenerationRequest, create_generated_study};
    use legibility::worker::{Worker, WorkerConfig, handlers};

    let (app, models) = start(backend, LIMIT).await;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/prover-tiny");
    let prover: Files = std::fs::read_dir(&shipped)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|n| {
            let bytes = std::fs::read(shipped.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    let mut files = sharded(&prover);
    files.extend(hub_side_files());
    let source = tempfile::tempdir().unwrap();
    let folder = source.path().join("prover-in-place");
    write_folder(&folder, &files);

    // Over the upload limit (8 MB against 1 MiB): in place, nothing is stored, so no limit.
    cli_add(
        &app,
        models.path(),
        &["--in-place", "--label", "in-place", "--round", "1"],
        &folder,
    )
    .await
    .unwrap();
    assert!(uploads(models.path()).is_empty(), "nothing was copied");
    let rows = app.store().checkpoint_details().await.unwrap();
    let row = rows.iter().find(|c| c.label == "in-place").unwrap();
    let registered = row.model_dir.clone().unwrap();
    assert_eq!(
        Path::new(&registered),
        std::fs::canonicalize(&folder).unwrap(),
        "the absolute path"
    );
    let metadata = metadata_of(&app, "in-place").await;
    assert_eq!(metadata["source"], "in-place");
    assert_eq!(metadata["sharded"], true);
    assert_eq!(ignored_of(&app, "in-place").await, hub_ignored());
    assert!(
        folder.join("LICENSE").exists(),
        "the folder is left as it is"
    );
    let shard = metadata["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "model-00001-of-00002.safetensors")
        .unwrap()
        .clone();
    assert_eq!(shard["sha256"].as_str().unwrap().len(), 64);

    // A generation job loads it from there: the worker's models folder does not hold it.
    let now = app.now();
    let jsonl = legibility::generator::to_gsm8k_jsonl(&legibility::generator::generate(7, 2));
    let records = legibility::problems::parse_gsm8k_problems(jsonl.as_bytes()).unwrap();
    app.store()
        .import_problems("in-place-test", &records, now)
        .await
        .unwrap();
    let set = app.store().problem_sets().await.unwrap()[0].id;
    let spec = legibility::store::studies::StudySpec {
        name: "in-place".into(),
        time_limit_ms: 45_000,
        judgements_per_solution: 1,
        reclaim_grace_ms: 15_000,
        problem_set_id: set,
        checkpoint_ids: vec![],
        roles: vec![],
        max_problems: Some(2),
        protocol: legibility::quality::RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let request = GenerationRequest {
        checkpoint_ids: vec![row.id],
        roles: vec![],
        samples_per_role: 1,
        sampling: Default::default(),
        seed: Some(5),
    };
    let (study, job) = create_generated_study(app.store(), &spec, request, None, now)
        .await
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut worker = Worker::new(
        app.store().clone(),
        Clock::default(),
        WorkerConfig {
            id: "in-place-worker".into(),
            lease_ms: 60_000,
            poll_ms: 50,
        },
    );
    for (kind, handler) in handlers(elsewhere.path(), 8) {
        worker.register(kind, handler);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let view = common::wait_for_end(app.store(), job, std::time::Duration::from_secs(600)).await;
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(view.state, JobState::Succeeded, "{view:?}");
    assert!(
        app.store()
            .study_progress(study.id)
            .await
            .unwrap()
            .solutions
            >= 2
    );

    // Refused: an archive, a temporary folder of the models directory, a folder that is not a
    // checkpoint; nothing registered.
    let rows_before = checkpoint_count(&app).await;
    let archive = source.path().join("prover.tar");
    std::fs::write(&archive, tar_with_folder("p", &prover)).unwrap();
    let temp = models.path().join("uploads/.tmp-crashed");
    write_folder(&temp, &prover);
    let empty = source.path().join("empty");
    write_folder(&empty, &hub_side_files());
    for (path, needle) in [
        (&archive, "is not a folder; --in-place registers"),
        (&temp, "is a temporary folder of an upload or training run"),
        (&empty, "config.json is missing"),
    ] {
        let err = cli_add(
            &app,
            models.path(),
            &["--in-place", "--label", "refused", "--round", "0"],
            path,
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    }
    assert_eq!(checkpoint_count(&app).await, rows_before);
}
on_both_backends!(in_place_checkpoints_are_registered_without_copying_and_generate);

/// A multipart body produced while it is sent: each piece is fixed bytes or a run of zeros;
/// `sent` counts the bytes handed to the server.
struct StreamedBody {
    pieces: std::collections::VecDeque<Piece>,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

enum Piece {
    Bytes(Vec<u8>),
    Zeros(u64),
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl futures_core::Stream for StreamedBody {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let chunk = match self.pieces.pop_front() {
            None => return std::task::Poll::Ready(None),
            Some(Piece::Bytes(bytes)) => axum::body::Bytes::from(bytes),
            Some(Piece::Zeros(n)) => {
                let now = n.min(ZEROS.len() as u64);
                if n > now {
                    self.pieces.push_front(Piece::Zeros(n - now));
                }
                axum::body::Bytes::from_static(&ZEROS[..now as usize])
            }
        };
        self.sent
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        std::task::Poll::Ready(Some(Ok(chunk)))
    }
}

const BOUNDARY: &str = "----legibility-streamed-boundary";

/// The pieces of an upload form whose files are (name, head bytes, zeros after the head).
fn streamed_form(label: &str, files: &[(&str, Vec<u8>, u64)]) -> std::collections::VecDeque<Piece> {
    let mut pieces = std::collections::VecDeque::new();
    let mut head = String::new();
    for (name, value) in [("label", label), ("round", "0"), ("kind", "prover")] {
        head.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    pieces.push_back(Piece::Bytes(head.into_bytes()));
    for (name, bytes, zeros) in files {
        pieces.push_back(Piece::Bytes(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes(),
        ));
        pieces.push_back(Piece::Bytes(bytes.clone()));
        pieces.push_back(Piece::Zeros(*zeros));
        pieces.push_back(Piece::Bytes(b"\r\n".to_vec()));
    }
    pieces.push_back(Piece::Bytes(format!("--{BOUNDARY}--\r\n").into_bytes()));
    pieces
}

/// Posts a streamed upload form; returns the response and how many bytes were sent.
async fn post_streamed(
    client: &mut Client<'_>,
    pieces: std::collections::VecDeque<Piece>,
) -> (TestResponse, u64) {
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = StreamedBody {
        pieces,
        sent: sent.clone(),
    };
    let response = client
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/admin/checkpoints")
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from_stream(body))
                .unwrap(),
        )
        .await;
    (response, sent.load(std::sync::atomic::Ordering::Relaxed))
}

async fn an_upload_over_the_limit_is_refused_while_it_streams(backend: Backend) {
    let (app, models) = start(backend, LIMIT).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let total = 256 * LIMIT;
    let pieces = streamed_form(
        "endless",
        &[
            ("config.json", config_json(8), 0),
            ("model.safetensors", Vec::new(), total),
        ],
    );
    let (response, sent) = post_streamed(&mut admin, pieces).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["over the limit of 1048576 bytes"],
        &[],
        0,
    )
    .await;
    assert!(
        sent < 16 * LIMIT,
        "refused while streaming: {sent} of {total} bytes were read"
    );
    // The same upload as a tar archive.
    let mut header = tar::Header::new_gnu();
    header.set_path("ckpt/model.safetensors").unwrap();
    header.set_size(total);
    header.set_mode(0o644);
    header.set_cksum();
    let pieces = streamed_form(
        "endless-tar",
        &[("endless.tar", header.as_bytes().to_vec(), total)],
    );
    let (response, sent) = post_streamed(&mut admin, pieces).await;
    assert_refused(
        &app,
        models.path(),
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["over the limit of 1048576 bytes"],
        &[],
        0,
    )
    .await;
    assert!(sent < 16 * LIMIT, "{sent} of {total} bytes were read");
}
on_both_backends!(an_upload_over_the_limit_is_refused_while_it_streams);
