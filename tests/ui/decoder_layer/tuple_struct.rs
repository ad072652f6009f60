use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};

#[decoder_layer]
pub struct TupleLayer(RmsNorm, Attention, GatedMlp);

fn main() {}
