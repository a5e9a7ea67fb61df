//! Hand-written CPU kernels for the decoding step, on plain `f32` slices.
//!
//! A decoding step multiplies a few rows (one per sequence) by every weight matrix once: it is
//! bound by memory bandwidth, and candle's per-operation cost (a tensor per op, a thread
//! hand-off per matrix product, a matrix–matrix path for what is a matrix–vector product)
//! came to half the step on the prover's shapes. These kernels stream each weight row once
//! for all rows of the batch, split the rows over the rayon pool the caller already runs in,
//! and allocate nothing per call. Each is tested against the plain candle operation it
//! replaces (within 1e-5 on random inputs).

use rayon::prelude::*;

/// Output rows given to one task at least: below this a hand-off costs more than it saves.
const MIN_ROWS_PER_TASK: usize = 16;

/// `out (n × Σ rows) = x (n × k) · [w₀; w₁; …]ᵀ`: every matrix `wᵢ` is `(rowsᵢ × k)`, row-major
/// (a Hugging Face `Linear` weight), and their outputs are laid side by side in each output
/// row (q, k and v of one projection call; gate and up). Each weight row is read once for all
/// `n` input rows. `scratch` holds the transposed result when `n > 1`.
pub fn matmul_t(
    x: &[f32],
    n: usize,
    k: usize,
    weights: &[&[f32]],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    matmul_t_with(Simd::best(), x, n, k, weights, out, scratch);
}

/// The vector instructions a product runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// Plain Rust the compiler vectorises for the build's baseline (SSE2 on x86-64).
    Portable,
    /// 256-bit AVX2 with fused multiply-adds. (A 512-bit AVX-512 version of the same tiles
    /// measured 3–8 % slower on the development machine's Xeon and was not kept.)
    Avx2,
}

impl Simd {
    /// The widest level this CPU runs.
    pub fn best() -> Simd {
        Simd::available().last().copied().unwrap_or(Simd::Portable)
    }

    /// Every level this CPU runs, narrowest first (the tests compare each with candle).
    pub fn available() -> Vec<Simd> {
        let mut levels = vec![Simd::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                levels.push(Simd::Avx2);
            }
        }
        levels
    }
}

/// Bytes of one Q8_0 block (llama.cpp's `block_q8_0`): an f16 scale, then 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 34;
/// Values in one Q8_0 block.
pub const Q8_0_BLOCK: usize = 32;

/// A weight matrix of `rows × k`, row-major: f32 values, or Q8_0 blocks as GGUF stores them
/// (`k / 32` blocks per row; each value is `scale · q`).
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'a> {
    /// Plain values.
    F32(&'a [f32]),
    /// Q8_0 blocks.
    Q8_0(&'a [u8]),
}

impl<'a> Matrix<'a> {
    fn rows(&self, k: usize) -> usize {
        match self {
            Matrix::F32(w) => w.len() / k,
            Matrix::Q8_0(w) => w.len() / (k / Q8_0_BLOCK * Q8_0_BLOCK_BYTES),
        }
    }

    fn rows_range(&self, k: usize, first: usize, count: usize) -> Matrix<'a> {
        match self {
            Matrix::F32(w) => Matrix::F32(&w[first * k..(first + count) * k]),
            Matrix::Q8_0(w) => {
                let row = k / Q8_0_BLOCK * Q8_0_BLOCK_BYTES;
                Matrix::Q8_0(&w[first * row..(first + count) * row])
            }
        }
    }
}

/// An IEEE half-precision value (the Q8_0 scale) as f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = match exponent {
        0 => {
            // Zero or subnormal: mantissa · 2⁻²⁴.
            let value = mantissa as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -value } else { value };
        }
        31 => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

