//! Models by Hugging Face id, offline: `--model Org/Name` (or `trtllm serve Org/Name`) resolves
//! in the local HF cache layout, `<hub>/models--Org--Name/snapshots/<rev>` with `<rev>` from
//! `refs/main`, where `<hub>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Never the network.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The hub cache directory the environment names.
pub fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// `Org/Name` (one slash, no empty part, not a relative path like `./x` or `../x`).
pub fn is_model_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    let ok = |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains('\\');
    ok(org) && ok(name)
}

/// `model` as given: an existing directory is itself; a GGUF file is its model directory
/// (`trtllm::gguf::model_dir`: metadata in a small cache directory, weights read from the file);
/// an HF id is looked up in the hub cache. Returns the directory and, for an id, the id (the
/// default served model name).
pub fn resolve_model(model: &Path) -> anyhow::Result<(PathBuf, Option<String>)> {
    if trtllm::gguf::is_gguf_file(model) {
        return Ok((trtllm::gguf::model_dir(model)?, None));
    }
    if model.exists() {
        return Ok((model.to_path_buf(), None));
    }
    let s = model.to_string_lossy();
    if !is_model_id(&s) {
        bail!("model `{s}`: no such file or directory");
    }
    let Some(hub) = hub_cache() else {
        bail!("model `{s}` is not a directory, and no Hugging Face cache is configured (set HF_HOME or HF_HUB_CACHE)")
    };
    Ok((resolve_in(&hub, &s)?, Some(s.into_owned())))
}

/// The snapshot of `id` in the hub cache `hub`.
pub fn resolve_in(hub: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    let hint = format!(
        "trtllm never downloads; fetch it first (`huggingface-cli download {id}`) or give the model's directory"
    );
    if !repo.is_dir() {
        bail!(
            "model `{id}` is neither a directory nor in the local Hugging Face cache (no {}); {hint}",
            repo.display()
        );
    }
    let snapshots = repo.join("snapshots");
    let refs_main = repo.join("refs").join("main");
    let snap = if refs_main.is_file() {
        let rev = std::fs::read_to_string(&refs_main)
            .with_context(|| format!("reading {}", refs_main.display()))?;
        snapshots.join(rev.trim())
    } else {
        // No refs/main (a download of one revision): the only snapshot there is.
        let revs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        match revs.as_slice() {
            [one] => one.clone(),
            [] => bail!("model `{id}`: {} holds no snapshot; {hint}", snapshots.display()),
            _ => bail!(
                "model `{id}`: {} has no refs/main and several snapshots; give the snapshot directory",
                repo.display()
            ),
        }
    };
    if !snap.join("config.json").is_file() {
        bail!(
            "model `{id}`: the cached snapshot {} has no config.json (an incomplete download?); {hint}",
            snap.display()
        );
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trtllm-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn ids() {
        assert!(is_model_id("HuggingFaceTB/SmolLM2-135M"));
        assert!(!is_model_id("dir") && !is_model_id("a/b/c") && !is_model_id("./x") && !is_model_id("/abs"));
        assert!(!is_model_id("../x"));
    }

    #[test]
    fn resolves_refs_main_and_errors_clearly() {
        let hub = tmp("refs");
        let repo = hub.join("models--Org--Name");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/old")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        let err = resolve_in(&hub, "Org/Name").unwrap_err().to_string();
        assert!(err.contains("no config.json"), "{err}");
        std::fs::write(repo.join("snapshots/abc123/config.json"), "{}").unwrap();
        assert_eq!(resolve_in(&hub, "Org/Name").unwrap(), repo.join("snapshots/abc123"));
        let err = resolve_in(&hub, "Org/Missing").unwrap_err().to_string();
        assert!(err.contains("models--Org--Missing") && err.contains("never downloads"), "{err}");
        let _ = std::fs::remove_dir_all(&hub);
    }

    #[test]
    fn single_snapshot_without_refs() {
        let hub = tmp("single");
        let snap = hub.join("models--A--B/snapshots/r1");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(resolve_in(&hub, "A/B").unwrap(), snap);
        let _ = std::fs::remove_dir_all(&hub);
    }
}
