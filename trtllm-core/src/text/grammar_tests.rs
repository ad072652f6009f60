use super::*;
use std::path::Path;

fn tok() -> Tokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama");
    Tokenizer::from_dir(&dir).expect("fixture tokenizer")
}

/// Walk the grammar with a pseudo-random choice among the allowed tokens, preferring EOS once
/// it is allowed and `stop_after` tokens were taken. The decoded text, or `None` if it ran out.
fn walk(tok: &Tokenizer, g: &Grammar, seed: u64, stop_after: usize) -> Option<String> {
    let mut m = g.matcher();
    let eos = tok.eos_token_ids[0] as usize;
    let mut out = vec![];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    for _ in 0..400 {
        if m.is_finished() {
            break;
        }
        let mask = m.mask().expect("mask");
        if mask_allows(&mask, eos) && out.len() >= stop_after {
            break;
        }
        let allowed: Vec<usize> = (0..g.vocab).filter(|&t| mask_allows(&mask, t) && t != eos).collect();
        if allowed.is_empty() {
            assert!(mask_allows(&mask, eos));
            break;
        }
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let t = allowed[(state >> 33) as usize % allowed.len()];
        m.accept(t as u32).expect("accept an allowed token");
        out.push(t as u32);
    }
    let done = m.is_finished() || mask_allows(&m.mask().ok()?, eos);
    done.then(|| tok.decode(&out, true).expect("decode"))
}

#[test]
fn choice_and_regex_outputs_match() {
    let tok = tok();
    let c = GrammarCompiler::new(&tok, 384).expect("compiler");
    let g = c.compile(&GrammarSpec::Choice(vec!["yes".into(), "no (maybe)".into()])).expect("choice");
    for seed in 0..8 {
        let s = walk(&tok, &g, seed, 0).expect("a complete choice");
        assert!(s == "yes" || s == "no (maybe)", "{s:?}");
    }
    let g = c.compile(&GrammarSpec::Regex("[0-9]{3}-[a-c]+".into())).expect("regex");
    for seed in 0..8 {
        let s = walk(&tok, &g, seed, 8).expect("a complete match");
        let (a, b) = s.split_once('-').expect("dash");
        assert!(a.len() == 3 && a.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
        assert!(!b.is_empty() && b.bytes().all(|c| (b'a'..=b'c').contains(&c)), "{s:?}");
    }
}

#[test]
fn json_schema_outputs_parse_and_hold_their_types() {
    let tok = tok();
    let c = GrammarCompiler::new(&tok, 384).expect("compiler");
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "n": {"type": "integer", "minimum": 0, "maximum": 99},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["name", "n", "ok", "tags"],
        "additionalProperties": false
    });
    let g = c.compile(&GrammarSpec::JsonSchema(schema)).expect("schema");
    for seed in 0..16 {
        let s = walk(&tok, &g, seed, 1000).expect("a complete document");
        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(v["name"].as_str().is_some_and(|n| n.chars().count() <= 6), "{s}");
        assert!(v["n"].as_u64().is_some_and(|n| n <= 99), "{s}");
        assert!(v["ok"].is_boolean(), "{s}");
        assert!(v["tags"].as_array().is_some_and(|t| t.len() <= 3), "{s}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(4), "{s}");
    }
    let g = c.compile(&GrammarSpec::JsonObject).expect("json_object");
    let s = walk(&tok, &g, 3, 0).expect("an object");
    assert!(serde_json::from_str::<Value>(&s).expect("parses").is_object(), "{s}");
}

#[test]
fn lark_grammar_and_padding_columns() {
    let tok = tok();
    let c = GrammarCompiler::new(&tok, 384).expect("compiler");
    let g = c.compile(&GrammarSpec::Lark("start: \"x\" (\"+\" \"x\")*".into())).expect("lark");
    let s = walk(&tok, &g, 1, 3).expect("complete");
    assert!(s.starts_with('x') && s.split('+').all(|p| p == "x"), "{s:?}");
    let mask = g.matcher().mask().expect("mask");
    assert_eq!(mask.len(), mask_words(384));
    assert!((320..384).all(|t| !mask_allows(&mask, t)), "padding columns are never allowed");
}

#[test]
fn bad_grammars_are_request_errors() {
    let tok = tok();
    let c = GrammarCompiler::new(&tok, 384).expect("compiler");
    for spec in [
        GrammarSpec::Regex("(unclosed".into()),
        GrammarSpec::Lark("start: undefined_rule".into()),
        GrammarSpec::JsonSchema(json!({"type": "no-such-type"})),
        GrammarSpec::Choice(vec![]),
    ] {
        match c.compile(&spec) {
            Err(Error::Request(m)) => assert!(!m.is_empty()),
            other => panic!("{spec:?}: {other:?}"),
        }
    }
}
