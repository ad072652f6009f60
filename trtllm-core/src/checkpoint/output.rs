//! Atomic output directories: everything is written into `OUT.tmp-<pid>` next to `OUT`, which
//! is renamed to `OUT` only once complete, so an interrupted convert or build never leaves a
//! half-written checkpoint behind under the real name.

use std::path::{Path, PathBuf};

use super::format::{BUILD_CONFIG, CHECKPOINT_FORMAT, TOKENIZER_FILES};
use crate::{Error, Result};

/// A temporary directory that becomes `target` on [`commit`](Self::commit) and is removed if
/// dropped before.
#[derive(Debug)]
pub struct StagedDir {
    tmp: PathBuf,
    target: PathBuf,
    force: bool,
    committed: bool,
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(p).map_err(|e| Error::io(p, e))?.next().is_none())
}

/// True when `p` holds one of our checkpoints or engines (the only non-empty dirs `--force` replaces).
fn is_ours(p: &Path) -> bool {
    if p.join(BUILD_CONFIG).exists() {
        return true;
    }
    crate::error::read_json(&p.join("config.json"))
        .ok()
        .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(|f| f == CHECKPOINT_FORMAT))
        .unwrap_or(false)
}

/// Whether `target` may be (re)written: absent, an empty dir, or (with `force`) ours.
fn check_target(target: &Path, force: bool) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    if !target.is_dir() {
        return Err(Error::checkpoint(target, "exists and is not a directory"));
    }
    if is_empty_dir(target)? {
        return Ok(());
    }
    if !force {
        return Err(Error::checkpoint(
            target,
            "output directory exists and is not empty (pass --force to replace it)",
        ));
    }
    if !is_ours(target) {
        return Err(Error::checkpoint(
            target,
            "output directory is not a trtllm checkpoint or engine; refusing to replace it even with --force",
        ));
    }
    Ok(())
}

impl StagedDir {
    pub fn new(target: &Path, force: bool) -> Result<Self> {
        check_target(target, force)?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::checkpoint(target, "output path has no directory name"))?
            .to_string_lossy()
            .into_owned();
        if let Some(parent) = target.parent() {
            crate::error::remove_stale_temps(parent, &format!("{name}.tmp-"));
        }
        let tmp = target.with_file_name(format!("{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(StagedDir { tmp, target: target.into(), force, committed: false })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Move the finished directory into place.
    pub fn commit(mut self) -> Result<()> {
        check_target(&self.target, self.force)?;
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        std::fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Copy the tokenizer and generation files present in `src` into `dst`; returns their names.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<Vec<&'static str>> {
    let mut copied = vec![];
    for name in TOKENIZER_FILES {
        let from = src.join(name);
        if from.is_file() {
            std::fs::copy(&from, dst.join(name)).map_err(|e| Error::io(&from, e))?;
            copied.push(*name);
        }
    }
    Ok(copied)
}

/// Hard-link `from` to `to`, or copy when linking is not possible (another filesystem).
pub fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| Error::io(from, e))
}
