// Fixed: the error names the field (this case guards against regressions).
//
use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};

#[decoder_layer]
pub struct TupleLayer(
    #[layer(role = input_norm)] RmsNorm,
    #[layer(role = attention)] Attention,
    #[layer(role = mlp)] GatedMlp,
);

fn main() {}
