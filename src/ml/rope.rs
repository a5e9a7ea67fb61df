//! Rotary position embeddings as transformers computes them, for every rope type the supported
//! architectures use: `default`, `linear`, `dynamic` (NTK), `llama3`, `yarn` and `longrope`,
//! read from either config dialect (transformers ≤ 4: top-level `rope_theta` + `rope_scaling`;
//! transformers ≥ 5: `rope_parameters`). A rope type or a rope setting this code does not
//! implement is refused by name: a model whose positions are silently wrong generates garbage
//! that still looks like text.
//!
//! Two rope types depend on the length of the forward pass (`dynamic` and `longrope`); their
//! tables are computed per forward, from the largest position it covers, exactly as
//! transformers' rotary module does (see `scripts/reference/README.md`).

use std::collections::BTreeSet;

use candle_core::{Device, Tensor};
use serde_json::Value;

/// How the base frequencies are changed for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (Llama 2 era).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// NTK-aware dynamic scaling: past `max_position_embeddings` the base grows with the
    /// forward's length.
    Dynamic {
        /// Scaling factor.
        factor: f64,
    },
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept, a smooth band between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original: f64,
    },
    /// YaRN (Qwen2.5 long-context configs): a ramp between interpolated and kept frequencies,
    /// and cos/sin scaled by an attention factor.
    Yarn {
        /// Interpolation factor.
        factor: f64,
        /// Multiplies cos and sin.
        attention_factor: f64,
        /// Rotations at which the ramp starts.
        beta_fast: f64,
        /// Rotations at which the ramp ends.
        beta_slow: f64,
        /// The pretrained context length.
        original: f64,
        /// Round the ramp's ends to whole dimensions (transformers' default).
        truncate: bool,
    },
    /// Phi-3 LongRoPE: per-frequency factors, the long ones once a forward passes the original
    /// length; cos/sin scaled by an attention factor in both regimes.
    LongRope {
        /// Factors up to the original length, one per frequency pair.
        short: Vec<f64>,
        /// Factors past it.
        long: Vec<f64>,
        /// The pretrained context length.
        original: usize,
        /// Multiplies cos and sin.
        attention_factor: f64,
    },
}

/// A model's rotary embedding: base, width and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// The base θ.
    pub theta: f64,
    /// Width rotated per head (the head width: partial rotary is refused).
    pub dim: usize,
    /// `max_position_embeddings`, which `dynamic` scaling measures lengths against.
    pub max_positions: usize,
    /// The scaling.
    pub scaling: RopeScaling,
}

/// A config's rope fields as either dialect writes them, kept raw so [`Rope::from_fields`]
/// reads them with one set of rules (flattened into each architecture's `Config`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RopeFields {
    /// The base (transformers ≤ 4; in `rope_parameters` from 5 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// The scaling (transformers ≤ 4), or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    /// Base, type and scaling together (transformers ≥ 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    /// Phi-3's pretrained length, at the top level in its configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
    /// The share of each head that is rotated (only 1.0 is supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
}

impl RopeFields {
    /// Plain RoPE with base `theta` (what the project's own models write).
    pub fn theta(theta: f64) -> Self {
        Self {
            rope_theta: Some(theta),
            ..Self::default()
        }
    }
}

/// Settings every rope type may carry.
const COMMON_KEYS: &[&str] = &["rope_theta", "rope_type", "type", "partial_rotary_factor"];

