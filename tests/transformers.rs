//! Exactness against transformers: every decoder architecture and config dialect in
//! `tests/fixtures/transformers/` (written by `scripts/reference/make_fixtures.py` with
//! transformers 5.25 on random weights) must give transformers' logits at every position of
//! every prompt (max abs diff ≤ 1e-4 in f32), the same 32-token greedy continuation (with
//! transformers' rope behaviour during cached decoding: dynamic NTK per step, Phi-3's LongRoPE
//! re-prefill), and, for the decoder reward models, the same score at the last non-padding
//! token. Batched decoding of left-padded prompts must agree with the unbatched references, and
//! so must continuous batching in decoding slots (the hand-written kernels) step by step.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use legibility::ml::config::ModelConfig;
use legibility::ml::decoder::{Decoder, argmax, greedy};

/// The largest difference from transformers allowed anywhere, in f32.
const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transformers")
}

fn reference(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(case).join("reference.json"))
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    serde_json::from_str(&text).expect("reference.json")
}

/// The model of a fixture folder, as the prover loads one: config in either dialect.
fn load(case: &str) -> (ModelConfig, Decoder) {
    let dir = fixtures().join(case);
    let config = ModelConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap())
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut spec = config
        .decoder_spec()
        .expect("a decoder")
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    // A reward model has no output projection: its body ends at the final norm.
    if config
        .architectures()
        .iter()
        .any(|a| a.ends_with("ForSequenceClassification"))
    {
        spec.tie_word_embeddings = true;
    }
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    (
        config,
        Decoder::new(&spec, vb).unwrap_or_else(|e| panic!("{case}: {e}")),
    )
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Every causal case: logits at every position, greedy ids and each greedy step's logits.
fn check_causal(case: &str) -> f32 {
    let reference = reference(case);
    let tensors_file = fixtures()
        .join(case)
        .join(reference["tensors_file"].as_str().unwrap());
    let tensors = candle_core::safetensors::load(&tensors_file, &Device::Cpu).unwrap();
    let (_, mut model) = load(case);
    let mut worst = 0f32;
    for (p, prompt) in reference["prompts"].as_array().unwrap().iter().enumerate() {
        let input = ids(&prompt["input_ids"]);
        model.reset(input.len());
        let all = model
            .forward_decode_all(
                &Tensor::new(input.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                &[0],
            )
            .unwrap()
            .squeeze(0)
            .unwrap();
        let expected = &tensors[prompt["logits"].as_str().unwrap()];
        let diff = max_diff(&all, expected);
        assert!(
            diff <= TOLERANCE,
            "{case} prompt {p}: logits differ by {diff}"
        );
        worst = worst.max(diff);

        let (got, steps) = greedy(&mut model, &input, 32).unwrap();
        assert_eq!(
            got,
            ids(&prompt["greedy_ids"]),
            "{case} prompt {p}: greedy ids"
        );
        for (step, (row, top2)) in steps
            .iter()
            .zip(prompt["greedy_top2_logits"].as_array().unwrap())
            .enumerate()
        {
            let mut sorted = row.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (k, want) in top2.as_array().unwrap().iter().enumerate() {
                let diff = (sorted[k] - want.as_f64().unwrap() as f32).abs();
                assert!(
                    diff <= TOLERANCE,
                    "{case} prompt {p} step {step}: top-{k} differs by {diff}"
                );
                worst = worst.max(diff);
            }
        }
        if let Some(name) = prompt["greedy_logits"].as_str() {
            let expected = &tensors[name];
            let got = Tensor::new(steps, &Device::Cpu).unwrap();
            let diff = max_diff(&got, expected);
            assert!(
                diff <= TOLERANCE,
                "{case} prompt {p}: greedy step logits differ by {diff}"
            );
            worst = worst.max(diff);
        }
    }
    worst
}

/// All prompts of a case in one left-padded batch: each row's last logits and greedy
/// continuation equal its unbatched reference. (Not for rope types that depend on the
/// forward's length: a batch's length is its longest row's, in transformers too.)
fn check_batched(case: &str) {
    let reference = reference(case);
    let (_, mut model) = load(case);
    let prompts: Vec<Vec<u32>> = reference["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ids(&p["input_ids"]))
        .collect();
    let longest = prompts.iter().map(Vec::len).max().unwrap();
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let mut input = Vec::new();
    for (prompt, &pad) in prompts.iter().zip(&pads) {
        input.extend(std::iter::repeat_n(0u32, pad));
        input.extend(prompt);
    }
    model.reset(longest + 32);
    let batch = prompts.len();
    let mut logits = model
        .forward_decode(
            &Tensor::from_vec(input, (batch, longest), &Device::Cpu).unwrap(),
            &pads,
        )
        .unwrap();
    let mut continuations = vec![Vec::new(); batch];
    for _ in 0..32 {
        let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let next: Vec<u32> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 { (i, v) } else { best }
                    })
                    .0 as u32
            })
            .collect();
        for (c, &n) in continuations.iter_mut().zip(&next) {
            c.push(n);
        }
        logits = model
            .forward_decode(
                &Tensor::from_vec(next, (batch, 1), &Device::Cpu).unwrap(),
                &[],
            )
            .unwrap();
    }
    for (p, prompt) in reference["prompts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            continuations[p],
            ids(&prompt["greedy_ids"]),
            "{case} prompt {p}: the batched greedy continuation differs"
        );
    }
}

