//! The on-disk descriptions of our two directory kinds: a checkpoint's `config.json`
//! (`"format": "trtllm-checkpoint"`) and an engine's `build_config.json`; and the detection of
//! what kind of directory a path is (HF, checkpoint, engine).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::{DType, Error, Mapping, Result};

/// Layout version of the checkpoints `trtllm convert` writes. Bumped whenever the engine tensor
/// names, layouts or the `model_config` schema change; a checkpoint or engine from another
/// version is refused (re-run `trtllm convert`).
pub const CONVERTER_VERSION: u32 = 2;
pub const CHECKPOINT_FORMAT: &str = "trtllm-checkpoint";
pub const ENGINE_FORMAT: &str = "trtllm-engine";
pub const BUILD_CONFIG: &str = "build_config.json";

/// Tokenizer and generation files carried from the HF directory into checkpoints and engines.
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

/// The parallel layout a checkpoint was converted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMapping {
    pub world_size: usize,
    pub tp_size: usize,
    pub pp_size: usize,
}

impl CheckpointMapping {
    /// The mapping of one rank of this layout.
    pub fn rank(&self, rank: usize) -> Result<Mapping> {
        Mapping::new(self.tp_size, self.pp_size, rank)
    }
}

/// `config.json` of a converted checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointConfig {
    pub format: String,
    pub converter_version: u32,
    pub architecture: String,
    /// Storage dtype of the weights (norms are always f32), HF spelling.
    #[serde(with = "dtype_name")]
    pub dtype: DType,
    pub mapping: CheckpointMapping,
    /// The normalized config, config adapter applied.
    pub model_config: ModelConfig,
    /// The HF `config.json` it came from, verbatim.
    pub hf_config: serde_json::Value,
}

/// `build_config.json` of an engine directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildConfig {
    pub format: String,
    pub converter_version: u32,
    /// The trtllm version that built it.
    pub builder_version: String,
    pub max_batch_size: usize,
    pub max_input_len: usize,
    pub max_seq_len: usize,
    pub max_num_tokens: usize,
    pub kv_block_size: usize,
    /// SM the kernels are compiled for (`"sm_90"` as 90), when given.
    pub target_sm: Option<u32>,
    /// Precompiled kernel files in the engine dir (filled by the CUDA backend).
    pub kernels: Vec<String>,
}

mod dtype_name {
    use crate::DType;
    pub fn serialize<S: serde::Serializer>(d: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.hf_name())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        DType::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a model directory holds.
#[derive(Clone, Debug)]
pub enum ModelDir {
    /// A Hugging Face directory (`config.json` with `architectures`, safetensors).
    Hf,
    /// `trtllm convert` output.
    Checkpoint(Box<CheckpointConfig>),
    /// `trtllm build` output.
    Engine(Box<CheckpointConfig>, BuildConfig),
    /// A GGUF file's model directory (`gguf::model_dir`): metadata here, weights in the file.
    Gguf(std::path::PathBuf),
}

impl ModelDir {
    /// Tell the kind of `dir` and read its descriptions (versions checked).
    pub fn detect(dir: &Path) -> Result<Self> {
        let build = dir.join(BUILD_CONFIG);
        if build.exists() {
            let b = read_build_config(dir)?;
            return Ok(ModelDir::Engine(Box::new(read_checkpoint_config(dir)?), b));
        }
        if let Some(g) = crate::gguf::gguf_of_dir(dir)? {
            return Ok(ModelDir::Gguf(g));
        }
        let cfg = dir.join("config.json");
        let v = crate::error::read_json(&cfg)?;
        if v.get("format").is_some() {
            return Ok(ModelDir::Checkpoint(Box::new(read_checkpoint_config(dir)?)));
        }
        Ok(ModelDir::Hf)
    }