impl Rope {
    /// Reads the rope of a `config.json` in either dialect. `theta_default` is the
    /// architecture's default base when the config names none; `dim` is the head width.
    pub fn from_config(config: &Value, theta_default: f64, dim: usize) -> Result<Rope, String> {
        let max_positions = config
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .unwrap_or(2048) as usize;
        let (mut params, source) = match config.get("rope_parameters") {
            Some(Value::Object(p)) => (p.clone(), "rope_parameters"),
            Some(Value::Null) | None => match config.get("rope_scaling") {
                Some(Value::Object(p)) => (p.clone(), "rope_scaling"),
                Some(Value::Null) | None => (serde_json::Map::new(), "rope_scaling"),
                Some(other) => {
                    return Err(format!(
                        "config.json: rope_scaling must be an object or null, not {other}"
                    ));
                }
            },
            Some(other) => {
                return Err(format!(
                    "config.json: rope_parameters must be an object, not {other}"
                ));
            }
        };
        let number = |key: &str| -> Result<Option<f64>, String> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    format!("config.json: {source}.{key} must be a number, not {v}")
                }),
            }
        };
        let theta = match number("rope_theta")? {
            Some(theta) => theta,
            None => match config.get("rope_theta") {
                Some(v) if !v.is_null() => v
                    .as_f64()
                    .ok_or_else(|| format!("config.json: rope_theta must be a number, not {v}"))?,
                _ => theta_default,
            },
        };
        if theta.is_nan() || theta <= 1.0 || !theta.is_finite() {
            return Err(format!("config.json: rope_theta {theta} must be above 1"));
        }
        let partial = number("partial_rotary_factor")?
            .or(config.get("partial_rotary_factor").and_then(Value::as_f64));
        if let Some(partial) = partial
            && partial != 1.0
        {
            return Err(format!(
                "config.json: partial_rotary_factor {partial} (rotating part of each head) is not supported; only 1.0"
            ));
        }
        let kind = match params.get("rope_type").or_else(|| params.get("type")) {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(format!(
                    "config.json: {source}.rope_type must be a string, not {other}"
                ));
            }
        };
        // transformers 5 moves Phi-3's top-level original length into the rope settings and
        // gives the top-level value priority.
        if kind == "longrope"
            && let Some(original) = config.get("original_max_position_embeddings")
            && !original.is_null()
        {
            params.insert("original_max_position_embeddings".into(), original.clone());
        }
        let number = |key: &str| -> Result<Option<f64>, String> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    format!("config.json: {source}.{key} must be a number, not {v}")
                }),
            }
        };
        let require = |key: &str| -> Result<f64, String> {
            number(key)?.ok_or_else(|| {
                format!("config.json: rope type {kind:?} needs {source}.{key}, which is missing")
            })
        };
        let (scaling, allowed): (RopeScaling, &[&str]) = match kind.as_str() {
            // The original length is written by some configs beside these types and unused.
            "default" => (RopeScaling::Default, &["original_max_position_embeddings"]),
            "linear" => (
                RopeScaling::Linear {
                    factor: require("factor")?,
                },
                &["factor", "original_max_position_embeddings"],
            ),
            "dynamic" => (
                RopeScaling::Dynamic {
                    factor: require("factor")?,
                },
                &["factor", "original_max_position_embeddings"],
            ),
            "llama3" => (
                RopeScaling::Llama3 {
                    factor: require("factor")?,
                    low_freq_factor: require("low_freq_factor")?,
                    high_freq_factor: require("high_freq_factor")?,
                    original: require("original_max_position_embeddings")?,
                },
                &[
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ],
            ),
            "yarn" => {
                let original = require("original_max_position_embeddings")?;
                let factor = match number("factor")? {
                    Some(factor) => factor,
                    None => max_positions as f64 / original,
                };
                let mscale = |scale: f64, m: f64| {
                    if scale <= 1.0 {
                        1.0
                    } else {
                        0.1 * m * scale.ln() + 1.0
                    }
                };
                let attention_factor = match number("attention_factor")? {
                    Some(a) => a,
                    None => match (number("mscale")?, number("mscale_all_dim")?) {
                        (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                            mscale(factor, m) / mscale(factor, all)
                        }
                        _ => mscale(factor, 1.0),
                    },
                };
                let truncate = match params.get("truncate") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(format!(
                            "config.json: {source}.truncate must be true or false, not {other}"
                        ));
                    }
                };
                (
                    RopeScaling::Yarn {
                        factor,
                        attention_factor,
                        beta_fast: number("beta_fast")?.unwrap_or(32.0),
                        beta_slow: number("beta_slow")?.unwrap_or(1.0),
                        original,
                        truncate,
                    },
                    &[
                        "factor",
                        "attention_factor",
                        "beta_fast",
                        "beta_slow",
                        "original_max_position_embeddings",
                        "mscale",
                        "mscale_all_dim",
                        "truncate",
                    ],
                )
            }
            "longrope" => {
                let original = require("original_max_position_embeddings")?;
                let factors = |key: &str| -> Result<Vec<f64>, String> {
                    let list = params.get(key).and_then(Value::as_array).ok_or_else(|| {
                        format!("config.json: rope type \"longrope\" needs {source}.{key}, a list of numbers")
                    })?;
                    let values: Option<Vec<f64>> = list.iter().map(Value::as_f64).collect();
                    let values = values.ok_or_else(|| {
                        format!("config.json: {source}.{key} must hold numbers only")
                    })?;
                    if values.len() != dim / 2 {
                        return Err(format!(
                            "config.json: {source}.{key} has {} factors; the head width {dim} needs {}",
                            values.len(),
                            dim / 2
                        ));
                    }
                    Ok(values)
                };
                let factor = number("factor")?.unwrap_or(max_positions as f64 / original);
                let attention_factor = match number("attention_factor")? {
                    Some(a) => a,
                    None if factor <= 1.0 => 1.0,
                    None => (1.0 + factor.ln() / original.ln()).sqrt(),
                };
                (
                    RopeScaling::LongRope {
                        short: factors("short_factor")?,
                        long: factors("long_factor")?,
                        original: original as usize,
                        attention_factor,
                    },
                    &[
                        "short_factor",
                        "long_factor",
                        "factor",
                        "original_max_position_embeddings",
                        "attention_factor",
                    ],
                )
            }
            other => {
                return Err(format!(
                    "config.json: rope type {other:?} is not supported (supported: default, linear, dynamic, llama3, yarn, longrope); this checkpoint would compute wrong positions"
                ));
            }
        };
        let unknown: BTreeSet<&str> = params
            .keys()
            .map(String::as_str)
            .filter(|k| !COMMON_KEYS.contains(k) && !allowed.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "config.json: {source} for rope type {kind:?} has settings this code does not implement: {}",
                unknown.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(format!(
                "config.json: the head width {dim} must be even for rotary embeddings"
            ));
        }
        Ok(Rope {
            theta,
            dim,
            max_positions,
            scaling,
        })
    }

    /// [`Rope::from_config`] of an architecture's parsed rope fields.
    pub fn from_fields(
        fields: &RopeFields,
        max_positions: usize,
        theta_default: f64,
        dim: usize,
    ) -> Result<Rope, String> {
        let mut config = match serde_json::to_value(fields) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        config.insert("max_position_embeddings".into(), max_positions.into());
        Rope::from_config(&Value::Object(config), theta_default, dim)
    }

    /// Plain RoPE with base `theta` over heads of width `dim` (the project's own models).
    pub fn plain(theta: f64, dim: usize, max_positions: usize) -> Rope {
        Rope {
            theta,
            dim,
            max_positions,
            scaling: RopeScaling::Default,
        }
    }

    /// The rope type's name, as configs write it.
    pub fn kind(&self) -> &'static str {
        match self.scaling {
            RopeScaling::Default => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::Yarn { .. } => "yarn",
            RopeScaling::LongRope { .. } => "longrope",
        }
    }

    /// Whether the tables depend on the forward's length (then they are not cached).
    pub fn depends_on_length(&self) -> bool {
        matches!(
            self.scaling,
            RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. }
        )
    }

    /// The length at which LongRoPE switches to its long factors: transformers' Phi-3 drops its
    /// KV cache the first time a sequence passes it and recomputes the whole sequence.
    pub fn regime_switch(&self) -> Option<usize> {
        match self.scaling {
            RopeScaling::LongRope { original, .. } => Some(original),
            _ => None,
        }
    }

    /// Base inverse frequencies for base `theta`, in f32 as transformers computes them.
    fn base(&self, theta: f64) -> Vec<f32> {
        let d = self.dim as f32;
        let theta = theta as f32;
        (0..self.dim / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / d))
            .collect()
    }

    /// Inverse frequencies and the cos/sin scale for a forward whose largest position is
    /// `length - 1`.
    pub fn frequencies(&self, length: usize) -> (Vec<f32>, f32) {
        let d = self.dim;
        match &self.scaling {
            RopeScaling::Default => (self.base(self.theta), 1.0),
            RopeScaling::Linear { factor } => (
                self.base(self.theta)
                    .into_iter()
                    .map(|f| f / *factor as f32)
                    .collect(),
                1.0,
            ),
            RopeScaling::Dynamic { factor } => {
                if length <= self.max_positions {
                    return (self.base(self.theta), 1.0);
                }
                let grown = factor * length as f64 / self.max_positions as f64 - (factor - 1.0);
                let theta = self.theta * grown.powf(d as f64 / (d as f64 - 2.0));
                (self.base(theta), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original,
            } => {
                let (factor, low, high, original) = (
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                    *original as f32,
                );
                let low_wavelen = original / low;
                let high_wavelen = original / high;
                let inv = self
                    .base(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                attention_factor,
                beta_fast,
                beta_slow,
                original,
                truncate,
            } => {
                let correction = |rotations: f64| {
                    d as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * self.theta.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(d as f64 - 1.0);
                if low == high {
                    high += 0.001;
                }
                let inv = (0..d / 2)
                    .map(|i| {
                        let pos = (self.theta as f32).powf((2 * i) as f32 / d as f32);
                        let ramp =
                            ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        (1.0 / (*factor as f32 * pos)) * (1.0 - extrapolation)
                            + (1.0 / pos) * extrapolation
                    })
                    .collect();
                (inv, *attention_factor as f32)
            }
            RopeScaling::LongRope {
                short,
                long,
                original,
                attention_factor,
            } => {
                let ext = if length > *original { long } else { short };
                let inv = (0..d / 2)
                    .map(|i| {
                        let shape = (2 * i) as f32 / d as f32;
                        1.0 / (ext[i] as f32 * (self.theta as f32).powf(shape))
                    })
                    .collect();
                (inv, *attention_factor as f32)
            }
        }
    }

    /// cos and sin, `(count, dim / 2)`, for positions `start..start + count` of a forward whose
    /// largest position is `length - 1`.
    pub fn tables(
        &self,
        start: usize,
        count: usize,
        length: usize,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (inv, scale) = self.frequencies(length);
        let half = inv.len();
        let mut cos = Vec::with_capacity(count * half);
        let mut sin = Vec::with_capacity(count * half);
        for p in start..start + count {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos() * scale);
                sin.push(angle.sin() * scale);
            }
        }
        Ok((
            Tensor::from_vec(cos, (count, half), device)?,
            Tensor::from_vec(sin, (count, half), device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rope(config: Value) -> Result<Rope, String> {
        Rope::from_config(&config, 10_000.0, 8)
    }

    #[test]
    fn both_dialects_give_the_same_rope() {
        let v5 = rope(json!({"max_position_embeddings": 128,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 16}}))
        .unwrap();
        let v4 = rope(
            json!({"max_position_embeddings": 128, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
        )
        .unwrap();
        assert_eq!(v4, v5);
        assert_eq!(v5.kind(), "llama3");
        // "type" is the older spelling.
        let linear = rope(json!({"rope_scaling": {"type": "linear", "factor": 2.0}})).unwrap();
        assert_eq!(linear.scaling, RopeScaling::Linear { factor: 2.0 });
        // A transformers-5 config without rope_theta anywhere takes the architecture's default;
        // one with it in rope_parameters must not fall back to 10000.
        assert_eq!(rope(json!({})).unwrap().theta, 10_000.0);
        assert_eq!(
            rope(json!({"rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}))
                .unwrap()
                .theta,
            1e6
        );
    }

    #[test]
    fn unknown_rope_types_and_settings_are_refused_by_name() {
        let err = rope(json!({"rope_scaling": {"rope_type": "su", "factor": 2.0}})).unwrap_err();
        assert!(
            err.contains("\"su\"") && err.contains("not supported"),
            "{err}"
        );
        let err = rope(json!({"rope_scaling": {"type": "linear", "factor": 2.0, "beta": 3}}))
            .unwrap_err();
        assert!(err.contains("beta"), "{err}");
        let err = rope(json!({"rope_scaling": {"type": "linear"}})).unwrap_err();
        assert!(err.contains("factor"), "{err}");
        let err = rope(json!({"partial_rotary_factor": 0.5})).unwrap_err();
        assert!(err.contains("partial_rotary_factor"), "{err}");
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let r = rope(
            json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}}),
        )
        .unwrap();
        let (base, _) = Rope::plain(500000.0, 8, 128).frequencies(1);
        let (scaled, _) = r.frequencies(1);
        // Wavelength 6.3 lies between 16/4 and 16/1: smoothed, with s = (16/6.28 − 1)/3.
        let wavelen = 2.0 * std::f32::consts::PI / base[0];
        let s = (16.0 / wavelen - 1.0) / 3.0;
        assert!((scaled[0] - ((1.0 - s) * base[0] / 8.0 + s * base[0])).abs() < 1e-6);
        // Wavelengths 167 and beyond (above 16/1): divided by 8.
        for i in 1..4 {
            assert!((scaled[i] - base[i] / 8.0).abs() < 1e-9, "{i}");
        }
    }

    #[test]
    fn length_dependent_ropes_switch_with_the_forward_length() {
        let dynamic =
            rope(json!({"max_position_embeddings": 24, "rope_scaling": {"type": "dynamic", "factor": 2.0}}))
                .unwrap();
        assert_eq!(dynamic.frequencies(24).0, dynamic.frequencies(1).0);
        assert!(dynamic.frequencies(25).0[1] < dynamic.frequencies(24).0[1]);
        let longrope = rope(json!({"max_position_embeddings": 128,
            "original_max_position_embeddings": 16,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.2, 2.1, 3.6],
                             "long_factor": [1.0, 2.2, 9.0, 24.0]}}))
        .unwrap();
        let (short, scale) = longrope.frequencies(16);
        let (long, _) = longrope.frequencies(17);
        assert!((scale - 1.75f32.sqrt()).abs() < 1e-6, "{scale}");
        assert!(long[3] < short[3]);
        assert_eq!(longrope.regime_switch(), Some(16));
    }
}
