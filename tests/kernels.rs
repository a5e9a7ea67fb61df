//! The decoding step's hand-written kernels (`legibility-kernels`) against the plain candle
//! operations they replace: equal within 1e-5 on random inputs, for every batch size and
//! width they meet, with one thread and with two.

use candle_core::{Device, Tensor};
use legibility_kernels::{
    Simd, attend, dot_with, gate, matmul_t, matmul_t_with, rms_norm, rms_norm_in_place, rope,
    soft_cap,
};

fn random(shape: &[usize], seed: u64) -> (Tensor, Vec<f32>) {
    // A small LCG: reproducible inputs without another dependency.
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let tensor = Tensor::from_vec(values.clone(), shape, &Device::Cpu).unwrap();
    (tensor, values)
}

fn assert_close(got: &[f32], want: &Tensor, what: &str) {
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "{what}: differs from candle by {worst}");
}

#[test]
fn matmul_equals_candles_matmul_at_every_simd_level_batch_size_and_width() {
    // Every vector level this CPU runs (portable, AVX2, AVX-512), widths with and without a
    // vector-width tail, one to nine rows (whole tiles of inputs and the rest), weight row
    // counts that leave a partial tile, one matrix and three side by side; and a pool of two
    // threads splitting the rows.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let levels = Simd::available();
    println!("SIMD levels on this CPU: {levels:?}");
    for level in levels {
        for k in [16, 40, 64, 77] {
            for n in 1..=9 {
                let (xt, x) = random(&[n, k], k as u64 * 31 + n as u64);
                let (w0t, w0) = random(&[70, k], 1);
                let (w1t, w1) = random(&[20, k], 2);
                let (w2t, w2) = random(&[33, k], 3);
                let want = Tensor::cat(
                    &[
                        xt.matmul(&w0t.t().unwrap()).unwrap(),
                        xt.matmul(&w1t.t().unwrap()).unwrap(),
                        xt.matmul(&w2t.t().unwrap()).unwrap(),
                    ],
                    1,
                )
                .unwrap();
                let mut out = vec![0f32; n * 123];
                let mut scratch = Vec::new();
                let weights = [w0.as_slice(), w1.as_slice(), w2.as_slice()];
                matmul_t_with(level, &x, n, k, &weights, &mut out, &mut scratch);
                assert_close(&out, &want, &format!("{level:?} k {k} n {n}"));
                let mut threaded = vec![0f32; n * 123];
                pool.install(|| {
                    matmul_t_with(level, &x, n, k, &weights, &mut threaded, &mut scratch)
                });
                assert_eq!(out, threaded, "{level:?} k {k} n {n}: two threads");
            }
        }
    }
    // The default entry point picks the widest level.
    let (_, x) = random(&[2, 40], 4);
    let (wt, w) = random(&[5, 40], 5);
    let (xt, _) = random(&[2, 40], 4);
    let mut out = vec![0f32; 10];
    matmul_t(&x, 2, 40, &[&w], &mut out, &mut Vec::new());
    assert_close(&out, &xt.matmul(&wt.t().unwrap()).unwrap(), "matmul_t");
}

#[test]
fn dot_products_agree_at_every_simd_level() {
    for len in [1, 8, 16, 40, 64, 77] {
        let (at, a) = random(&[1, len], len as u64);
        let (bt, b) = random(&[len, 1], len as u64 + 1);
        let want = at.matmul(&bt).unwrap();
        for level in Simd::available() {
            assert_close(
                &[dot_with(level, &a, &b)],
                &want,
                &format!("{level:?} dot of {len}"),
            );
        }
    }
}

#[test]
fn rms_norm_equals_candles_fused_kernel() {
    let (xt, x) = random(&[3, 48], 5);
    let (st, scale) = random(&[48], 6);
    let want = candle_nn::ops::rms_norm(&xt, &st, 1e-6).unwrap();
    let mut out = vec![0f32; x.len()];
    rms_norm(&x, &scale, 1e-6, &mut out);
    assert_close(&out, &want, "rms_norm");
    let mut inplace = x.clone();
    rms_norm_in_place(&mut inplace, &scale, 1e-6);
    assert_eq!(inplace, out);
}

#[test]
fn rope_equals_candles_rope() {
    // Three heads of width 16 at one position.
    let (xt, mut x) = random(&[1, 3, 1, 16], 7);
    let (ct, cos) = random(&[1, 8], 8);
    let (s_t, sin) = random(&[1, 8], 9);
    let want = candle_nn::rotary_emb::rope(&xt, &ct, &s_t).unwrap();
    rope(&mut x, &cos, &sin);
    assert_close(&x, &want, "rope");
}

