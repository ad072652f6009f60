//! The keys of `config.json` that [`ModelConfig`] does not parse, for the config adapters
//! (`#[register_model(config = fn)]`) of models that need them: [`ModelConfig::extra`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::model::ModelConfig;
use crate::{Error, Result};

/// The text model's keys of a `config.json` as the file spells them (a multimodal wrapper's
/// `text_config` merged over the root), and the file they come from.
#[derive(Clone, Default)]
pub(crate) struct ConfigJson {
    file: PathBuf,
    keys: Map<String, Value>,
    /// Every key asked for through `extra`, present or not (`trtllm models --verbose`).
    read: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl ConfigJson {
    pub(super) fn new(file: &Path, keys: Map<String, Value>) -> Self {
        ConfigJson { file: file.to_path_buf(), keys, read: Default::default() }
    }
}

impl fmt::Debug for ConfigJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigJson({}, {} keys)", self.file.display(), self.keys.len())
    }
}

impl ModelConfig {
    /// The value of `key` in `config.json` (as the file spells it; `text_config` merged over the
    /// root) read as a `T`: `Ok(None)` when the key is absent or `null`, an error naming the
    /// file and the key when the value is not a `T`.
    ///
    /// Only a config read from `config.json` has these keys: the config stored in a converted
    /// checkpoint is the adapted one (its adapter ran at conversion) and carries none.
    pub fn extra<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        if let Ok(mut read) = self.config_json.read.lock() {
            read.insert(key.to_string());
        }
        match self.config_json.keys.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| Error::config(&self.config_json.file, key, e.to_string())),
        }
    }
}

impl ModelConfig {
    /// The keys asked for through [`ModelConfig::extra`] so far (a config adapter's keys).
    pub fn extra_keys_read(&self) -> Vec<String> {
        self.config_json.read.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    /// `key` read as a bool, `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.extra(key)?.unwrap_or(default))
    }

    /// An error naming `key` when its value (`default` when absent) is `bad`: a setting the
    /// architecture cannot run (Falcon's `alibi: true`).
    pub fn refuse(&self, key: &str, default: bool, bad: bool, what: &str) -> Result<()> {
        match self.flag(key, default)? == bad {
            true => Err(self.config_error(key, format!("{bad} ({what}) is not supported"))),
            false => Ok(()),
        }
    }

    /// A config error about `key`, naming the `config.json` it came from: what an adapter returns
    /// for a value the architecture cannot run (`use_qk_norm: true` where it is not supported).
    pub fn config_error(&self, key: &str, msg: impl Into<String>) -> crate::Error {
        Error::config(&self.config_json.file, key, msg.into())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use crate::config::ModelConfig;

    fn config(extra: serde_json::Value) -> ModelConfig {
        let mut v = json!({
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 16,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "vocab_size": 32,
        });
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        ModelConfig::from_hf_value(&v, Path::new("dir/config.json")).expect("config")
    }

    #[test]
    fn present_keys_read_as_their_type() {
        let cfg = config(json!({ "logit_scale": 0.25, "my_flags": [1, 2], "my_name": "x" }));
        assert_eq!(cfg.extra::<f64>("logit_scale").expect("f64"), Some(0.25));
        assert_eq!(cfg.extra::<Vec<u32>>("my_flags").expect("list"), Some(vec![1, 2]));
        assert_eq!(cfg.extra::<String>("my_name").expect("string"), Some("x".to_string()));
        // Keys ModelConfig parses are there too, as the file spells them.
        assert_eq!(cfg.extra::<usize>("hidden_size").expect("usize"), Some(16));
    }

    #[test]
    fn absent_or_null_keys_are_none() {
        let cfg = config(json!({ "logit_scale": null }));
        assert_eq!(cfg.extra::<f64>("logit_scale").expect("null"), None);
        assert_eq!(cfg.extra::<f64>("no_such_key").expect("absent"), None);
        // A default filled in by the parse is not a key of the file.
        assert_eq!(cfg.extra::<usize>("max_position_embeddings").expect("absent"), None);
    }

    #[test]
    fn a_wrong_type_names_the_file_and_the_key() {
        let cfg = config(json!({ "logit_scale": "big" }));
        let err = cfg.extra::<f64>("logit_scale").expect_err("a string is not an f64").to_string();
        assert!(err.contains("dir/config.json") && err.contains("`logit_scale`"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn text_config_keys_win_over_the_root() {
        let cfg = config(json!({ "scale": 1.0, "text_config": { "scale": 2.0 } }));
        assert_eq!(cfg.extra::<f64>("scale").expect("f64"), Some(2.0));
    }
}