/// [`matmul_t`] over matrices of any [`Matrix`] kind (a Q8_0 matrix is multiplied with the
/// f32 inputs as they are: each block's 32 bytes widened to f32 and scaled, so the result is
/// the dequantized matrix's product, without llama.cpp's 8-bit rounding of the inputs).
#[allow(clippy::too_many_arguments)]
pub fn matmul_matrices(
    level: Simd,
    x: &[f32],
    n: usize,
    k: usize,
    weights: &[Matrix],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let total: usize = weights.iter().map(|w| w.rows(k)).sum();
    debug_assert_eq!(x.len(), n * k);
    debug_assert_eq!(out.len(), n * total);
    if n == 1 {
        rows_times(level, x, 1, k, weights, out);
        return;
    }
    scratch.clear();
    scratch.resize(total * n, 0.0);
    rows_times(level, x, n, k, weights, scratch);
    for (j, column) in scratch.chunks_exact(n).enumerate() {
        for (i, &value) in column.iter().enumerate() {
            out[i * total + j] = value;
        }
    }
}

/// [`matmul_t`] at a given [`Simd`] level (one [`Simd::available`] returned).
pub fn matmul_t_with(
    level: Simd,
    x: &[f32],
    n: usize,
    k: usize,
    weights: &[&[f32]],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let matrices: Vec<Matrix> = weights.iter().map(|w| Matrix::F32(w)).collect();
    matmul_matrices(level, x, n, k, &matrices, out, scratch);
}

/// `yt[j·n + i] = w_j · x_i` over the concatenated rows `j` of `weights`, in parallel blocks of
/// rows when the pool has more than one thread.
fn rows_times(level: Simd, x: &[f32], n: usize, k: usize, weights: &[Matrix], yt: &mut [f32]) {
    let total = yt.len() / n;
    let threads = rayon::current_num_threads();
    if threads <= 1 || total < 2 * MIN_ROWS_PER_TASK {
        block(level, x, n, k, weights, 0, yt);
        return;
    }
    // A few tasks per thread, so a thread slowed by the rest of the machine is caught up.
    let per_task = total.div_ceil(threads * 4).max(MIN_ROWS_PER_TASK);
    yt.par_chunks_mut(per_task * n)
        .enumerate()
        .for_each(|(t, chunk)| block(level, x, n, k, weights, t * per_task, chunk));
}

/// Rows `first..first + yt.len() / n` of the concatenated `weights`.
fn block(
    level: Simd,
    x: &[f32],
    n: usize,
    k: usize,
    weights: &[Matrix],
    first: usize,
    yt: &mut [f32],
) {
    let rows = yt.len() / n;
    let (mut row, mut done) = (first, 0);
    for w in weights {
        let count = w.rows(k);
        if row >= count {
            row -= count;
            continue;
        }
        let take = (count - row).min(rows - done);
        let yt = &mut yt[done * n..(done + take) * n];
        match w.rows_range(k, row, take) {
            Matrix::F32(matrix) => dot_rows(level, matrix, k, x, n, yt),
            Matrix::Q8_0(matrix) => q8_0_rows(level, matrix, k, x, n, yt),
        }
        done += take;
        row = 0;
        if done == rows {
            break;
        }
    }
}

/// `yt[j·n + i] = w_j · x_i` for every row `j` of `w`.
fn dot_rows(level: Simd, w: &[f32], k: usize, x: &[f32], n: usize, yt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: a level other than Portable comes from `Simd::available`, which checked that
        // the CPU has the features the function is compiled for.
        Simd::Avx2 => return unsafe { avx2::dot_rows(w, k, x, n, yt) },
        Simd::Portable => {}
    }
    for (j, wr) in w.chunks_exact(k).enumerate() {
        for (i, xr) in x.chunks_exact(k).enumerate() {
            yt[j * n + i] = dot(wr, xr);
        }
    }
}

/// `yt[j·n + i] = w_j · x_i` for every Q8_0 row `j` of `w`.
fn q8_0_rows(level: Simd, w: &[u8], k: usize, x: &[f32], n: usize, yt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: as in `dot_rows`.
        Simd::Avx2 => return unsafe { avx2::q8_0_rows(w, k, x, n, yt) },
        Simd::Portable => {}
    }
    let row_bytes = k / Q8_0_BLOCK * Q8_0_BLOCK_BYTES;
    for (j, wr) in w.chunks_exact(row_bytes).enumerate() {
        for (i, xr) in x.chunks_exact(k).enumerate() {
            let mut sum = 0f32;
            for (block, xs) in wr
                .chunks_exact(Q8_0_BLOCK_BYTES)
                .zip(xr.chunks_exact(Q8_0_BLOCK))
            {
                let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
                let mut lanes = [0f32; 8];
                for (q, v) in block[2..].chunks_exact(8).zip(xs.chunks_exact(8)) {
                    for l in 0..8 {
                        lanes[l] += (q[l] as i8) as f32 * v[l];
                    }
                }
                sum += scale * lanes.iter().sum::<f32>();
            }
            yt[j * n + i] = sum;
        }
    }
}