/// One prompt decoded greedily through the plain candle path, one sequence at a time (no
/// slots, no hand-written kernels): each step's logits.
fn candle_greedy(model: &mut Decoder, prompt: &[u32], steps: usize) -> Vec<Vec<f32>> {
    model.reset(prompt.len() + steps);
    let input = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut logits = model.forward_decode(&input, &[0]).unwrap();
    let mut all = Vec::new();
    for _ in 0..steps {
        let row: Vec<f32> = logits.squeeze(0).unwrap().to_vec1().unwrap();
        let next = argmax(&row);
        all.push(row);
        logits = model
            .forward_decode(&Tensor::new(&[[next]], &Device::Cpu).unwrap(), &[])
            .unwrap();
    }
    all
}

/// Continuous batching: the case's prompts (each twice, with different lengths to decode)
/// share three slots, a finished sequence's slot taking the next prompt at once (prompts that
/// start together share one right-padded prefill pass), so sequences start and end at
/// different steps beside others at other positions. Every step's logits of
/// every sequence equal one-at-a-time decoding through the plain candle path within 1e-4,
/// and the greedy ids equal transformers'. Returns the largest difference.
fn check_continuous(case: &str) -> f32 {
    const SLOTS: usize = 3;
    let reference = reference(case);
    let (_, mut model) = load(case);
    let prompts: Vec<(Vec<u32>, Vec<u32>)> = reference["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (ids(&p["input_ids"]), ids(&p["greedy_ids"])))
        .collect();
    // (prompt, steps): the same prompts twice, cut at different lengths.
    let jobs: Vec<(usize, usize)> = (0..2 * prompts.len())
        .map(|j| (j % prompts.len(), 32 - (j * 7) % 20))
        .collect();
    let expected: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|&(p, steps)| candle_greedy(&mut model, &prompts[p].0, steps))
        .collect();
    let mut slots = model.slots(SLOTS, 8).unwrap();
    // Per slot: (job, steps done, logits of the next step).
    let mut running: Vec<Option<(usize, usize, Vec<f32>)>> = vec![None; SLOTS];
    let mut next_job = 0;
    let mut worst = 0f32;
    let mut finished = 0;
    while finished < jobs.len() {
        // Free slots start together (one shared prefill pass where the rope allows).
        let mut starting = Vec::new();
        for (slot, state) in running.iter().enumerate() {
            if state.is_none() && next_job < jobs.len() {
                slots.free(slot);
                starting.push((slot, next_job));
                next_job += 1;
            }
        }
        if !starting.is_empty() {
            let entries: Vec<(usize, &[u32])> = starting
                .iter()
                .map(|&(slot, job)| (slot, prompts[jobs[job].0].0.as_slice()))
                .collect();
            let first = model.start_many(&mut slots, &entries).unwrap();
            for ((slot, job), logits) in starting.into_iter().zip(first) {
                running[slot] = Some((job, 0, logits));
            }
        }
        let mut feed = Vec::new();
        for (slot, state) in running.iter_mut().enumerate() {
            let Some((job, done, logits)) = state else {
                continue;
            };
            let want = &expected[*job][*done];
            let diff = logits
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff <= TOLERANCE,
                "{case} job {job} step {done}: slot logits differ from one-at-a-time by {diff}"
            );
            worst = worst.max(diff);
            let token = argmax(logits);
            assert_eq!(
                token, prompts[jobs[*job].0].1[*done],
                "{case} job {job} step {done}: greedy id"
            );
            *done += 1;
            if *done == jobs[*job].1 {
                *state = None;
                finished += 1;
            } else {
                feed.push((slot, token));
            }
        }
        if feed.is_empty() {
            continue;
        }
        let logits = model.step(&mut slots, &feed).unwrap();
        let vocab = logits.len() / feed.len();
        for (row, &(slot, _)) in logits.chunks_exact(vocab).zip(&feed) {
            if let Some((_, _, next)) = &mut running[slot] {
                *next = row.to_vec();
            }
        }
    }
    worst
}

