//! Decoding slots: one KV cache per sequence, so sequences of a batch start, advance and end
//! independently (continuous batching: a finished sequence's slot takes the next prompt at
//! once), each at its own positions from 0, with no padding.
//!
//! A prompt enters its slot through the candle path (one matrix–matrix pass, keys and values
//! copied into the slot); every later token goes through the hand-written kernels of
//! `legibility-kernels`, one step for all active slots, reading each weight once. Both paths
//! compute the same function: the transformers reference tests decode through slots, and
//! `tests/slots.rs` compares slots with one-at-a-time decoding.

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Result, Storage, StorageRef, Tensor};
use legibility_kernels as kernels;
use rayon::prelude::*;

use super::{
    Activation, Decoder, GateUp, LinearLayer, Pass, QkvProjection, RmsNorm, TokenEmbedding,
};

/// Prompts that share one prefill pass at most: enough to fill the matrix products, few enough
/// that the pass's attention scores (prompts × heads × length²) stay small.
pub const PREFILL_GROUP: usize = 8;

/// The norm scales of one block, as plain values (`offset + weight`, computed once per set of
/// slots rather than per step).
struct BlockNorms {
    input: Vec<f32>,
    post_attention: Vec<f32>,
    feedforward: Option<(Vec<f32>, Vec<f32>)>,
    heads: Option<(Vec<f32>, Vec<f32>)>,
}

/// Buffers a step reuses, sized on first use.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attention: Vec<f32>,
    projected: Vec<f32>,
    gate_up: Vec<f32>,
    gated: Vec<f32>,
    transposed: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The KV caches of a fixed number of sequences (slots) decoded together.
pub struct Slots {
    /// Positions each slot can hold before the caches grow.
    capacity: usize,
    /// Per layer, keys and values `(slot, kv_head, capacity, head_dim)`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// Positions held per slot (0: free).
    lengths: Vec<usize>,
    /// The ids in each slot: LongRoPE's switch to its long factors recomputes them.
    history: Vec<Vec<u32>>,
    norms: Vec<BlockNorms>,
    final_norm: Vec<f32>,
    /// Rotary cos/sin, `head_dim / 2` per position from 0 (rope types that do not depend on
    /// length).
    cos: Vec<f32>,
    sin: Vec<f32>,
    scratch: Scratch,
}

impl Slots {
    /// How many slots there are.
    pub fn count(&self) -> usize {
        self.lengths.len()
    }

    /// Frees `slot` for the next prompt (a slot that does not exist holds nothing to free).
    pub fn free(&mut self, slot: usize) {
        if let (Some(length), Some(history)) =
            (self.lengths.get_mut(slot), self.history.get_mut(slot))
        {
            *length = 0;
            history.clear();
        }
    }

    /// Makes room for `needed` positions per slot, keeping what every slot holds.
    fn grow(&mut self, needed: usize, width: usize, kv_heads: usize) {
        if needed <= self.capacity {
            return;
        }
        let capacity = needed.max(2 * self.capacity);
        let head_dim = width / kv_heads;
        for cache in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let mut grown = vec![0f32; self.lengths.len() * kv_heads * capacity * head_dim];
            for (slot, &length) in self.lengths.iter().enumerate() {
                for g in 0..kv_heads {
                    let from = (slot * kv_heads + g) * self.capacity * head_dim;
                    let to = (slot * kv_heads + g) * capacity * head_dim;
                    grown[to..to + length * head_dim]
                        .copy_from_slice(&cache[from..from + length * head_dim]);
                }
            }
            *cache = grown;
        }
        self.capacity = capacity;
    }
}

/// A tensor's values, borrowed from its CPU storage for as long as the guard lives.
struct Held<'a> {
    guard: StorageRef<'a>,
    start: usize,
    len: usize,
}

impl Held<'_> {
    fn slice(&self) -> Result<&[f32]> {
        match &*self.guard {
            Storage::Cpu(storage) => {
                Ok(&storage.as_slice::<f32>()?[self.start..self.start + self.len])
            }
            _ => candle_core::bail!("decoding slots need the weights on the CPU"),
        }
    }
}

fn hold(tensor: &Tensor) -> Result<Held<'_>> {
    let (guard, layout) = tensor.storage_and_layout();
    if !layout.is_contiguous() {
        candle_core::bail!("decoding slots need contiguous weights");
    }
    Ok(Held {
        guard,
        start: layout.start_offset(),
        len: tensor.elem_count(),
    })
}