/// A dot product at a [`Simd`] level.
pub fn dot_with(level: Simd, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if level != Simd::Portable {
        // SAFETY: Avx2 comes from `Simd::available`, which checked AVX2 and FMA.
        return unsafe { avx2::dot(a, b) };
    }
    dot(a, b)
}

/// A dot product written so the compiler vectorises it (eight independent lanes).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::dot_rows`] with 256-bit fused multiply-adds, in tiles of `R` weight rows by
    /// `G` input rows: each loaded weight vector serves `G` products and each input vector `R`,
    /// so loads do not limit the multiply-adds, and the independent accumulators keep several
    /// memory streams in flight (a single-row dot product waits on its own adds). A tile's
    /// weight rows meet every input row while they are in L1, so each weight is read from
    /// memory once per call whatever the batch.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_rows(w: &[f32], k: usize, x: &[f32], n: usize, yt: &mut [f32]) {
        const R: usize = 3;
        let count = w.len() / k;
        let mut j = 0;
        while j < count {
            if count - j >= R {
                inputs::<R>(&w[j * k..(j + R) * k], k, x, n, &mut yt[j * n..(j + R) * n]);
                j += R;
            } else {
                inputs::<1>(&w[j * k..(j + 1) * k], k, x, n, &mut yt[j * n..(j + 1) * n]);
                j += 1;
            }
        }
    }

    /// `R` weight rows against all `n` input rows, three at a time (3 × 3 accumulators, three
    /// inputs and a weight vector fill 13 of the 16 vector registers: no spills).
    #[target_feature(enable = "avx2,fma")]
    fn inputs<const R: usize>(w: &[f32], k: usize, x: &[f32], n: usize, yt: &mut [f32]) {
        let mut i = 0;
        while i < n {
            let x = &x[i * k..];
            let g = (n - i).min(4);
            match g {
                1 => store(&tile::<R, 1>(w, k, x), n, i, yt),
                2 => store(&tile::<R, 2>(w, k, x), n, i, yt),
                3 => store(&tile::<R, 3>(w, k, x), n, i, yt),
                _ => store(&tile::<R, 4>(w, k, x), n, i, yt),
            }
            i += g;
        }
    }

    /// Writes a tile's sums at input rows `i..i + G` of weight rows `0..R` of `yt`.
    fn store<const R: usize, const G: usize>(
        sums: &[[f32; G]; R],
        n: usize,
        i: usize,
        yt: &mut [f32],
    ) {
        for (r, row) in sums.iter().enumerate() {
            yt[r * n + i..][..G].copy_from_slice(row);
        }
    }

    /// `out[r][g] = w_r · x_g` for `R` weight rows and `G` input rows of width `k`.
    #[target_feature(enable = "avx2,fma")]
    fn tile<const R: usize, const G: usize>(w: &[f32], k: usize, x: &[f32]) -> [[f32; G]; R] {
        let wide = k / 8 * 8;
        let mut out = [[0f32; G]; R];
        assert!(w.len() >= R * k && x.len() >= G * k);
        // SAFETY: every load reads 8 floats at offset c + 8 <= `wide` <= k of a row of `w`
        // (R rows present, asserted above) or of `x` (G rows present).
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); G]; R];
            let (wp, xp) = (w.as_ptr(), x.as_ptr());
            // The weights four tiles ahead into L2, two cache lines per step of this tile's R·8
            // floats: the hardware prefetcher stops at every 4 KiB page, and a batch's
            // multiply-adds then overlap the next tiles' memory reads (measured on a 442 MB
            // matrix, one thread: batch 8 +16 %, batch 1 +4 % over prefetching the next tile
            // into L1, +27 % / +8 % over none).
            let next = wp.wrapping_add(4 * R * k);
            let mut c = 0;
            while c < wide {
                let ahead = next.wrapping_add(c * R);
                _mm_prefetch::<_MM_HINT_T1>(ahead as *const i8);
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(16) as *const i8);
                let mut xs = [_mm256_setzero_ps(); G];
                for (g, v) in xs.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(xp.add(g * k + c));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let wv = _mm256_loadu_ps(wp.add(r * k + c));
                    for (g, v) in xs.iter().enumerate() {
                        a[g] = _mm256_fmadd_ps(wv, *v, a[g]);
                    }
                }
                c += 8;
            }
            for (r, a) in acc.iter().enumerate() {
                for (g, v) in a.iter().enumerate() {
                    out[r][g] = hsum(*v);
                }
            }
        }
        for (r, row) in out.iter_mut().enumerate() {
            for (g, sum) in row.iter_mut().enumerate() {
                for c in wide..k {
                    *sum += w[r * k + c] * x[g * k + c];
                }
            }
        }
        out
    }

    /// [`super::q8_0_rows`]: each row's blocks are widened to f32 once, then multiplied with
    /// up to eight input rows (8 accumulators, 4 widened vectors and a block sum: 13 of the
    /// 16 vector registers) (the inputs of a batch stay in L1/L2; each
    /// weight byte is read from memory once per call).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn q8_0_rows(w: &[u8], k: usize, x: &[f32], n: usize, yt: &mut [f32]) {
        use super::{Q8_0_BLOCK, Q8_0_BLOCK_BYTES};
        let row_bytes = k / Q8_0_BLOCK * Q8_0_BLOCK_BYTES;
        for (j, wr) in w.chunks_exact(row_bytes).enumerate() {
            let mut i = 0;
            while i < n {
                let g = (n - i).min(8);
                let xs = &x[i * k..(i + g) * k];
                let out = &mut yt[j * n + i..j * n + i + g];
                match g {
                    1 => out.copy_from_slice(&q8_0_tile::<1>(wr, k, xs)),
                    2 => out.copy_from_slice(&q8_0_tile::<2>(wr, k, xs)),
                    3 => out.copy_from_slice(&q8_0_tile::<3>(wr, k, xs)),
                    4 => out.copy_from_slice(&q8_0_tile::<4>(wr, k, xs)),
                    5 => out.copy_from_slice(&q8_0_tile::<5>(wr, k, xs)),
                    6 => out.copy_from_slice(&q8_0_tile::<6>(wr, k, xs)),
                    7 => out.copy_from_slice(&q8_0_tile::<7>(wr, k, xs)),
                    _ => out.copy_from_slice(&q8_0_tile::<8>(wr, k, xs)),
                }
                i += g;
            }
        }
    }

    /// One Q8_0 row against `G` input rows of width `k` (a multiple of 32).
    #[target_feature(enable = "avx2,fma")]
    fn q8_0_tile<const G: usize>(wr: &[u8], k: usize, x: &[f32]) -> [f32; G] {
        use super::{Q8_0_BLOCK, Q8_0_BLOCK_BYTES, f16_to_f32};
        let blocks = k / Q8_0_BLOCK;
        assert!(wr.len() >= blocks * Q8_0_BLOCK_BYTES && x.len() >= G * k);
        let mut out = [0f32; G];
        // SAFETY: block b's bytes are wr[b·34..b·34 + 34] (present, asserted above): the scale
        // at +0 and four 8-byte loads at +2, +10, +18, +26; input loads read 8 floats at
        // g·k + b·32 + 8q + 8 <= G·k.
        unsafe {
            let (wp, xp) = (wr.as_ptr(), x.as_ptr());
            let mut acc = [_mm256_setzero_ps(); G];
            for b in 0..blocks {
                let block = wp.add(b * Q8_0_BLOCK_BYTES);
                // The row's bytes 512 ahead into L1: the next blocks' memory reads overlap
                // this block's multiply-adds.
                _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(512) as *const i8);
                let scale = _mm256_set1_ps(f16_to_f32(u16::from_le_bytes([*block, *block.add(1)])));
                let mut ws = [_mm256_setzero_ps(); 4];
                for (q, v) in ws.iter_mut().enumerate() {
                    let bytes = _mm_loadl_epi64(block.add(2 + 8 * q) as *const __m128i);
                    *v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
                }
                // The block's sum of q·x, then one multiply-add by its scale.
                for (g, a) in acc.iter_mut().enumerate() {
                    let xb = xp.add(g * k + b * Q8_0_BLOCK);
                    let mut sum = _mm256_mul_ps(ws[0], _mm256_loadu_ps(xb));
                    sum = _mm256_fmadd_ps(ws[1], _mm256_loadu_ps(xb.add(8)), sum);
                    sum = _mm256_fmadd_ps(ws[2], _mm256_loadu_ps(xb.add(16)), sum);
                    sum = _mm256_fmadd_ps(ws[3], _mm256_loadu_ps(xb.add(24)), sum);
                    *a = _mm256_fmadd_ps(sum, scale, *a);
                }
            }
            for (g, a) in acc.iter().enumerate() {
                out[g] = hsum(*a);
            }
        }
        out
    }

    /// `a · b` (equal lengths), two accumulators of eight.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let wide = len / 16 * 16;
        // SAFETY: every load reads 8 floats at an offset + 8 <= `wide` <= len of both slices.
        let mut sum = unsafe {
            let (ap, bp) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut c = 0;
            while c < wide {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(c)), _mm256_loadu_ps(bp.add(c)), s0);
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(ap.add(c + 8)),
                    _mm256_loadu_ps(bp.add(c + 8)),
                    s1,
                );
                c += 16;
            }
            hsum(_mm256_add_ps(s0, s1))
        };
        for c in wide..len {
            sum += a[c] * b[c];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
        _mm_cvtss_f32(one)
    }
}