/// Decoding slots refuse a step or a start that names a missing, empty or repeated slot or a
/// token outside the vocabulary, and a refused step changes no slot: the next good step gives
/// what it would have given.
#[test]
fn a_refused_step_changes_no_slot() {
    let reference = reference("llama");
    let prompt = ids(&reference["prompts"][0]["input_ids"]);
    let greedy_ids = ids(&reference["prompts"][0]["greedy_ids"]);
    let (_, mut model) = load("llama");
    let vocab = model.spec().vocab_size as u32;
    let mut slots = model.slots(2, 4).unwrap();
    model.start(&mut slots, 0, &prompt).unwrap();
    let first = greedy_ids[0];
    for bad in [
        vec![(0, first), (1, first)],
        vec![(0, first), (0, first)],
        vec![(0, vocab)],
        vec![(2, first)],
    ] {
        assert!(
            model.step(&mut slots, &bad).is_err(),
            "{bad:?} was accepted"
        );
    }
    assert!(model.start_many(&mut slots, &[(2, &prompt)]).is_err());
    assert!(
        model
            .start_many(&mut slots, &[(1, &prompt), (1, &prompt)])
            .is_err()
    );
    assert!(model.start(&mut slots, 1, &[]).is_err());
    // Slot 0 still holds the prompt alone: the next step is the first greedy step.
    let logits = model.step(&mut slots, &[(0, first)]).unwrap();
    assert_eq!(argmax(&logits), greedy_ids[1]);
}

