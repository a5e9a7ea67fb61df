//! Which `*.safetensors` files hold a checkpoint's weights. A sharded checkpoint
//! (`save_pretrained` of a model over its shard size, or a Hub download) names its shards in
//! `model.safetensors.index.json` (`weight_map`: tensor → file); only those files are read, so
//! a Hub Mistral folder's `consolidated.safetensors` (Mistral's own format, beside the
//! transformers shards) is never mixed in. Without an index every `*.safetensors` is a shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ModelError;

/// The index of a sharded safetensors checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A parsed `model.safetensors.index.json`: which shard holds each tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightIndex {
    weight_map: BTreeMap<String, String>,
}

impl WeightIndex {
    /// Parses the index. Refuses (with a message starting with the file name) anything but a
    /// JSON object whose `weight_map` maps at least one tensor to a plain `*.safetensors` file
    /// name: the index decides which files are opened, so it may not point outside the folder.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            weight_map: BTreeMap<String, String>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            format!("{INDEX_FILE} is not a valid index (an object with a \"weight_map\" of tensor names to shard files): {e}")
        })?;
        if raw.weight_map.is_empty() {
            return Err(format!("{INDEX_FILE}: its weight_map lists no tensors"));
        }
        for (tensor, file) in &raw.weight_map {
            let plain = !file.is_empty()
                && !file.starts_with('.')
                && !file.contains(['/', '\\', '\0'])
                && file.len() > ".safetensors".len()
                && file.ends_with(".safetensors");
            if !plain {
                return Err(format!(
                    "{INDEX_FILE} maps {tensor} to {file:?}; shards must be *.safetensors files in the same folder"
                ));
            }
        }
        Ok(WeightIndex {
            weight_map: raw.weight_map,
        })
    }

    /// Tensor name → shard file name, sorted by tensor name.
    pub fn weight_map(&self) -> &BTreeMap<String, String> {
        &self.weight_map
    }

    /// The shard files the index names, sorted, each once.
    pub fn files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.weight_map.values().map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        files
    }
}

/// The weight files of a checkpoint folder, sorted: the shards its index names when it has one
/// (each must exist), otherwise every `*.safetensors` file.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join(INDEX_FILE);
    let bytes = match std::fs::read(&index) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ModelError::io(&index, e)),
    };
    if let Some(bytes) = bytes {
        let parsed = WeightIndex::from_json(&bytes)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", dir.display())))?;
        let mut weights = Vec::new();
        for file in parsed.files() {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(ModelError::Invalid(format!(
                    "{}: {INDEX_FILE} names the shard {file}, which is missing",
                    dir.display()
                )));
            }
            weights.push(path);
        }
        return Ok(weights);
    }
    let mut weights: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    weights.sort();
    if weights.is_empty() {
        if let Some(gguf) = super::gguf::gguf_files(dir)?.first() {
            return Err(ModelError::Invalid(format!(
                "{}: its weights are GGUF ({}), which are read for generating solutions only; fine-tuning starts from a safetensors checkpoint (register the original one)",
                dir.display(),
                gguf.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
        return Err(ModelError::Invalid(format!(
            "{}: no *.safetensors weights",
            dir.display()
        )));
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_decides_which_files_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        for name in [
            "consolidated.safetensors",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        // Without an index: every *.safetensors, sorted.
        let all = weight_files(dir.path()).expect("files");
        assert_eq!(all.len(), 3);
        assert!(all[0].ends_with("consolidated.safetensors"));

        let index = serde_json::json!({
            "metadata": {"total_size": 2},
            "weight_map": {
                "model.norm.weight": "model-00002-of-00002.safetensors",
                "lm_head.weight": "model-00002-of-00002.safetensors",
                "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
            }
        });
        std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).expect("write");
        let mapped = weight_files(dir.path()).expect("files");
        let names: Vec<_> = mapped
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );

        std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("rm");
        let err = weight_files(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("names the shard model-00002-of-00002.safetensors, which is missing"),
            "{err}"
        );
    }

    #[test]
    fn an_index_may_only_name_shards_beside_it() {
        for (map, why) in [
            (serde_json::json!({}), "lists no tensors"),
            (
                serde_json::json!({"a": "../x.safetensors"}),
                "\"../x.safetensors\"",
            ),
            (
                serde_json::json!({"a": "/abs.safetensors"}),
                "\"/abs.safetensors\"",
            ),
            (serde_json::json!({"a": "model.bin"}), "\"model.bin\""),
            (serde_json::json!({"a": ".safetensors"}), "\".safetensors\""),
        ] {
            let bytes = serde_json::json!({ "weight_map": map }).to_string();
            let err = WeightIndex::from_json(bytes.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let err = WeightIndex::from_json(b"[]").unwrap_err();
        assert!(err.starts_with("model.safetensors.index.json is not a valid index"));
    }
}