fn to_f32s(tensor: &Tensor) -> Result<Vec<f32>> {
    tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()
}

fn norm_values(norm: &RmsNorm) -> Result<Vec<f32>> {
    to_f32s(&norm.scale()?)
}

/// One projection's weights as the kernels read them: f32 values in place, or Q8_0 blocks.
enum Weight<'a> {
    F32(Held<'a>),
    Q8_0(std::borrow::Cow<'a, [u8]>),
}

/// The weights and biases of the listed projections, held for one step: f32 and Q8_0 ones
/// are read in place by the kernels; other quantized types go through candle's products.
enum Projection<'a> {
    Kernels {
        weights: Vec<Weight<'a>>,
        biases: Vec<Option<Held<'a>>>,
    },
    Candle(Vec<&'a LinearLayer>),
}

impl<'a> Projection<'a> {
    fn of(layers: &[&'a LinearLayer]) -> Result<Self> {
        let mut weights = Vec::with_capacity(layers.len());
        let mut biases = Vec::with_capacity(layers.len());
        for layer in layers {
            match layer {
                LinearLayer::Dense(linear) => {
                    weights.push(Weight::F32(hold(linear.weight())?));
                    biases.push(linear.bias().map(hold).transpose()?);
                }
                LinearLayer::Quantized {
                    weight: QMatMul::QTensor(q),
                    bias,
                } if q.dtype() == GgmlDType::Q8_0 => {
                    weights.push(Weight::Q8_0(q.data()?));
                    biases.push(bias.as_ref().map(hold).transpose()?);
                }
                LinearLayer::Quantized { .. } => return Ok(Projection::Candle(layers.to_vec())),
            }
        }
        Ok(Projection::Kernels { weights, biases })
    }

    /// `out (n × Σ outputs) = x (n × k) · Wᵀ + b`.
    fn apply(
        &self,
        x: &[f32],
        n: usize,
        k: usize,
        out: &mut Vec<f32>,
        transposed: &mut Vec<f32>,
    ) -> Result<()> {
        let (weights, biases) = match self {
            Projection::Kernels { weights, biases } => (weights, biases),
            Projection::Candle(layers) => return apply_each(layers, x, n, k, out),
        };
        let matrices: Vec<kernels::Matrix> = weights
            .iter()
            .map(|w| match w {
                Weight::F32(held) => held.slice().map(kernels::Matrix::F32),
                Weight::Q8_0(bytes) => Ok(kernels::Matrix::Q8_0(bytes)),
            })
            .collect::<Result<_>>()?;
        let widths: Vec<usize> = matrices
            .iter()
            .map(|m| match m {
                kernels::Matrix::F32(w) => w.len() / k,
                kernels::Matrix::Q8_0(w) => {
                    w.len() / (k / kernels::Q8_0_BLOCK * kernels::Q8_0_BLOCK_BYTES)
                }
            })
            .collect();
        let total: usize = widths.iter().sum();
        out.clear();
        out.resize(n * total, 0.0);
        kernels::matmul_matrices(kernels::Simd::best(), x, n, k, &matrices, out, transposed);
        let mut offset = 0;
        for (bias, width) in biases.iter().zip(&widths) {
            if let Some(bias) = bias {
                let bias = bias.slice()?;
                for row in out.chunks_exact_mut(total) {
                    for (v, b) in row[offset..offset + width].iter_mut().zip(bias) {
                        *v += b;
                    }
                }
            }
            offset += width;
        }
        Ok(())
    }
}

/// `out (n × Σ outputs) = x (n × k) · Wᵀ + b` one layer at a time through candle (quantized
/// layers: candle's quantized kernels, which quantize `x` per row as llama.cpp does).
fn apply_each(
    layers: &[&LinearLayer],
    x: &[f32],
    n: usize,
    k: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let input = Tensor::from_slice(x, (n, k), &Device::Cpu)?;
    let results: Vec<Vec<f32>> = layers
        .iter()
        .map(|l| l.forward(&input)?.flatten_all()?.to_vec1())
        .collect::<Result<_>>()?;
    let widths: Vec<usize> = results.iter().map(|r| r.len() / n.max(1)).collect();
    let total: usize = widths.iter().sum();
    out.clear();
    out.resize(n * total, 0.0);
    let mut offset = 0;
    for (result, &width) in results.iter().zip(&widths) {
        for (row, values) in out.chunks_exact_mut(total).zip(result.chunks_exact(width)) {
            row[offset..offset + width].copy_from_slice(values);
        }
        offset += width;
    }
    Ok(())
}

impl Decoder {
    /// Whether decoding can run on slots: the hand-written kernels need the weights on the
    /// CPU, dense ones in f32 (what `Prover::load` gives on the CPU, from safetensors or GGUF).
    pub fn runs_on_slots(&self) -> bool {
        self.device.is_cpu()
            && match &self.embed_tokens {
                TokenEmbedding::Dense(e) => e.embeddings().dtype() == DType::F32,
                TokenEmbedding::Quantized(_) => true,
            }
    }

    /// `count` empty slots, each with room for `capacity` positions (grown if exceeded).
    pub fn slots(&self, count: usize, capacity: usize) -> Result<Slots> {
        if !self.runs_on_slots() {
            candle_core::bail!("decoding slots need an f32 model on the CPU");
        }
        let capacity = capacity.max(1);
        let width = self.spec.kv_heads * self.spec.head_dim;
        let norms = self
            .layers
            .iter()
            .map(|layer| {
                Ok(BlockNorms {
                    input: norm_values(&layer.input_layernorm)?,
                    post_attention: norm_values(&layer.post_attention_layernorm)?,
                    feedforward: match &layer.feedforward_norms {
                        Some((pre, post)) => Some((norm_values(pre)?, norm_values(post)?)),
                        None => None,
                    },
                    heads: match (&layer.self_attn.q_norm, &layer.self_attn.k_norm) {
                        (Some(q), Some(k)) => Some((norm_values(q)?, norm_values(k)?)),
                        _ => None,
                    },
                })
            })
            .collect::<Result<_>>()?;
        let cache = || vec![vec![0f32; count * capacity * width]; self.layers.len()];
        Ok(Slots {
            capacity,
            keys: cache(),
            values: cache(),
            lengths: vec![0; count],
            history: vec![Vec::new(); count],
            norms,
            final_norm: norm_values(&self.norm)?,
            cos: Vec::new(),
            sin: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    /// Puts `prompt` into the free `slot` and returns the logits `(vocab)` of its last
    /// position.
    pub fn start(&mut self, slots: &mut Slots, slot: usize, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut rows = self.start_many(slots, &[(slot, prompt)])?;
        rows.pop()
            .ok_or_else(|| candle_core::Error::msg("a prompt gave no logits"))
    }

    /// Puts several prompts into free slots (`(slot, prompt)`) and returns each one's last
    /// logits, in the order given. Prompts share candle passes of up to [`PREFILL_GROUP`],
    /// right-padded to the longest: causal attention never looks at the padding after a prompt,
    /// so each keeps exactly its own keys and values. A rope whose tables depend on the
    /// forward's length takes one pass per prompt (a shared pass would use the longest's).
    pub fn start_many(
        &mut self,
        slots: &mut Slots,
        entries: &[(usize, &[u32])],
    ) -> Result<Vec<Vec<f32>>> {
        for (i, &(slot, prompt)) in entries.iter().enumerate() {
            if slot >= slots.count() || entries[..i].iter().any(|&(other, _)| other == slot) {
                candle_core::bail!(
                    "slot {slot} is not one of the {} slots, or is listed twice",
                    slots.count()
                );
            }
            if prompt.is_empty() {
                candle_core::bail!("an empty prompt cannot start a sequence");
            }
        }
        for &(slot, prompt) in entries {
            slots.history[slot] = prompt.to_vec();
        }
        let group = if self.spec.rope.depends_on_length() {
            1
        } else {
            PREFILL_GROUP
        };
        let order: Vec<usize> = entries.iter().map(|&(slot, _)| slot).collect();
        let mut out = Vec::with_capacity(entries.len());
        for chunk in order.chunks(group) {
            out.extend(self.fill(slots, chunk)?);
        }
        Ok(out)
    }

    /// Recomputes the listed slots from their histories through one candle pass: their keys
    /// and values, and the logits of each one's last position.
    fn fill(&mut self, slots: &mut Slots, group: &[usize]) -> Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = group.iter().map(|&s| slots.history[s].len()).collect();
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
        let (kv_heads, d) = (self.spec.kv_heads, self.spec.head_dim);
        for &slot in group {
            slots.lengths[slot] = 0;
        }
        slots.grow(longest, kv_heads * d, kv_heads);
        let b = group.len();
        let mut ids = Vec::with_capacity(b * longest);
        for &slot in group {
            let history = &slots.history[slot];
            ids.extend_from_slice(history);
            ids.extend(std::iter::repeat_n(0, longest - history.len()));
        }
        let input = Tensor::from_vec(ids, (b, longest), &self.device)?;
        let x = self.run_blocks(&input, 0, &vec![0; b], Pass::Prefill)?;
        let capacity = slots.capacity;
        for (layer, (keys, values)) in self
            .layers
            .iter_mut()
            .zip(slots.keys.iter_mut().zip(slots.values.iter_mut()))
        {
            let Some((k, v)) = layer.self_attn.prefilled.take() else {
                candle_core::bail!("a layer kept no keys");
            };
            for (source, cache) in [(k, &mut *keys), (v, &mut *values)] {
                // (b, kv_heads, longest, head_dim), row-major.
                let source = to_f32s(&source)?;
                for (row, (&slot, &length)) in group.iter().zip(&lengths).enumerate() {
                    for g in 0..kv_heads {
                        let from = (row * kv_heads + g) * longest * d;
                        let to = (slot * kv_heads + g) * capacity * d;
                        cache[to..to + length * d]
                            .copy_from_slice(&source[from..from + length * d]);
                    }
                }
            }
        }
        let last: Vec<u32> = lengths
            .iter()
            .enumerate()
            .map(|(row, &length)| (row * longest + length - 1) as u32)
            .collect();
        let last = Tensor::new(last.as_slice(), &self.device)?;
        let hidden = x
            .reshape((b * longest, self.spec.hidden_size))?
            .index_select(&last, 0)?;
        let logits = self.logits(&hidden)?.to_dtype(DType::F32)?.to_vec2()?;
        for (&slot, &length) in group.iter().zip(&lengths) {
            slots.lengths[slot] = length;
        }
        Ok(logits)
    }

    /// One token for each listed slot (`(slot, token)`): the logits `(feed.len() × vocab)`,
    /// row by row in the order given.
    pub fn step(&mut self, slots: &mut Slots, feed: &[(usize, u32)]) -> Result<Vec<f32>> {
        let vocab = self.spec.vocab_size;
        let mut logits = vec![0f32; feed.len() * vocab];
        let mut rows = Vec::with_capacity(feed.len());
        // Checked before anything changes, so a refused step leaves every slot as it was.
        for (i, &(slot, token)) in feed.iter().enumerate() {
            if slot >= slots.count() || slots.lengths[slot] == 0 {
                candle_core::bail!("slot {slot} holds no sequence");
            }
            if feed[..i].iter().any(|&(other, _)| other == slot) {
                candle_core::bail!("slot {slot} is fed twice in one step");
            }
            if token as usize >= vocab {
                candle_core::bail!("token {token} is outside the vocabulary of {vocab}");
            }
        }
        for (i, &(slot, token)) in feed.iter().enumerate() {
            slots.history[slot].push(token);
            if self.spec.rope.regime_switch() == Some(slots.lengths[slot]) {
                // transformers' Phi-3 drops its cache when a sequence first passes the original
                // length and recomputes it with the long factors; so does this slot.
                let row = self.fill(slots, &[slot])?;
                logits[i * vocab..(i + 1) * vocab].copy_from_slice(&row[0]);
            } else {
                rows.push(i);
            }
        }
        if rows.is_empty() {
            return Ok(logits);
        }
        let feed: Vec<(usize, u32)> = rows.iter().map(|&i| feed[i]).collect();
        let needed = feed
            .iter()
            .map(|&(s, _)| slots.lengths[s] + 1)
            .max()
            .unwrap_or(0);
        slots.grow(
            needed,
            self.spec.kv_heads * self.spec.head_dim,
            self.spec.kv_heads,
        );
        let computed = if rayon::current_num_threads() > 1 {
            // The whole step on a pool thread: each product's split is then a cheap
            // work-stealing fork, not a hand-off from outside the pool and back.
            rayon::scope(|_| self.kernel_step(slots, &feed))?
        } else {
            self.kernel_step(slots, &feed)?
        };
        for (row, &i) in computed.chunks_exact(vocab).zip(&rows) {
            logits[i * vocab..(i + 1) * vocab].copy_from_slice(row);
        }
        Ok(logits)
    }

    /// Rotary cos/sin of one position, for a sequence whose largest position it is.
    fn rotary_row(&self, slots: &mut Slots, position: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let half = self.spec.head_dim / 2;
        let rope = &self.spec.rope;
        if rope.depends_on_length() {
            let (cos, sin) = rope.tables(position, 1, position + 1, &self.device)?;
            return Ok((to_f32s(&cos)?, to_f32s(&sin)?));
        }
        let tabled = slots.cos.len() / half;
        if position >= tabled {
            let size = (position + 1).max(2 * tabled).max(256);
            let (cos, sin) = rope.tables(0, size, size, &self.device)?;
            slots.cos = to_f32s(&cos)?;
            slots.sin = to_f32s(&sin)?;
        }
        let at = position * half;
        Ok((
            slots.cos[at..at + half].to_vec(),
            slots.sin[at..at + half].to_vec(),
        ))
    }

    /// The kernel path of [`Decoder::step`] for slots that need no recomputation.
    fn kernel_step(&self, slots: &mut Slots, feed: &[(usize, u32)]) -> Result<Vec<f32>> {
        let spec = &self.spec;
        let n = feed.len();
        let (h, d, heads, kv_heads) = (spec.hidden_size, spec.head_dim, spec.heads, spec.kv_heads);
        let (qw, kvw) = (heads * d, kv_heads * d);
        let half = d / 2;
        let eps = spec.rms_norm_eps as f32;
        let positions: Vec<usize> = feed.iter().map(|&(s, _)| slots.lengths[s]).collect();
        let mut scratch = std::mem::take(&mut slots.scratch);
        let Scratch {
            x,
            normed,
            qkv,
            attention,
            projected,
            gate_up,
            gated,
            transposed,
            cos,
            sin,
        } = &mut scratch;

        // Rotary tables per row (each sequence at its own position).
        cos.clear();
        sin.clear();
        for &p in &positions {
            let (c, s) = self.rotary_row(slots, p)?;
            cos.extend_from_slice(&c);
            sin.extend_from_slice(&s);
        }

        // Embeddings.
        match &self.embed_tokens {
            TokenEmbedding::Dense(embedding) => {
                let table = hold(embedding.embeddings())?;
                let table = table.slice()?;
                x.clear();
                for &(_, token) in feed {
                    let at = token as usize * h;
                    x.extend_from_slice(&table[at..at + h]);
                }
            }
            TokenEmbedding::Quantized(table) => {
                let ids: Vec<u32> = feed.iter().map(|&(_, t)| t).collect();
                let ids = Tensor::from_vec(ids, n, &Device::Cpu)?;
                *x = table.embedding(&ids)?.flatten_all()?.to_vec1()?;
            }
        }
        if let Some(scale) = spec.embedding_scale {
            let scale = scale as f32;
            x.iter_mut().for_each(|v| *v *= scale);
        }

        let capacity = slots.capacity;
        let group = heads / kv_heads;
        for (index, layer) in self.layers.iter().enumerate() {
            let norms = &slots.norms[index];
            let attn = &layer.self_attn;
            normed.resize(x.len(), 0.0);
            kernels::rms_norm(x, &norms.input, eps, normed);

            // q, k, v for every row, then per-head norms and rotation.
            let qkv_layers: Vec<&LinearLayer> = match &attn.qkv {
                QkvProjection::Separate { q, k, v } => vec![q, k, v],
                QkvProjection::Fused(all) => vec![all],
            };
            Projection::of(&qkv_layers)?.apply(normed, n, h, qkv, transposed)?;
            let keys = &mut slots.keys[index];
            let values = &mut slots.values[index];
            for (r, row) in qkv.chunks_exact_mut(qw + 2 * kvw).enumerate() {
                let (q, rest) = row.split_at_mut(qw);
                let (k, v) = rest.split_at_mut(kvw);
                if let Some((q_scale, k_scale)) = &norms.heads {
                    kernels::rms_norm_in_place(q, q_scale, eps);
                    kernels::rms_norm_in_place(k, k_scale, eps);
                }
                let (c, s) = (
                    &cos[r * half..(r + 1) * half],
                    &sin[r * half..(r + 1) * half],
                );
                kernels::rope(q, c, s);
                kernels::rope(k, c, s);
                let (slot, p) = (feed[r].0, positions[r]);
                for g in 0..kv_heads {
                    let at = ((slot * kv_heads + g) * capacity + p) * d;
                    keys[at..at + d].copy_from_slice(&k[g * d..(g + 1) * d]);
                    values[at..at + d].copy_from_slice(&v[g * d..(g + 1) * d]);
                }
            }

            // Attention: each row's query heads against its own slot's cache.
            attention.clear();
            attention.resize(n * qw, 0.0);
            let (keys, values) = (&*keys, &*values);
            let scale = attn.scale as f32;
            let softcap = attn.softcap.map(|c| c as f32);
            let window = layer.window;
            let qkv = &*qkv;
            let head = |w: &mut Vec<f32>, (index, out): (usize, &mut [f32])| {
                let (r, hd) = (index / heads, index % heads);
                let (slot, p) = (feed[r].0, positions[r]);
                let first = window.map_or(0, |w| (p + 1).saturating_sub(w));
                let base = (slot * kv_heads + hd / group) * capacity;
                let span = (base + first) * d..(base + p + 1) * d;
                let q = &qkv[r * (qw + 2 * kvw) + hd * d..][..d];
                kernels::attend(
                    q,
                    &keys[span.clone()],
                    &values[span],
                    scale,
                    softcap,
                    w,
                    out,
                );
            };
            let work: usize = positions.iter().map(|p| p + 1).sum::<usize>() * heads * d;
            if rayon::current_num_threads() > 1 && work > 1 << 15 {
                attention
                    .par_chunks_mut(d)
                    .enumerate()
                    .for_each_init(Vec::new, head);
            } else {
                let mut w = Vec::new();
                attention
                    .chunks_mut(d)
                    .enumerate()
                    .for_each(|item| head(&mut w, item));
            }
            Projection::of(&[&attn.o_proj])?.apply(attention, n, qw, projected, transposed)?;

            // Residual, MLP, residual (Gemma 2: with the norms around each).
            match &norms.feedforward {
                Some((pre, post)) => {
                    kernels::rms_norm_in_place(projected, &norms.post_attention, eps);
                    add(x, projected);
                    kernels::rms_norm(x, pre, eps, normed);
                    self.mlp(index, normed, n, gate_up, gated, projected, transposed)?;
                    kernels::rms_norm_in_place(projected, post, eps);
                    add(x, projected);
                }
                None => {
                    add(x, projected);
                    kernels::rms_norm(x, &norms.post_attention, eps, normed);
                    self.mlp(index, normed, n, gate_up, gated, projected, transposed)?;
                    add(x, projected);
                }
            }
        }
        kernels::rms_norm_in_place(x, &slots.final_norm, eps);
        let mut logits = Vec::new();
        Projection::of(&[&self.lm_head])?.apply(x, n, h, &mut logits, transposed)?;
        if let Some(cap) = spec.final_softcap {
            kernels::soft_cap(&mut logits, cap as f32);
        }
        for (&(slot, _), &p) in feed.iter().zip(&positions) {
            slots.lengths[slot] = p + 1;
        }
        slots.scratch = scratch;
        Ok(logits)
    }

    /// The gated MLP of block `index` on `normed (n × hidden)`, into `out (n × hidden)`.
    #[allow(clippy::too_many_arguments)]
    fn mlp(
        &self,
        index: usize,
        normed: &[f32],
        n: usize,
        gate_up: &mut Vec<f32>,
        gated: &mut Vec<f32>,
        out: &mut Vec<f32>,
        transposed: &mut Vec<f32>,
    ) -> Result<()> {
        let mlp = &self.layers[index].mlp;
        let (h, f) = (self.spec.hidden_size, mlp.intermediate);
        let layers: Vec<&LinearLayer> = match &mlp.gate_up {
            GateUp::Separate { gate, up } => vec![gate, up],
            GateUp::Fused(both) => vec![both],
        };
        Projection::of(&layers)?.apply(normed, n, h, gate_up, transposed)?;
        gated.clear();
        for row in gate_up.chunks_exact_mut(2 * f) {
            let (g, u) = row.split_at_mut(f);
            kernels::gate(g, u, mlp.activation == Activation::GeluTanh);
            gated.extend_from_slice(g);
        }
        Projection::of(&[&mlp.down_proj])?.apply(gated, n, f, out, transposed)
    }
}

/// `x += y`, elementwise.
fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
