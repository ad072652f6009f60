//! Tool calling on `/v1/chat/completions`: `tools` reach the chat template as its `tools`
//! variable (as transformers passes them), `tool_choice` decides what the model may do
//! (`none`: tools are not offered; `auto`: free text, parsed; `required` / a named function: the
//! output is forced into the model's tool-call format with a grammar), and the output is parsed
//! into OpenAI `tool_calls`. Formats, chosen from the chat template: Hermes / Qwen
//! (`<tool_call>{json}</tool_call>`), Llama 3 (a bare JSON object, `parameters` or `arguments`),
//! Mistral (`[TOOL_CALLS][{...}]`).

use serde_json::{json, Map, Value};
use trtllm_core::text::GrammarSpec;

use crate::error::{ApiError, ApiResult};

/// How a model writes its tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    Mistral,
}

impl ToolFormat {
    /// The format a chat template renders tool calls in (Hermes when it names none).
    pub fn of_template(src: &str) -> Self {
        if src.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if src.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if src.contains("<|python_tag|>") || src.contains("ipython") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Hermes
        }
    }
}

/// One parsed call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// What `tool_choice` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The request's tools (`function` definitions, as sent) and choice.
#[derive(Clone, Debug)]
pub struct Tools {
    pub defs: Vec<Value>,
    pub choice: Choice,
}

fn function_of(t: &Value, i: usize) -> ApiResult<(&str, &Value)> {
    let p = format!("tools[{i}]");
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(
            p,
            "each tool must be `{\"type\": \"function\", \"function\": {...}}`",
        ));
    }
    let f = t
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| ApiError::invalid(format!("{p}.function"), "`function` must be an object"))?;
    let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::invalid(format!("{p}.function.name"), "`name` must be a non-empty string")
    })?;
    Ok((name, f))
}

