//! A GGUF file as a model directory: its metadata (config.json, generation_config.json,
//! tokenizer.json, tokenizer_config.json, all made from the GGUF's keys by the importer) in a
//! small cache directory, plus `gguf.json` naming the file. The weights stay in the GGUF: a
//! directory with `gguf.json` loads its tensors from there (`weights::GgufWeights`), so
//! `run`, `serve`, `bench`, `perplexity`, `summarize`, `verify` and `weights` take a `.gguf` wherever they take a directory.
//!
//! The cache directory is `$XDG_CACHE_HOME/trtllm/gguf` (else `~/.cache/trtllm/gguf`, else the
//! temporary directory), one subdirectory per file, keyed by its absolute path, size and
//! modification time; a changed file gets a new one. A few hundred KiB (the tokenizer).

use std::path::{Path, PathBuf};

use super::names::Arch;
use super::reader::{GgufFile, MAGIC};
use super::st_writer::OutDType;
use crate::{Error, Result};

/// The marker file of a GGUF model directory.
pub const MARKER: &str = "gguf.json";

/// Whether `path` is a file that starts with the GGUF magic.
pub fn is_gguf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && magic == MAGIC
}

/// The GGUF file a model directory stands for (`None`: not a GGUF model directory). The file
/// must still have the size it had when the directory was made.
pub fn gguf_of_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let marker = dir.join(MARKER);
    if !marker.is_file() {
        return Ok(None);
    }
    let v = crate::error::read_json(&marker)?;
    let path = v
        .get("gguf")
        .and_then(|p| p.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| Error::config(&marker, "gguf", "missing or not a string"))?;
    let bytes = v.get("bytes").and_then(|b| b.as_u64());
    let now = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    if bytes != Some(now) {
        return Err(Error::checkpoint(
            &path,
            format!(
                "has {now} bytes, {bytes:?} when {} was made from it; give the .gguf file itself",
                dir.display()
            ),
        ));
    }
    Ok(Some(path))
}

fn cache_root() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("trtllm")
        .join("gguf")
}

/// FNV-1a, 64 bits (a cache key, not a checksum).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in p.iter().chain(&[0xff]) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The model directory of the GGUF file `gguf`, made on first use (see the module docs).
pub fn model_dir(gguf: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(gguf).map_err(|e| Error::io(gguf, e))?;
    let meta = std::fs::metadata(&abs).map_err(|e| Error::io(&abs, e))?;
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let mtime = mtime.map_or(0, |d| d.as_nanos());
    let key = fnv(&[
        abs.to_string_lossy().as_bytes(),
        &meta.len().to_le_bytes(),
        &mtime.to_le_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
    ]);
    let stem = abs.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = cache_root().join(format!("{stem}-{key:016x}"));
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let g = GgufFile::open(&abs)?;
    let arch = Arch::of_file(&g)?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!(".{stem}-{key:016x}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let made = (|| {
        super::convert::write_meta(&g, arch, &tmp, OutDType::F32, None)?;
        let marker = serde_json::json!({ "gguf": abs.to_string_lossy(), "bytes": meta.len() });
        super::tokenizer_files::write_file(
            &tmp.join(MARKER),
            super::tokenizer_files::pretty(&marker).as_bytes(),
        )?;
        match std::fs::rename(&tmp, &dir) {
            // Another process made it first: theirs is as good.
            Err(_) if dir.join(MARKER).is_file() => Ok(()),
            r => r.map_err(|e| Error::io(&dir, e)),
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    made.map(|()| dir)
}
