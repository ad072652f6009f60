use trtllm::register_model;

#[register_model("UiEnumForCausalLM")]
pub enum NotAModel {
    A,
    B,
}

fn main() {}
