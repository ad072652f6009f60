use super::*;

fn weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[test]
fn parses_each_format() {
    let (c, calls) = parse_output(
        ToolFormat::Hermes,
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"t\", \"arguments\": {}}\n</tool_call>",
    );
    assert_eq!(c.as_deref(), Some("Let me check."));
    assert_eq!(
        calls,
        vec![
            ToolCall { name: "get_weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
            ToolCall { name: "t".into(), arguments: "{}".into() },
        ]
    );
    let (c, calls) =
        parse_output(ToolFormat::Llama3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": 1}}");
    assert_eq!((c, calls), (None, vec![ToolCall { name: "f".into(), arguments: "{\"x\":1}".into() }]));
    let (c, calls) =
        parse_output(ToolFormat::Mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": \"b\"}}]");
    assert_eq!((c, calls.len()), (None, 1));
    // Not calls: all content.
    for (f, t) in [
        (ToolFormat::Hermes, "<tool_call>{broken"),
        (ToolFormat::Llama3, "hello"),
        (ToolFormat::Mistral, "[TOOL_CALLS]nope"),
    ] {
        assert_eq!(parse_output(f, t), (Some(t.to_string()), vec![]));
    }
}

#[test]
fn tool_choice_and_formats() {
    let body = json!({"tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
    let t = parse(&body).expect("parses").expect("tools");
    assert_eq!(t.choice, Choice::Named("get_weather".into()));
    for f in [ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral] {
        assert!(matches!(t.grammar(f), Some(GrammarSpec::Lark(_))));
    }
    assert_eq!(parse(&json!({"tools": [weather()]})).expect("ok").expect("tools").choice, Choice::Auto);
    assert!(parse(&json!({})).expect("ok").is_none());
    let e = |v: Value| parse(&v).expect_err("rejected").param;
    assert_eq!(
        e(json!({"tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}))
            .as_deref(),
        Some("tool_choice")
    );
    assert_eq!(e(json!({"tool_choice": "required"})).as_deref(), Some("tool_choice"));
    assert_eq!(e(json!({"tools": [{"type": "retrieval"}]})).as_deref(), Some("tools[0]"));
    assert_eq!(e(json!({"tools": [weather()], "tool_choice": "sometimes"})).as_deref(), Some("tool_choice"));
    assert_eq!(ToolFormat::of_template("{{ '<tool_call>' }}"), ToolFormat::Hermes);
    assert_eq!(ToolFormat::of_template("[TOOL_CALLS]"), ToolFormat::Mistral);
    assert_eq!(ToolFormat::of_template("<|python_tag|>"), ToolFormat::Llama3);
    assert_eq!(held_suffix(ToolFormat::Hermes, "abc <tool_"), 6);
    assert_eq!(held_suffix(ToolFormat::Hermes, "abc"), 0);
    assert_eq!(call_start(ToolFormat::Hermes, "x <tool_call>"), Some(2));
}
