//! Build `MyLlamaForCausalLM` through the central factory and generate.
//!
//! ```text
//! cargo run -p my_model                 # writes a tiny random checkpoint to a temp dir, runs it
//! cargo run -p my_model -- DIR          # any HF dir whose config.json names MyLlamaForCausalLM
//! cargo run -p my_model -- DIR "text"   # with a tokenizer.json in DIR: generate from text
//! ```

use std::path::{Path, PathBuf};

use trtllm_core::config::ModelConfig;

use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::{architectures, lookup};
use trtllm_core::runner::SamplingParams;
use trtllm_core::DType;

fn main() -> trtllm_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let (dir, prompt) = (args.next(), args.next());
    match dir {
        Some(d) => run(&PathBuf::from(d), prompt),
        None => {
            let d = std::env::temp_dir().join(format!("my_model-{}", std::process::id()));
            my_model::write_tiny_checkpoint(&d, 42)?;
            println!("wrote a tiny random {} checkpoint to {}", my_model::ARCH, d.display());
            let result = run(&d, None);
            let _ = std::fs::remove_dir_all(&d);
            result
        }
    }
}

/// Build the model of `dir` through the central factory and generate 16 greedy tokens.
fn run(dir: &Path, prompt: Option<String>) -> trtllm_core::Result<()> {
    // The registry holds what the linker kept: this crate's model (the zoo is not linked here).
    for (arch, ty) in architectures() {
        println!("registered: {arch:24} {ty}");
    }
    let cfg = ModelConfig::from_hf_dir(dir)?;
    let entry = lookup(&cfg.architecture)?;
    println!("{} -> {}", cfg.architecture, entry.type_name);

    // The same factory `trtllm run` uses: config.json -> registry -> plan -> validate -> load.
    let mut opts = LlmOptions { max_batch_size: 1, max_seq_len: 512, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    let mut llm = Llm::with_options(dir, opts)?;
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(16) };
    match (prompt, llm.tokenizer.is_some()) {
        (Some(p), true) => {
            let out = llm.generate(&[p.as_str()], &params)?;
            println!("{p}{}", out[0].text);
        }
        _ => {
            let out = llm.generate_ids(vec![vec![1, 17, 42, 99, 7]], &params, &mut |_, _| {})?;
            println!("greedy token ids: {:?}", out[0].token_ids);
        }
    }
    Ok(())
}
