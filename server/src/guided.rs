//! Structured outputs of a generation request: OpenAI's `response_format` (`text`,
//! `json_object`, `json_schema`), vLLM's `guided_json` / `guided_regex` / `guided_choice` /
//! `guided_grammar` (Lark) and its `structured_outputs` object (`json`, `regex`, `choice`,
//! `grammar`, `json_object`). At most one constraint per request; it is compiled here (a bad
//! schema or grammar is a 400 naming the field) and every sequence of the request walks it.

use std::sync::Arc;

use serde_json::Value;
use trtllm_core::text::{Grammar, GrammarCompiler, GrammarSpec};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The request fields this module reads (both generation endpoints).
pub const FIELDS: &[&str] = &[
    "response_format",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structured_outputs",
];

fn json_schema(v: &Value, field: &str) -> ApiResult<GrammarSpec> {
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(GrammarSpec::JsonSchema(v.clone())),
        // vLLM also takes the schema as JSON text.
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map(GrammarSpec::JsonSchema)
            .map_err(|e| ApiError::invalid(field, format!("`{field}` is not valid JSON: {e}"))),
        _ => Err(ApiError::invalid(field, format!("`{field}` must be a JSON schema object"))),
    }
}

fn string(v: &Value, field: &str) -> ApiResult<String> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| ApiError::invalid(field, format!("`{field}` must be a string")))
}

fn choice(v: &Value, field: &str) -> ApiResult<GrammarSpec> {
    let bad = || ApiError::invalid(field, format!("`{field}` must be a non-empty array of strings"));
    let a = v.as_array().filter(|a| !a.is_empty()).ok_or_else(bad)?;
    let c = a.iter().map(|s| s.as_str().map(String::from)).collect::<Option<Vec<_>>>().ok_or_else(bad)?;
    Ok(GrammarSpec::Choice(c))
}

fn response_format(v: &Value) -> ApiResult<Option<GrammarSpec>> {
    let f = "response_format";
    let ty = v.get("type").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(f, "`response_format.type` must be `text`, `json_object` or `json_schema`")
    })?;
    match ty {
        "text" => Ok(None),
        "json_object" => Ok(Some(GrammarSpec::JsonObject)),
        "json_schema" => {
            let js = v.get("json_schema").ok_or_else(|| {
                ApiError::invalid(f, "`response_format.json_schema` is required for type `json_schema`")
            })?;
            // `strict` may be true or false: the output follows the schema either way.
            match js.get("schema") {
                Some(s) => json_schema(s, "response_format.json_schema.schema").map(Some),
                None => Err(ApiError::invalid(f, "`response_format.json_schema.schema` is required")),
            }
        }
        other => Err(ApiError::invalid(f, format!("`response_format.type` `{other}` is not supported"))),
    }
}

fn structured_outputs(v: &Value) -> ApiResult<Option<GrammarSpec>> {
    let f = "structured_outputs";
    let Value::Object(m) = v else {
        return Err(ApiError::invalid(f, "`structured_outputs` must be an object"));
    };
    let mut out = vec![];
    for (k, x) in m {
        if x.is_null() {
            continue;
        }
        let name = format!("structured_outputs.{k}");
        out.push(match k.as_str() {
            "json" => json_schema(x, &name)?,
            "regex" => GrammarSpec::Regex(string(x, &name)?),
            "choice" => choice(x, &name)?,
            "grammar" => GrammarSpec::Lark(string(x, &name)?),
            "json_object" if x.as_bool() == Some(true) => GrammarSpec::JsonObject,
            "json_object" => continue,
            _ => return Err(ApiError::invalid(name.clone(), format!("`{name}` is not supported"))),
        });
    }
    match out.len() {
        0 => Ok(None),
        1 => Ok(out.pop()),
        _ => Err(ApiError::invalid(
            f,
            "`structured_outputs` takes one of json, regex, choice, grammar, json_object",
        )),
    }
}

