//! Chat templates: the Jinja template of `tokenizer_config.json` (or `chat_template.jinja`)
//! rendered with minijinja the way transformers' `apply_chat_template` does (`trim_blocks`,
//! `lstrip_blocks`, loop controls, Python string methods, `raise_exception`, `bos_token` /
//! `eos_token`). The rendered text carries its own special tokens: encode it with
//! [`Tokenizer::encode_raw`](crate::text::Tokenizer::encode_raw).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::text::Tokenizer;
use crate::{Error, Result};

/// One chat message. Tool calling adds an assistant's `tool_calls` (each `{"id", "type",
/// "function": {"name", "arguments"}}`, arguments as a JSON object, as transformers' templates
/// expect) and a tool result's `tool_call_id` / `name`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into(), ..Default::default() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::new("user", content)
    }
}

/// A model's chat template with the special-token strings templates refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// Where the template came from (for messages).
    pub origin: PathBuf,
}

/// A special token in `tokenizer_config.json`: a string, or `{"content": "..."}`.
fn token_str(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(o)) => {
            o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string()
        }
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of the tokenizer loaded from `dir`, or `None` when the model has none.
    pub fn for_tokenizer(tok: &Tokenizer, dir: &Path) -> Result<Option<Self>> {
        let Some(source) = tok.chat_template.clone() else { return Ok(None) };
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.exists() { Some(crate::error::read_json(&cfg_path)?) } else { None };
        let get = |k: &str| token_str(cfg.as_ref().and_then(|c| c.get(k)));
        let origin = if cfg.as_ref().is_some_and(|c| c.get("chat_template").is_some()) {
            cfg_path
        } else {
            dir.join("chat_template.jinja")
        };
        Ok(Some(ChatTemplate { source, bos_token: get("bos_token"), eos_token: get("eos_token"), origin }))
    }

    /// A template read from `path` (`--chat-template FILE`), with the special-token strings of
    /// the model's own template (or none).
    pub fn from_file(path: &Path, base: Option<&ChatTemplate>) -> Result<Self> {
        let source =
            std::fs::read_to_string(path).map_err(|err| Error::Io { path: path.to_path_buf(), err })?;
        let (bos_token, eos_token) =
            base.map(|b| (b.bos_token.clone(), b.eos_token.clone())).unwrap_or_default();
        Ok(ChatTemplate { source, bos_token, eos_token, origin: path.to_path_buf() })
    }

    /// Render `messages`, ending with the assistant prompt when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`Self::render`] with extra template variables (`chat_template_kwargs`, e.g. Qwen3's
    /// `enable_thinking`); they never replace `messages`, `add_generation_prompt` or the tokens.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        // minijinja panics on some malformed templates (an integer overflow in its error
        // reporting, `{% for in x %}`); that is this template's error, not the process's.
        let render =
            std::panic::AssertUnwindSafe(|| self.render_unguarded(messages, add_generation_prompt, kwargs));
        std::panic::catch_unwind(render).unwrap_or_else(|_| {
            Err(Error::Msg(format!(
                "{}: chat template: the template engine failed on this template (a syntax error?)",
                self.origin.display()
            )))
        })
    }

    fn render_unguarded(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let err = |e: minijinja::Error| Error::Msg(format!("{}: chat template: {e}", self.origin.display()));
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        let tmpl = env.template_from_str(&self.source).map_err(err)?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..minijinja::Value::from_serialize(kwargs)
        })
        .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl(src: &str) -> ChatTemplate {
        ChatTemplate {
            source: src.into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            origin: "t".into(),
        }
    }

    #[test]
    fn renders_like_transformers() {
        // SmolLM2's template: a default system turn when the first message is not one.
        let t = tmpl(concat!(
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}",
            "{{ '<|im_start|>system\nHi<|im_end|>\n' }}{% endif %}",
            "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        ));
        let out = t.render(&[ChatMessage::user("Q")], true).expect("render");
        assert_eq!(
            out,
            "<|im_start|>system\nHi<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
        );
        // trim_blocks / lstrip_blocks, Python methods, bos_token.
        let t = tmpl("{{ bos_token }}\n{% for m in messages %}\n  {% if m %}{{ m.content.strip() }}{% endif %}|\n{% endfor %}");
        assert_eq!(t.render(&[ChatMessage::user("  a ")], false).expect("render"), "<s>\na|\n");
        let t = tmpl("{% if enable_thinking is false %}no-think{% endif %}{{ messages | length }}");
        let mut kw = serde_json::Map::new();
        kw.insert("enable_thinking".into(), false.into());
        kw.insert("messages".into(), serde_json::json!([1, 2, 3]));
        assert_eq!(t.render_with(&[ChatMessage::user("a")], false, &kw).expect("render"), "no-think1");
        assert_eq!(t.render(&[ChatMessage::user("a")], false).expect("render"), "1");
        let t = tmpl("{{ raise_exception('no system role') }}");
        assert!(t.render(&[], false).is_err_and(|e| e.to_string().contains("no system role")));
    }
}