    pub fn checkpoint(&self) -> Option<&CheckpointConfig> {
        match self {
            ModelDir::Hf | ModelDir::Gguf(_) => None,
            ModelDir::Checkpoint(c) | ModelDir::Engine(c, _) => Some(c),
        }
    }
}

fn check_version(file: &Path, found: Option<u64>, what: &str) -> Result<()> {
    match found {
        Some(v) if v == CONVERTER_VERSION as u64 => Ok(()),
        Some(v) => Err(Error::checkpoint(
            file,
            format!(
                "this {what} was written by converter version {v}, but this trtllm reads converter version {CONVERTER_VERSION}; \
                 re-run `trtllm convert` (and `trtllm build`) with this trtllm"
            ),
        )),
        None => Err(Error::config(file, "converter_version", "missing or not an integer")),
    }
}

/// Read and check `dir/config.json` of a checkpoint or engine.
pub fn read_checkpoint_config(dir: &Path) -> Result<CheckpointConfig> {
    let file = dir.join("config.json");
    let v = crate::error::read_json(&file)?;
    match v.get("format").and_then(|f| f.as_str()) {
        Some(CHECKPOINT_FORMAT) => {}
        Some(other) => {
            return Err(Error::config(&file, "format", format!("`{other}`, expected `{CHECKPOINT_FORMAT}`")));
        }
        None => {
            return Err(Error::checkpoint(
                &file,
                format!("not a trtllm checkpoint (no \"format\": \"{CHECKPOINT_FORMAT}\"); convert an HF directory with `trtllm convert`"),
            ))
        }
    }
    check_version(&file, v.get("converter_version").and_then(|x| x.as_u64()), "checkpoint")?;
    let c: CheckpointConfig =
        serde_json::from_value(v).map_err(|e| Error::config(&file, "(schema)", e.to_string()))?;
    let m = c.mapping;
    if m.tp_size == 0 || m.pp_size == 0 || m.world_size != m.tp_size * m.pp_size {
        return Err(Error::config(&file, "mapping", format!("inconsistent {m:?}")));
    }
    c.model_config.check_limits(&file)?;
    Ok(c)
}

/// Read and check `dir/build_config.json`.
pub fn read_build_config(dir: &Path) -> Result<BuildConfig> {
    let file = dir.join(BUILD_CONFIG);
    let v = crate::error::read_json(&file)?;
    if v.get("format").and_then(|f| f.as_str()) != Some(ENGINE_FORMAT) {
        return Err(Error::config(&file, "format", format!("expected `{ENGINE_FORMAT}`")));
    }
    check_version(&file, v.get("converter_version").and_then(|x| x.as_u64()), "engine")?;
    let b: BuildConfig =
        serde_json::from_value(v).map_err(|e| Error::config(&file, "(schema)", e.to_string()))?;
    b.check(&file)?;
    Ok(b)
}

impl BuildConfig {
    /// Every limit positive and under its cap (`config::limits`), `max_input_len <= max_seq_len`:
    /// checked when building and again at every load (the file may have been edited).
    pub fn check(&self, file: &Path) -> Result<()> {
        use crate::config::{check_range, MAX_BATCH_SIZE, MAX_CONTEXT, MAX_KV_BLOCK_SIZE, MAX_NUM_TOKENS};
        check_range(file, "kv_block_size", self.kv_block_size, MAX_KV_BLOCK_SIZE)?;
        check_range(file, "max_seq_len", self.max_seq_len, MAX_CONTEXT)?;
        check_range(file, "max_input_len", self.max_input_len, self.max_seq_len)?;
        check_range(file, "max_batch_size", self.max_batch_size, MAX_BATCH_SIZE)?;
        check_range(file, "max_num_tokens", self.max_num_tokens, MAX_NUM_TOKENS)?;
        Ok(())
    }
}

/// `dir/rank{r}.safetensors`.
pub fn rank_file(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank{rank}.safetensors"))
}

/// Write a JSON file (pretty, trailing newline), naming it in errors.
pub(crate) fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    s.push('\n');
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}
