//! A large checkpoint upload keeps the server's memory flat: a ~270 MB Llama checkpoint (F32
//! zeros), streamed through the admin page's upload, is written to disk as it arrives and
//! validated from its safetensors header, so the process's peak resident memory grows by a few
//! MiB, not by the checkpoint's size. This binary holds nothing else, so the process's peak is
//! the upload's (the two backends run one after the other).

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, TestApp};
use legibility::domain::UserRole;
use legibility::web::WebConfig;

/// Resident memory figures of this process, in KiB: (current, peak).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the process's peak resident memory to its current value (Linux `clear_refs`).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS via clear_refs");
}

enum Piece {
    Bytes(Vec<u8>),
    Zeros(u64),
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A body produced while it is sent, 64 KiB at a time.
struct StreamedBody {
    pieces: VecDeque<Piece>,
    sent: Arc<AtomicU64>,
}

impl futures_core::Stream for StreamedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let chunk = match self.pieces.pop_front() {
            None => return Poll::Ready(None),
            Some(Piece::Bytes(bytes)) => Bytes::from(bytes),
            Some(Piece::Zeros(n)) => {
                let now = n.min(ZEROS.len() as u64);
                if n > now {
                    self.pieces.push_front(Piece::Zeros(n - now));
                }
                Bytes::from_static(&ZEROS[..now as usize])
            }
        };
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// A 12-token WordLevel tokenizer (fits `vocab_size` 16).
fn tokenizer_json() -> Vec<u8> {
    let words = [
        "[UNK]", "<s>", "</s>", "the", "answer", "is", "step", "one", "two", "three", "=", "####",
    ];
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null, "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]" }
    })
    .to_string()
    .into_bytes()
}

/// A Llama config whose F32 tensors come to about 270 MB, its safetensors header (8-byte length
/// and JSON) and the length of the tensor data that follows it.
fn large_checkpoint() -> (Vec<u8>, Vec<u8>, u64) {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 4,
        "num_attention_heads": 8, "vocab_size": 16, "bos_token_id": 1, "eos_token_id": 2,
    });
    let parsed: legibility::ml::config::LlamaConfig =
        serde_json::from_value(config.clone()).expect("config");
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in parsed.expected_tensors() {
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        header.insert(
            name,
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut head = (json.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(&json);
    (config.to_string().into_bytes(), head, offset)
}

const BOUNDARY: &str = "----legibility-memory-boundary";

/// Serialises the backends: each measures the process's peak alone.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn a_large_upload_keeps_memory_flat(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let models = tempfile::tempdir().expect("models dir");
    let config = WebConfig {
        models_dir: models.path().to_path_buf(),
        max_checkpoint_bytes: 512 * 1024 * 1024,
        ..WebConfig::default()
    };
    let app = TestApp::start_with(backend, config).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let (config, head, data) = large_checkpoint();
    let total = head.len() as u64 + data;
    assert!(total > 250_000_000, "{total}");

    let mut pieces = VecDeque::new();
    let mut text = String::new();
    for (name, value) in [("label", "large"), ("round", "0"), ("kind", "prover")] {
        text.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    pieces.push_back(Piece::Bytes(text.into_bytes()));
    for (name, bytes, zeros) in [
        ("config.json", config, 0),
        ("tokenizer.json", tokenizer_json(), 0),
        ("model.safetensors", head, data),
    ] {
        pieces.push_back(Piece::Bytes(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\r\n"
            )
            .into_bytes(),
        ));
        pieces.push_back(Piece::Bytes(bytes));
        pieces.push_back(Piece::Zeros(zeros));
        pieces.push_back(Piece::Bytes(b"\r\n".to_vec()));
    }
    pieces.push_back(Piece::Bytes(format!("--{BOUNDARY}--\r\n").into_bytes()));
    let sent = Arc::new(AtomicU64::new(0));
    let body = StreamedBody {
        pieces,
        sent: sent.clone(),
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri("/admin/checkpoints")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from_stream(body))
        .expect("request");

    reset_peak();
    let (before, _) = memory_kib();
    let started = std::time::Instant::now();
    let response = admin.send(request).await;
    let elapsed = started.elapsed();
    let (_, peak) = memory_kib();
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert!(sent.load(Ordering::Relaxed) > total);

    let rows = app.store().checkpoint_details().await.expect("rows");
    let rel = rows[0].model_dir.clone().expect("stored");
    let stored = models.path().join(rel).join("model.safetensors");
    assert_eq!(std::fs::metadata(&stored).expect("stored").len(), total);
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "{backend:?}: uploaded {} MB in {:.1} s; resident memory {} MiB before, peak {} MiB (+{growth_mib} MiB)",
        total / 1_000_000,
        elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 48,
        "peak resident memory grew by {growth_mib} MiB for a {} MB upload",
        total / 1_000_000
    );
}
on_both_backends!(a_large_upload_keeps_memory_flat);