/// The request's constraint, if any (`body` is the parsed request object).
pub fn spec(body: &Value) -> ApiResult<Option<GrammarSpec>> {
    let mut found: Vec<(&str, GrammarSpec)> = vec![];
    for &field in FIELDS {
        let Some(v) = body.get(field).filter(|v| !v.is_null()) else { continue };
        let s = match field {
            "response_format" => response_format(v)?,
            "guided_json" => Some(json_schema(v, field)?),
            "guided_regex" => Some(GrammarSpec::Regex(string(v, field)?)),
            "guided_choice" => Some(choice(v, field)?),
            "guided_grammar" => Some(GrammarSpec::Lark(string(v, field)?)),
            _ => structured_outputs(v)?,
        };
        if let Some(s) = s {
            found.push((field, s));
        }
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|f| f.0).collect();
        return Err(ApiError::invalid(
            names[1],
            format!("only one structured-output constraint per request, got {}", names.join(", ")),
        ));
    }
    Ok(found.pop().map(|f| f.1))
}

/// Compile the request's constraint (`None` when it has none).
pub fn grammar(st: &AppState, body: &[u8]) -> ApiResult<Option<Arc<Grammar>>> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Ok(None) };
    let Some(spec) = spec(&v)? else { return Ok(None) };
    compile(st, &spec, field_of(&v)).map(Some)
}

/// The field a constraint came from (for error messages).
fn field_of(v: &Value) -> &'static str {
    FIELDS.iter().copied().find(|f| v.get(*f).is_some_and(|x| !x.is_null())).unwrap_or("response_format")
}

/// Compile `spec` with the served model's compiler (made on first use).
pub fn compile(st: &AppState, spec: &GrammarSpec, field: &str) -> ApiResult<Arc<Grammar>> {
    let c = compiler(st)?;
    c.compile(spec).map(Arc::new).map_err(|e| ApiError::invalid(field, e.to_string()))
}

fn compiler(st: &AppState) -> ApiResult<Arc<GrammarCompiler>> {
    let made = st.grammars.get_or_init(|| {
        GrammarCompiler::new(&st.tokenizer, st.engine.limits().vocab_size)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    made.clone().map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spelling_gives_its_constraint() {
        let s = |v: Value| spec(&v).expect("parses");
        assert_eq!(s(json!({"response_format": {"type": "text"}})), None);
        assert_eq!(s(json!({"response_format": {"type": "json_object"}})), Some(GrammarSpec::JsonObject));
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}});
        assert_eq!(s(rf), Some(GrammarSpec::JsonSchema(schema.clone())));
        assert_eq!(s(json!({"guided_json": schema})), Some(GrammarSpec::JsonSchema(schema.clone())));
        assert_eq!(
            s(json!({"guided_json": schema.to_string()})),
            Some(GrammarSpec::JsonSchema(schema.clone()))
        );
        assert_eq!(s(json!({"guided_regex": "a+"})), Some(GrammarSpec::Regex("a+".into())));
        assert_eq!(
            s(json!({"guided_choice": ["x", "y"]})),
            Some(GrammarSpec::Choice(vec!["x".into(), "y".into()]))
        );
        assert_eq!(
            s(json!({"guided_grammar": "start: \"a\""})),
            Some(GrammarSpec::Lark("start: \"a\"".into()))
        );
        assert_eq!(
            s(json!({"structured_outputs": {"choice": ["x"]}})),
            Some(GrammarSpec::Choice(vec!["x".into()]))
        );
        assert_eq!(s(json!({"structured_outputs": {"json_object": true}})), Some(GrammarSpec::JsonObject));
    }

    #[test]
    fn bad_constraints_name_their_field() {
        let e = |v: Value| spec(&v).expect_err("rejected").param;
        assert_eq!(e(json!({"response_format": {"type": "yaml"}})).as_deref(), Some("response_format"));
        assert_eq!(
            e(json!({"response_format": {"type": "json_schema"}})).as_deref(),
            Some("response_format")
        );
        assert_eq!(e(json!({"guided_choice": []})).as_deref(), Some("guided_choice"));
        assert_eq!(e(json!({"guided_regex": 3})).as_deref(), Some("guided_regex"));
        assert_eq!(e(json!({"guided_json": "{not json"})).as_deref(), Some("guided_json"));
        assert_eq!(e(json!({"guided_regex": "a", "guided_choice": ["b"]})).as_deref(), Some("guided_choice"));
        assert_eq!(e(json!({"structured_outputs": {"xml": "x"}})).as_deref(), Some("structured_outputs.xml"));
    }
}
