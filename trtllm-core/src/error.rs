//! One error type for the whole engine. Every variant names what it is about: the file, the
//! tensor, the config field or the request, so a user can act on the message alone.

use std::path::PathBuf;

/// The engine's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io error is part of the message, not a `source`: `{e:#}` chains would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("{file}: config field `{field}`: {msg}")]
    Config { file: PathBuf, field: String, msg: String },

    #[error("{file}: {msg}")]
    Checkpoint { file: PathBuf, msg: String },

    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },

    #[error("weight validation failed for {file}:\n{report}")]
    Validation { file: PathBuf, report: String },

    #[error("unknown architecture `{name}`; supported: {supported}{hint}")]
    UnknownArchitecture { name: String, supported: String, hint: String },

    #[error("shape mismatch in {op}: {msg}")]
    Shape { op: &'static str, msg: String },

    #[error("dtype not supported by {op}: {dtype:?}")]
    DType { op: &'static str, dtype: crate::DType },

    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },

    #[error("request: {0}")]
    Request(String),

    #[error("KV cache: {0}")]
    KvCache(String),

    #[error("device: {0}")]
    Device(String),

    /// Tensor- and pipeline-parallel groups and multi-process launches (ranks, collectives,
    /// the TCP mesh); the message names the rank or stage.
    #[error("{0}")]
    Parallel(String),

    #[error("{0}")]
    Msg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub fn tensor(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor { name: name.into(), msg: msg.into() }
    }
    pub fn config(file: impl Into<PathBuf>, field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { file: file.into(), field: field.into(), msg: msg.into() }
    }
    pub fn checkpoint(file: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint { file: file.into(), msg: msg.into() }
    }
}

/// Read a whole file, naming it in the error.
pub fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parse a JSON file, naming it in the error.
pub fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })
}

/// Remove the `{prefix}<pid>` directories in `dir` whose process is gone: what a convert or
/// build killed before it could clean up left behind. Each removal is reported on stderr. Only
/// where `/proc` tells which processes live (Linux); elsewhere nothing is removed.
pub fn remove_stale_temps(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let dir = if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir };
    let mut removed = vec![];
    if !std::path::Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        let path = e.path();
        let alive = pid == std::process::id() || std::path::Path::new("/proc").join(pid.to_string()).exists();
        if alive || !path.is_dir() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                eprintln!(
                    "removed {}: the temporary output of an interrupted run (process {pid} is gone)",
                    path.display()
                );
                removed.push(path);
            }
            Err(err) => eprintln!("warning: could not remove the stale temporary {}: {err}", path.display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn temps_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No process has pid 4194304 + 1 (above Linux's pid_max): a killed run's leftover.
        let dead = dir.path().join("out.tmp-4194305");
        let live = dir.path().join(format!("out.tmp-{}", std::process::id()));
        let other = dir.path().join("other.tmp-4194305");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/rank0.safetensors"), b"partial").unwrap();
        }
        let removed = remove_stale_temps(dir.path(), "out.tmp-");
        if Path::new("/proc/self").exists() {
            assert_eq!(removed, vec![dead.clone()]);
            assert!(!dead.exists());
        }
        assert!(live.exists() && other.exists());
    }
}