/// The decoder reward models: the body's final hidden state at the pooled position times
/// `score.weight` gives transformers' score.
fn check_classifier(case: &str) -> f32 {
    let reference = reference(case);
    let (_, mut model) = load(case);
    let dir = fixtures().join(case);
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let score = &weights["score.weight"];
    let mut worst = 0f32;
    for (i, row) in reference["classifier"]["unpadded"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let input = ids(&row["input_ids"]);
        let hidden = model
            .hidden_states(
                &Tensor::new(input.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                false,
            )
            .unwrap();
        let index = row["pooled_index"].as_u64().unwrap() as usize;
        let pooled = hidden.i((0, index)).unwrap().unsqueeze(0).unwrap();
        let got = pooled
            .matmul(&score.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let want = row["score"][0].as_f64().unwrap() as f32;
        let diff = (got - want).abs();
        assert!(
            diff <= TOLERANCE,
            "{case} prompt {i}: score {got} vs {want}"
        );
        worst = worst.max(diff);
    }
    worst
}

macro_rules! causal {
    ($($name:ident => $case:literal, batched: $batched:literal;)+) => {
        $(
            #[test]
            fn $name() {
                let worst = check_causal($case);
                let twin = concat!($case, "-v4");
                let worst_v4 = check_causal(twin);
                if $batched {
                    check_batched($case);
                }
                let continuous = check_continuous($case);
                println!("{}: max abs diff {worst:.2e} (transformers-5 config), {worst_v4:.2e} (4.x config); continuous batching vs one at a time {continuous:.2e}", $case);
            }
        )+
    };
}

causal! {
    llama_matches_transformers => "llama", batched: true;
    llama3_rope_scaling_matches_transformers => "llama3-rope", batched: true;
    llama_linear_rope_matches_transformers => "llama-linear", batched: true;
    llama_dynamic_rope_matches_transformers => "llama-dynamic", batched: false;
    llama3_instruct_matches_transformers => "llama3-instruct", batched: true;
    qwen2_matches_transformers => "qwen2", batched: true;
    qwen2_yarn_matches_transformers => "qwen2-yarn", batched: true;
    qwen3_matches_transformers => "qwen3", batched: true;
    mistral_matches_transformers => "mistral", batched: true;
    phi3_matches_transformers => "phi3", batched: true;
    phi3_longrope_matches_transformers => "phi3-longrope", batched: false;
    gemma2_matches_transformers => "gemma2", batched: true;
}

#[test]
fn decoder_reward_models_match_transformers() {
    for case in [
        "llama-cls",
        "qwen2-cls",
        "qwen3-cls",
        "mistral-cls",
        "gemma2-cls",
    ] {
        let worst = check_classifier(case);
        println!("{case}: max abs score diff {worst:.2e}");
    }
}

/// The two config dialects describe the same model: a transformers-5 config without a
/// top-level `rope_theta` must not fall back to 10000 (the old silent error).
#[test]
fn both_config_dialects_read_the_same_rope() {
    for case in [
        "llama",
        "llama3-rope",
        "qwen2-yarn",
        "phi3-longrope",
        "gemma2",
        "mistral",
    ] {
        let (_, v5) = load(case);
        let (_, v4) = load(&format!("{case}-v4"));
        assert_eq!(v5.spec().rope, v4.spec().rope, "{case}");
    }
    let (_, llama) = load("llama");
    assert_eq!(llama.spec().rope.theta, 500_000.0);
}

/// The same reward models loaded as verifiers, as an upload would be: texts tokenized as
/// transformers' tokenizer does, scores read at the last non-padding token, in batches
/// padded on the right (the way the verifier batches them) — transformers' scores.
#[test]
fn decoder_reward_models_score_as_verifiers() {
    for case in [
        "llama-cls",
        "qwen2-cls",
        "qwen3-cls",
        "mistral-cls",
        "gemma2-cls",
    ] {
        let reference = reference(case);
        let mut verifier =
            legibility::ml::verifier::Verifier::load(&fixtures().join(case), &Device::Cpu)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
        let rows = reference["classifier"]["unpadded"].as_array().unwrap();
        let mut encoded = Vec::new();
        for row in rows {
            let ids = verifier.encode(row["text"].as_str().unwrap()).unwrap();
            assert_eq!(ids, self::ids(&row["input_ids"]), "{case}: tokenization");
            encoded.push(ids);
        }
        // One batch of all texts (padded to the longest), and each text alone.
        for batch in [rows.len(), 1] {
            let scores = verifier.score_encoded(&encoded, batch).unwrap();
            for (row, got) in rows.iter().zip(&scores) {
                let want = row["score"][0].as_f64().unwrap() as f32;
                assert!(
                    (got - want).abs() <= TOLERANCE,
                    "{case}: score {got} vs transformers' {want} (batch {batch})"
                );
            }
        }
    }
}

/// `legibility checkpoint logits` on a checkpoint folder prints transformers' figures: for a
/// prover each position's highest next-token logits, for a reward model its score.
#[test]
fn the_logits_command_prints_what_transformers_computes() {
    let run = |case: &str, text: &str| -> Vec<serde_json::Value> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_legibility"))
            .args(["checkpoint", "logits", "--top", "3", "--text", text])
            .arg(fixtures().join(case))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // A prover with Llama 3 rope scaling, the text of its reference's longest prompt.
    let prover = self::reference("llama3-rope");
    let prompt = &prover["prompts"][2];
    let lines = run("llama3-rope", prompt["text"].as_str().unwrap());
    let expected_ids = ids(&prompt["input_ids"]);
    assert_eq!(lines.len(), expected_ids.len());
    let tensors = candle_core::safetensors::load(
        fixtures().join("llama3-rope").join("reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let logits: Vec<Vec<f32>> = tensors["prompt2.logits"].to_vec2().unwrap();
    for (line, (id, row)) in lines.iter().zip(expected_ids.iter().zip(&logits)) {
        assert_eq!(line["token_id"].as_u64(), Some(u64::from(*id)));
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        for pair in top {
            let token = pair[0].as_u64().unwrap() as usize;
            let value = pair[1].as_f64().unwrap() as f32;
            assert!((value - row[token]).abs() <= TOLERANCE, "{line}");
        }
        let best = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        assert_eq!(top[0][0].as_u64(), Some(best as u64), "{line}");
    }
    // A reward model.
    let classifier = self::reference("qwen2-cls");
    let row = &classifier["classifier"]["unpadded"][0];
    let lines = run("qwen2-cls", row["text"].as_str().unwrap());
    assert_eq!(lines.len(), 1);
    assert_eq!(ids(&lines[0]["token_ids"]), ids(&row["input_ids"]));
    let score = lines[0]["score"].as_f64().unwrap() as f32;
    assert!((score - row["score"][0].as_f64().unwrap() as f32).abs() <= TOLERANCE);
}

/// Every fixture is a valid upload of its kind (a prover for the causal models, a verifier for
/// the reward models), as `save_pretrained` wrote it.
#[test]
fn every_fixture_is_a_valid_upload_of_its_kind() {
    use legibility::checkpoints::{CheckpointLimits, Staging, validate};
    use legibility::domain::CheckpointKind;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let facts = self::reference(&case);
        let model_type = facts["model_type"].as_str().unwrap();
        let kind = if facts["kind"] == "causal_lm" {
            CheckpointKind::Prover
        } else {
            CheckpointKind::Verifier
        };
        let mut staging = Staging::new(&std::env::temp_dir(), CheckpointLimits::default()).unwrap();
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("reference") {
                staging
                    .add(&name, std::fs::File::open(&path).unwrap())
                    .unwrap();
            }
        }
        let files = staging.finish().unwrap();
        let checkpoint = validate(files, kind, &CheckpointLimits::default())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(checkpoint.config().model_type(), model_type, "{case}");
    }
}