/// RMSNorm of each `width`-wide row of `x` into `out`: `x / √(mean(x²) + eps) · scale`, where
/// `scale` is the weight plus the architecture's offset (Gemma's 1).
pub fn rms_norm(x: &[f32], scale: &[f32], eps: f32, out: &mut [f32]) {
    let width = scale.len();
    for (row, dst) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((d, &v), &s) in dst.iter_mut().zip(row).zip(scale) {
            *d = v * inv * s;
        }
    }
}

/// [`rms_norm`] in place.
pub fn rms_norm_in_place(x: &mut [f32], scale: &[f32], eps: f32) {
    let width = scale.len();
    for row in x.chunks_exact_mut(width) {
        let mean = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for (v, &s) in row.iter_mut().zip(scale) {
            *v = *v * inv * s;
        }
    }
}

/// Rotates every head (`cos.len() · 2` wide) of `x` in place, `rotate_half` style (first half
/// against second half, as transformers and candle's `rope` do).
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for head in x.chunks_exact_mut(2 * half) {
        let (x1, x2) = head.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * cos[i] - b * sin[i];
            x2[i] = b * cos[i] + a * sin[i];
        }
    }
}

/// One query head against `len` cached positions: `softmax(cap(q·kⱼ · scale)) · v`, with keys
/// and values `(len × d)` row-major, written into `out (d)`. `weights` is scratch of `len`.
pub fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    scale: f32,
    softcap: Option<f32>,
    weights: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = q.len();
    let level = Simd::best();
    weights.clear();
    weights.extend(keys.chunks_exact(d).map(|k| {
        let s = dot_with(level, q, k) * scale;
        match softcap {
            Some(cap) => cap * (s / cap).tanh(),
            None => s,
        }
    }));
    let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for w in weights.iter_mut() {
        *w = (*w - max).exp();
        total += *w;
    }
    out.fill(0.0);
    for (w, v) in weights.iter().zip(values.chunks_exact(d)) {
        let w = w / total;
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w * x;
        }
    }
}

/// `gate ← act(gate) · up`, elementwise: the gated MLP's middle.
pub fn gate(gate: &mut [f32], up: &[f32], gelu_tanh: bool) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let a = if gelu_tanh {
            // candle's `gelu` (tanh approximation) in f32.
            let x = *g;
            0.5 * x
                * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        } else {
            *g / (1.0 + (-*g).exp())
        };
        *g = a * u;
    }
}

/// `cap · tanh(x / cap)` in place (Gemma 2's final logits).
pub fn soft_cap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = cap * (*v / cap).tanh();
    }
}
