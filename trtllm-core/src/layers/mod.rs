//! Layers (API levels 2 and 3). Each layer builds itself from the config and a `VarBuilder`
//! (which declares its weights) and runs on a `ForwardCtx`. The role traits are what
//! `#[decoder_layer]` wires: a field whose type does not implement its role's trait is a
//! compile error on that field's type. A layer with inner tensors names them from data
//! (`AttnNames`, `GatedMlpNames`, `MlpNames`, `MoeNames`): `Module::build` uses the Llama family's
//! names, `#[layer(names = CONST)]` a model's own (`Named::build_named`).

mod attention;
mod embedding;
mod linear;
mod mla;
mod mlp;
mod moe;
mod norm;

pub use attention::{Attention, AttnNames};
pub use embedding::Embedding;
pub use linear::{Linear, Packed, Stored};
pub use mla::MlaAttention;
pub use mlp::{GatedMlp, GatedMlpNames, Mlp, MlpNames};
pub use moe::{moe_pairs_fit, MoeNames, MoeOrDense, SparseMoe};
pub use norm::{AllHeadsRmsNorm, GemmaRmsNorm, LayerNorm, LayerNormNoBias, QkNormType, RmsNorm, RmsNormType};

use crate::batch::{DeviceBatch, ForwardBatch, KvCache};
use crate::config::ModelConfig;
use crate::dist::Communicator;
use crate::weights::VarBuilder;
use crate::{Result, Tensor};

/// What a layer is built from.
pub struct BuildCtx<'a> {
    pub cfg: &'a ModelConfig,
    /// Index of the decoder layer being built (global, not per pipeline stage).
    pub layer_idx: usize,
}

/// What a forward runs on.
pub struct ForwardCtx<'a> {
    pub batch: &'a ForwardBatch,
    pub kv: &'a mut KvCache,
    pub comm: &'a dyn Communicator,
    /// The batch metadata on the GPU, when the model runs there.
    pub dev: Option<&'a DeviceBatch>,
}

/// Built from the config and weights.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a layer: a #[decoder_layer] field must implement `trtllm_core::layers::Module`",
    label = "not a layer type"
)]
pub trait Module: Sized {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self>;
}

/// A layer whose inner tensors' checkpoint names are data (`Self::Names`, a struct of names
/// with a `LLAMA` constant that `Module::build` uses). `#[layer(names = CONST)]` on a
/// `#[decoder_layer]` field builds it through `build_named` with the model's `CONST`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` takes no `names`: it is not a `trtllm_core::layers::Named` layer",
    label = "`#[layer(names = ...)]` needs a layer with named inner tensors (Attention, GatedMlp, Mlp, SparseMoe, MoeOrDense)"
)]
pub trait Named: Module {
    type Names: 'static;
    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &Self::Names) -> Result<Self>;
}

/// Role `input_norm`, `pre_mlp_norm`, `post_attention_norm`, `post_mlp_norm`, and a model's final norm.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a norm layer (`trtllm_core::layers::NormLayer`)",
    label = "a norm role needs a norm layer type (RmsNorm, GemmaRmsNorm, LayerNorm)"
)]
pub trait NormLayer: Module {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// `s = x + residual; (s, norm(s))`. Backends fuse it.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = crate::ops::add(x, residual)?;
        let n = self.forward(&s)?;
        Ok((s, n))
    }
}

/// Role `attention`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an attention layer (`trtllm_core::layers::AttentionLayer`)",
    label = "role `attention` needs an attention layer type (Attention, MlaAttention)"
)]
pub trait AttentionLayer: Module {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor>;
}

/// Role `mlp`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an MLP layer (`trtllm_core::layers::MlpLayer`)",
    label = "role `mlp` needs an MLP layer type (GatedMlp, Mlp, SparseMoe, MoeOrDense)"
)]
pub trait MlpLayer: Module {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor>;
}
