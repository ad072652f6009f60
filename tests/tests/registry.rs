//! Every architecture the zoo promises is registered (inventory collects at link time, so this
//! also proves `trtllm::init()` force-links trtllm-models), aliases resolve to the same entry,
//! and an unknown name lists the supported ones with the nearest match.

const EXPECTED: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "trtllm_models::llama::Llama"),
    ("MistralForCausalLM", "trtllm_models::llama::Llama"),
    ("Qwen2ForCausalLM", "trtllm_models::qwen2::Qwen2"),
    ("Qwen3ForCausalLM", "trtllm_models::qwen3::Qwen3"),
    ("Qwen3MoeForCausalLM", "trtllm_models::mixtral::Qwen3Moe"),
    ("MixtralForCausalLM", "trtllm_models::mixtral::Mixtral"),
    ("GemmaForCausalLM", "trtllm_models::gemma::Gemma"),
    ("Gemma2ForCausalLM", "trtllm_models::gemma::Gemma2"),
    ("Gemma3ForCausalLM", "trtllm_models::gemma::Gemma3"),
    ("Gemma3ForConditionalGeneration", "trtllm_models::gemma::Gemma3"),
    ("Phi3ForCausalLM", "trtllm_models::phi3::Phi3"),
    ("GPT2LMHeadModel", "trtllm_models::gpt2::Gpt2"),
    ("Olmo2ForCausalLM", "trtllm_models::olmo2::Olmo2"),
    ("GraniteForCausalLM", "trtllm_models::granite::Granite"),
    ("Starcoder2ForCausalLM", "trtllm_models::starcoder2::Starcoder2"),
    ("GPTNeoXForCausalLM", "trtllm_models::gpt_neox::GptNeoX"),
    ("CohereForCausalLM", "trtllm_models::cohere::Cohere"),
    ("Qwen2MoeForCausalLM", "trtllm_models::qwen2_moe::Qwen2Moe"),
    ("GptOssForCausalLM", "trtllm_models::gpt_oss::GptOss"),
    ("FalconForCausalLM", "trtllm_models::falcon::Falcon"),
    ("DeepseekV2ForCausalLM", "trtllm_models::deepseek_v2::DeepseekV2"),
    ("DeepseekV3ForCausalLM", "trtllm_models::deepseek_v3::DeepseekV3"),
];

#[test]
fn every_expected_architecture_is_registered() {
    trtllm::init();
    let all = trtllm_core::model::architectures();
    for (arch, ty) in EXPECTED {
        let e = trtllm_core::model::lookup(arch).unwrap_or_else(|err| panic!("{arch}: {err}"));
        assert_eq!(e.type_name, *ty, "{arch} is served by {}", e.type_name);
        assert!(all.contains(&(*arch, *ty)), "{arch} missing from architectures()");
    }
    let mut names: Vec<&str> = all.iter().map(|(a, _)| *a).collect();
    names.dedup();
    assert_eq!(names.len(), all.len(), "an architecture string is registered twice: {all:?}");
}

#[test]
fn aliases_share_an_entry_and_unknown_names_get_a_hint() {
    trtllm::init();
    let (a, b) =
        (trtllm_core::model::lookup("LlamaForCausalLM"), trtllm_core::model::lookup("MistralForCausalLM"));
    assert!(std::ptr::eq(a.expect("llama"), b.expect("mistral")));
    let err = trtllm_core::model::lookup("LLamaForCausalLM").err().expect("unknown").to_string();
    assert!(err.contains("did you mean `LlamaForCausalLM`"), "{err}");
    assert!(err.contains("Qwen2ForCausalLM") && err.contains("GPT2LMHeadModel"), "{err}");
}

#[test]
fn adapters_list_the_keys_they_read() {
    trtllm::init();
    let granite = trtllm_core::model::adapter_keys("GraniteForCausalLM").expect("granite");
    for k in ["embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"] {
        assert!(granite.iter().any(|g| g == k), "{k} not in {granite:?}");
    }
    let cohere = trtllm_core::model::adapter_keys("CohereForCausalLM").expect("cohere");
    assert!(
        cohere.iter().any(|g| g == "use_qk_norm") && cohere.iter().any(|g| g == "logit_scale"),
        "{cohere:?}"
    );
    assert!(trtllm_core::model::adapter_keys("LlamaForCausalLM").expect("llama").is_empty());
    // A family-level hint, not one by suffix: Olmo (1) is nearest to Olmo2, GPT-J to nothing.
    let err = trtllm_core::model::lookup("OlmoForCausalLM").err().expect("unknown").to_string();
    assert!(err.contains("did you mean `Olmo2ForCausalLM`"), "{err}");
    let err = trtllm_core::model::lookup("GPTJForCausalLM").err().expect("unknown").to_string();
    assert!(!err.contains("did you mean"), "{err}");
}

/// A fixture's config.json with `key` set to `value`, in a fresh directory.
fn config_with(fixture: &str, key: &str, value: serde_json::Value) -> std::path::PathBuf {
    let src = trtllm_tests::fixture(fixture).join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).expect("read")).expect("json");
    cfg[key] = value;
    let dir = std::env::temp_dir().join(format!("trtllm-registry-{fixture}-{key}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write");
    dir
}

#[test]
fn settings_an_architecture_cannot_run_are_errors_naming_the_key() {
    trtllm::init();
    for (fixture, key, value, says) in [
        ("falcon", "alibi", serde_json::json!(true), "ALiBi"),
        ("falcon_mqa", "parallel_attn", serde_json::json!(false), "sequential"),
        ("deepseek_v2", "topk_method", serde_json::json!("noaux_tc"), "not supported"),
        ("deepseek_v3", "moe_layer_freq", serde_json::json!(2), "only 1"),
        ("qwen2_moe", "decoder_sparse_step", serde_json::json!(0), "at least 1"),
    ] {
        let dir = config_with(fixture, key, value);
        let err = trtllm_core::model::resolve_config(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains(&format!("`{key}`")) && err.contains(says), "{fixture} {key}: {err:?}");
    }
}