#[test]
fn attention_equals_candles_softmax_path() {
    let (qt, q) = random(&[1, 32], 10);
    let (kt, k) = random(&[9, 32], 11);
    let (vt, v) = random(&[9, 32], 12);
    for softcap in [None, Some(0.5f32)] {
        let mut scores = (qt.matmul(&kt.t().unwrap()).unwrap() * 0.25).unwrap();
        if let Some(cap) = softcap {
            scores = ((scores / cap as f64).unwrap().tanh().unwrap() * cap as f64).unwrap();
        }
        let want = candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&vt)
            .unwrap();
        let mut out = vec![0f32; 32];
        attend(&q, &k, &v, 0.25, softcap, &mut Vec::new(), &mut out);
        assert_close(&out, &want, &format!("attention, soft cap {softcap:?}"));
    }
}

#[test]
fn gates_equal_candles_activations() {
    let (gt, g) = random(&[40], 13);
    let (ut, u) = random(&[40], 14);
    let g3 = (&gt * 3.0).unwrap();
    let g3v: Vec<f32> = g.iter().map(|v| v * 3.0).collect();
    for gelu in [false, true] {
        let act = if gelu {
            g3.gelu().unwrap()
        } else {
            candle_nn::ops::silu(&g3).unwrap()
        };
        let want = (act * &ut).unwrap();
        let mut got = g3v.clone();
        gate(&mut got, &u, gelu);
        assert_close(&got, &want, if gelu { "gelu gate" } else { "silu gate" });
    }
    let mut capped = g3v.clone();
    soft_cap(&mut capped, 2.0);
    let want = ((&g3 / 2.0).unwrap().tanh().unwrap() * 2.0).unwrap();
    assert_close(&capped, &want, "soft cap");
}

#[test]
fn q8_0_products_equal_the_dequantized_matrix_product() {
    // Weights quantized to Q8_0 by candle (llama.cpp's block layout); the kernel multiplies
    // the f32 inputs with the blocks as they are stored, which must equal the f32 product
    // with the dequantized matrix (up to summation order), at every level, batch size and
    // split; a Q8_0 matrix beside an f32 one (as q, k, v of one projection may be).
    use candle_core::quantized::{GgmlDType, QTensor};
    use legibility_kernels::{Matrix, matmul_matrices};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for level in Simd::available() {
        for k in [32, 96, 256] {
            for n in 1..=9 {
                let (xt, x) = random(&[n, k], k as u64 + n as u64);
                let (w0t, _) = random(&[70, k], 7);
                let (w1t, w1) = random(&[21, k], 8);
                let q0 = QTensor::quantize(&w0t, GgmlDType::Q8_0).unwrap();
                let dequantized = q0.dequantize(&Device::Cpu).unwrap();
                let want = Tensor::cat(
                    &[
                        xt.matmul(&dequantized.t().unwrap()).unwrap(),
                        xt.matmul(&w1t.t().unwrap()).unwrap(),
                    ],
                    1,
                )
                .unwrap();
                let bytes = q0.data().unwrap();
                let matrices = [Matrix::Q8_0(&bytes), Matrix::F32(&w1)];
                let mut out = vec![0f32; n * 91];
                let mut scratch = Vec::new();
                matmul_matrices(level, &x, n, k, &matrices, &mut out, &mut scratch);
                assert_close(&out, &want, &format!("{level:?} k {k} n {n}"));
                let mut split = vec![0f32; n * 91];
                pool.install(|| {
                    matmul_matrices(level, &x, n, k, &matrices, &mut split, &mut scratch)
                });
                assert_eq!(split, out, "{level:?} k {k} n {n}: two threads");
            }
        }
    }
}

#[test]
fn half_precision_scales_read_exactly() {
    use legibility_kernels::f16_to_f32;
    for (bits, want) in [
        (0x0000, 0.0f32),
        (0x8000, -0.0),
        (0x3c00, 1.0),
        (0xbc00, -1.0),
        (0x3555, 0.333_251_95),
        (0x0001, 2f32.powi(-24)),
        (0x03ff, 1023.0 * 2f32.powi(-24)),
        (0x0400, 2f32.powi(-14)),
        (0x7bff, 65504.0),
        (0x7c00, f32::INFINITY),
        (0xfc00, f32::NEG_INFINITY),
    ] {
        assert_eq!(f16_to_f32(bits).to_bits(), want.to_bits(), "{bits:#06x}");
    }
    assert!(f16_to_f32(0x7e00).is_nan());
}
