use trtllm::decoder_layer;

#[decoder_layer]
pub enum NotAStruct {
    Norm,
    Attention,
}

fn main() {}
