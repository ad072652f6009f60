//! `trtllm models [--verbose]`

#[derive(clap::Args)]
pub struct Args {
    /// Also list the `config.json` keys each architecture reads: the keys every architecture
    /// reads, then each one's config adapter's own.
    #[arg(long, short)]
    verbose: bool,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let archs = trtllm::model::architectures();
    let width = archs.iter().map(|(a, _)| a.len()).max().unwrap_or(12);
    if args.verbose {
        println!("every architecture reads: {}\n", trtllm::config::PARSED_KEYS.join(", "));
    }
    println!("{:width$}  TYPE", "ARCHITECTURE");
    for (arch, ty) in archs {
        println!("{arch:width$}  {ty}");
        if args.verbose {
            let keys = trtllm::model::adapter_keys(arch)?;
            if !keys.is_empty() {
                println!("{:width$}    + {}", "", keys.join(", "));
            }
        }
    }
    Ok(())
}
