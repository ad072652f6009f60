//! `trtllm models`

pub fn main() -> anyhow::Result<()> {
    let archs = trtllm::model::architectures();
    let width = archs.iter().map(|(a, _)| a.len()).max().unwrap_or(12);
    println!("{:width$}  TYPE", "ARCHITECTURE");
    for (arch, ty) in archs {
        println!("{arch:width$}  {ty}");
    }
    Ok(())
}