/// `tools`, `tool_choice` and `parallel_tool_calls` of a chat request body (`None`: no tools).
pub fn parse(body: &Value) -> ApiResult<Option<Tools>> {
    let defs = match body.get("tools") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::invalid("tools", "`tools` must be an array")),
    };
    let mut names = vec![];
    for (i, t) in defs.iter().enumerate() {
        names.push(function_of(t, i)?.0.to_string());
    }
    if let Some(v) = body.get("parallel_tool_calls").filter(|v| !v.is_null() && !v.is_boolean()) {
        return Err(ApiError::invalid(
            "parallel_tool_calls",
            format!("`parallel_tool_calls` must be a boolean, got {v}"),
        ));
    }
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => {
            if defs.is_empty() {
                Choice::None
            } else {
                Choice::Auto
            }
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            _ => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("`tool_choice` `{s}` is not none, auto, required or a function"),
                ))
            }
        },
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(n) => Choice::Named(n.to_string()),
            None => return Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice` must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            )),
        },
    };
    match &choice {
        Choice::Required | Choice::Named(_) if defs.is_empty() => {
            return Err(ApiError::invalid("tool_choice", "`tool_choice` needs `tools`"))
        }
        Choice::Named(n) if !names.contains(n) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("`tool_choice` names `{n}`, which is not in `tools`"),
            ))
        }
        _ => {}
    }
    if defs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tools { defs, choice }))
}

/// The JSON schema of one call of `f` (`args` is the key the format uses for the arguments).
fn call_schema(f: &Value, args: &str) -> Value {
    let name = f.get("name").cloned().unwrap_or(Value::Null);
    let params = f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
    let mut props = Map::new();
    props.insert("name".into(), json!({"const": name}));
    props.insert(args.into(), params);
    json!({"type": "object", "properties": props, "required": ["name", args], "additionalProperties": false})
}

impl Tools {
    /// The grammar that forces a call (`required`: one of the tools, named: that one); `None`
    /// for `auto` and `none`.
    pub fn grammar(&self, format: ToolFormat) -> Option<GrammarSpec> {
        let fns: Vec<&Value> = self.defs.iter().filter_map(|t| t.get("function")).collect();
        let chosen: Vec<&Value> = match &self.choice {
            Choice::Required => fns,
            Choice::Named(n) => {
                fns.into_iter().filter(|f| f.get("name").and_then(Value::as_str) == Some(n)).collect()
            }
            _ => return None,
        };
        let args = if format == ToolFormat::Llama3 { "parameters" } else { "arguments" };
        let schemas: Vec<Value> = chosen.iter().map(|f| call_schema(f, args)).collect();
        let one = if schemas.len() == 1 { schemas[0].clone() } else { json!({"anyOf": schemas}) };
        let mut one = one;
        if let Value::Object(m) = &mut one {
            m.insert(
                "x-guidance".into(),
                json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
            );
        }
        let call = format!("%json {one}");
        Some(GrammarSpec::Lark(match format {
            ToolFormat::Hermes => {
                format!("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: {call}\n")
            }
            ToolFormat::Llama3 => format!("start: call\ncall: {call}\n"),
            ToolFormat::Mistral => format!("start: \"[TOOL_CALLS][\" call \"]\"\ncall: {call}\n"),
        }))
    }
}

fn call_of(v: &Value) -> Option<ToolCall> {
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get("arguments").or_else(|| v.get("parameters")).cloned().unwrap_or_else(|| json!({}));
    let arguments = match args {
        Value::String(s) => s,
        a => serde_json::to_string(&a).ok()?,
    };
    Some(ToolCall { name, arguments })
}

/// Split a model's output into content and tool calls. Output that does not parse as the
/// format's calls is all content.
pub fn parse_output(format: ToolFormat, text: &str) -> (Option<String>, Vec<ToolCall>) {
    let none = || (Some(text.to_string()), vec![]);
    let content = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    match format {
        ToolFormat::Hermes => {
            let Some(start) = text.find("<tool_call>") else { return none() };
            let mut calls = vec![];
            for part in text[start..].split("<tool_call>").skip(1) {
                let body = part.split("</tool_call>").next().unwrap_or("").trim();
                match serde_json::from_str::<Value>(body).ok().as_ref().and_then(call_of) {
                    Some(c) => calls.push(c),
                    None => return none(),
                }
            }
            (content(&text[..start]), calls)
        }
        ToolFormat::Llama3 => {
            let t = text.trim().trim_start_matches("<|python_tag|>").trim();
            if !t.starts_with('{') {
                return none();
            }
            let mut calls = vec![];
            for part in t.split(";\n").flat_map(|p| p.split("; ")) {
                match serde_json::from_str::<Value>(part.trim()).ok().as_ref().and_then(call_of) {
                    Some(c) => calls.push(c),
                    None => return none(),
                }
            }
            (None, calls)
        }
        ToolFormat::Mistral => {
            let (before, rest) = match text.find("[TOOL_CALLS]") {
                Some(i) => (&text[..i], &text[i + "[TOOL_CALLS]".len()..]),
                None if text.trim_start().starts_with("[{") => ("", text),
                None => return none(),
            };
            match serde_json::from_str::<Value>(rest.trim()) {
                Ok(Value::Array(a)) => match a.iter().map(call_of).collect::<Option<Vec<_>>>() {
                    Some(calls) if !calls.is_empty() => (content(before), calls),
                    _ => none(),
                },
                _ => none(),
            }
        }
    }
}

/// Where a streamed output may turn into tool calls: the text up to there streams as content,
/// the rest is held and parsed at the end.
pub fn call_start(format: ToolFormat, text: &str) -> Option<usize> {
    match format {
        ToolFormat::Hermes => text.find("<tool_call>"),
        ToolFormat::Mistral => {
            text.find("[TOOL_CALLS]").or_else(|| text.trim_start().starts_with("[{").then_some(0))
        }
        ToolFormat::Llama3 => {
            let t = text.trim_start();
            (t.starts_with('{') || t.starts_with("<|python_tag|>")).then_some(0)
        }
    }
}

/// How much of the end of `text` might be the start of a call marker (held back while
/// streaming until the next piece decides).
pub fn held_suffix(format: ToolFormat, text: &str) -> usize {
    let marker = match format {
        ToolFormat::Hermes => "<tool_call>",
        ToolFormat::Mistral => "[TOOL_CALLS]",
        ToolFormat::Llama3 => return if text.trim().is_empty() { text.len() } else { 0 },
    };
    (1..marker.len()).rev().find(|&k| text.ends_with(&marker[..k])).unwrap_or(0)
}

/// The OpenAI `tool_calls` array (`id_base`-numbered ids).
pub fn calls_json(calls: &[ToolCall], id_base: &str) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": format!("call_{id_base}_{i}"), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect()
}

/// One streamed choice when tools may be called: text streams as content until a call may
/// begin; from there it is held, and parsed into calls when the choice ends.
#[derive(Clone, Debug, Default)]
pub struct ToolStream {
    /// Text not sent yet.
    pending: String,
    /// A call marker was seen: everything from `pending` on waits for the end.
    in_call: bool,
}

impl ToolStream {
    /// Take the next piece; returns the content to send now and, at the end, the calls.
    pub fn push(&mut self, format: ToolFormat, piece: &str, end: bool) -> (String, Vec<ToolCall>) {
        self.pending.push_str(piece);
        if !self.in_call {
            if let Some(i) = call_start(format, &self.pending) {
                self.in_call = true;
                let before = self.pending[..i].to_string();
                self.pending.drain(..i);
                if !end {
                    return (before, vec![]);
                }
                let (content, calls) = parse_output(format, &self.pending);
                let held = std::mem::take(&mut self.pending);
                return if calls.is_empty() {
                    (before + &held, vec![])
                } else {
                    (before + content.as_deref().unwrap_or(""), calls)
                };
            }
            let keep = if end { 0 } else { held_suffix(format, &self.pending) };
            let send = self.pending.len() - keep;
            let out = self.pending[..send].to_string();
            self.pending.drain(..send);
            return (out, vec![]);
        }
        if !end {
            return (String::new(), vec![]);
        }
        let held = std::mem::take(&mut self.pending);
        let (content, calls) = parse_output(format, &held);
        if calls.is_empty() {
            (held, vec![])
        } else {
            (content.unwrap_or_default(), calls)
        }
    }
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
