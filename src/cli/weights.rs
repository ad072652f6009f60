//! `trtllm weights --model DIR`: the weight map as a table, then the validation report.

use std::path::PathBuf;

use trtllm::weights::TpSplit;

#[derive(clap::Args)]
pub struct Args {
    /// HF model directory, or a GGUF file.
    #[arg(long, alias = "model_dir", alias = "model-dir")]
    model: PathBuf,
    /// Show the shard shapes of this tensor-parallel size.
    #[arg(long, alias = "tp_size", default_value_t = 1)]
    tp_size: usize,
}

fn split_name(s: &TpSplit) -> &'static str {
    match s {
        TpSplit::Replicate => "replicate",
        TpSplit::Column(_) => "column",
        TpSplit::Row => "row",
        TpSplit::Heads(_) => "heads",
    }
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let mapping = trtllm::Mapping::new(a.tp_size, 1, 0)?;
    let (dir, _) = super::hub::resolve_model(&a.model)?;
    let (cfg, entry, specs, report) = trtllm::model::inspect(&dir, mapping)?;
    println!("architecture {} -> {} ({} tensors)", cfg.architecture, entry.type_name, specs.len());
    let w = specs.iter().map(|s| s.name.len()).max().unwrap_or(10);
    println!("{:w$}  {:18}  {:9}  {:14}  HF SOURCE(S)", "ENGINE TENSOR", "SHAPE", "TP SPLIT", "TRANSFORM");
    for s in &specs {
        let mut tr = vec![];
        if s.sources.len() > 1 {
            tr.push(match s.combine {
                trtllm::weights::Combine::Concat0 => "concat0",
                trtllm::weights::Combine::Stack => "stack",
            });
        }
        if s.transform.transpose {
            tr.push("transpose");
        }
        if s.transform.add_one {
            tr.push("add_one");
        }
        if let Some(q) = s.quant {
            tr.push(match q {
                trtllm::config::WeightQuant::Fp8(_) => "dequant-fp8",
                trtllm::config::WeightQuant::Awq { .. } => "dequant-awq",
                trtllm::config::WeightQuant::Gptq { .. } => "dequant-gptq",
            });
        }
        let srcs: Vec<&str> = s.sources.iter().map(|x| x.name.as_str()).collect();
        let listed =
            if s.quant.is_some() { format!("{} stored tensors:", srcs.len()) } else { srcs.join(", ") };
        println!(
            "{:w$}  {:18}  {:9}  {:14}  {}",
            s.name,
            format!("{:?}", s.shape),
            split_name(&s.split),
            if tr.is_empty() { "-".to_string() } else { tr.join("+") },
            listed
        );
        // A quantized layer: every stored tensor, its shape and which slice a TP rank reads.
        if s.quant.is_some() {
            for (i, src) in s.sources.iter().enumerate() {
                let shape = format!("{:?}", src.shape);
                println!("{:w$}    {} {shape}, tp split: {}", "", src.name, s.source_split(i));
            }
        }
    }
    if report.is_ok() {
        match &report.tied_by_absence {
            Some(head) => println!(
                "validation: ok, head tied by absence: config.json says tie_word_embeddings: false, but `{head}` is not stored, so the head is the embedding; every other tensor present with the expected shape, none unused"
            ),
            None => println!("validation: ok (every tensor present with the expected shape, none unused)"),
        }
        Ok(())
    } else {
        eprint!("validation failed:\n{}", report.render());
        std::process::exit(2);
    }
}
