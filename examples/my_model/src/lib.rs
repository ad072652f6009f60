//! An out-of-tree model. This crate defines a decoder layer and a model with the trtllm macros
//! and registers the made-up architecture string `MyLlamaForCausalLM`; the central factory
//! (`trtllm_core::model::build_model`, `trtllm_core::llm::Llm`) then builds it from any HF
//! directory whose `config.json` says `"architectures": ["MyLlamaForCausalLM"]`.
//! Adding it edits no file of trtllm-core, trtllm-models or the CLI.
//!
//! The variant: a Llama with a *parallel residual* (GPT-J / Cohere style): attention and MLP
//! both read the same normed input and are added to the residual together,
//! `x + attn(norm(x)) + mlp(norm(x))`, so there is no `pre_mlp_norm` field. It also normalizes
//! q and k per head before RoPE, a knob HF keeps in modeling code, set by a config adapter.

use std::path::Path;

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};
use trtllm_core::model::{plan_weights, resolve_config, DecoderModelForCausalLM};
use trtllm_core::weights::write_safetensors;
use trtllm_core::{DType, Error, Mapping, Result, Tensor};
use trtllm_macros::{decoder_layer, register_model};

/// The HF architecture string this crate registers.
pub const ARCH: &str = "MyLlamaForCausalLM";

// ---------------------------------------------------------------- the model (step 1 + 3)

/// One block. Field names are the checkpoint names (`model.layers.N.input_layernorm.weight`,
/// `model.layers.N.self_attn.{q,k,v,o}_proj.weight`, `model.layers.N.mlp.{gate,up,down}_proj.weight`).
/// No `pre_mlp_norm` role: the macro wires a parallel residual.
#[decoder_layer]
pub struct MyParallelDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

/// What HF would keep in `modeling_my_llama.py` rather than in config.json: q/k RMSNorm.
/// The attention layer then declares (and loads) `self_attn.q_norm.weight` / `k_norm.weight`.
fn my_llama(cfg: &mut ModelConfig) {
    cfg.arch.qk_norm = true;
}

/// The model: embedding -> N x `MyParallelDecoderLayer` -> final `RmsNorm` (`model.norm`) -> `lm_head`.
#[register_model("MyLlamaForCausalLM", config = my_llama)]
pub struct MyLlama(DecoderModelForCausalLM<MyParallelDecoderLayer>);

/// Call once from a binary or test that finds this model through the registry but names none
/// of its items: `inventory` only sees crates the linker keeps.
#[inline(never)]
pub fn link() -> usize {
    std::hint::black_box(1)
}

// ---------------------------------------------------------------- a tiny checkpoint to run it

/// `config.json` of a tiny `MyLlamaForCausalLM` (2 layers, hidden 64, GQA 4/2, vocab 256).
pub fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": [ARCH],
        "model_type": "my_llama",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

/// splitmix64: a seeded, dependency-free source of weights.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Write a tiny random-weight HF directory for this architecture into `dir`: `config.json`
/// ([`tiny_config`]) and `model.safetensors`. The tensor names and shapes are not written down
/// here: they come from the model's own weight plan (`plan_weights`, every `WeightSpec`'s HF
/// sources), the same data the loader validates against.
pub fn write_tiny_checkpoint(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&tiny_config()).map_err(|e| Error::Msg(e.to_string()))?;
    std::fs::write(&cfg_path, text).map_err(|e| Error::io(&cfg_path, e))?;

    let (cfg, entry) = resolve_config(dir)?;
    let specs = plan_weights(entry, &cfg, Mapping::default(), DType::F32)?;
    let mut rng = Rng(seed);
    let mut tensors = vec![];
    for spec in &specs {
        for src in &spec.sources {
            let n: usize = src.shape.iter().product();
            // Norm weights around 1 (as trained models have them), everything else small.
            let norm = src.name.ends_with("norm.weight");
            let data: Vec<f32> =
                (0..n).map(|_| if norm { 1.0 + 0.2 * rng.next() } else { 0.3 * rng.next() }).collect();
            tensors.push((src.name.clone(), Tensor::from_f32(data, &src.shape)?));
        }
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors, None)
}
