use serde_json::json;

use super::*;

fn parse(q: Value) -> Result<Option<QuantConfig>> {
    QuantConfig::from_hf_value(&json!({ "quantization_config": q }), Path::new("config.json"))
}

fn err(q: Value) -> String {
    parse(q).expect_err("should be refused").to_string()
}

fn ct(strategy: &str, extra: Value) -> Value {
    let mut w = json!({"num_bits": 8, "type": "float", "symmetric": true, "dynamic": false,
        "strategy": strategy, "group_size": null, "block_structure": null});
    if let (Some(o), Some(e)) = (w.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json!({
        "quant_method": "compressed-tensors", "format": "float-quantized",
        "quantization_status": "compressed", "kv_cache_scheme": null,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": w, "output_activations": null,
            "input_activations": {"num_bits": 8, "type": "float", "symmetric": true, "dynamic": false, "strategy": "tensor"}}},
        "ignore": ["lm_head", "re:.*mlp.gate$"]
    })
}

#[test]
fn absent_is_none() {
    assert_eq!(QuantConfig::from_hf_value(&json!({}), Path::new("c")).expect("ok"), None);
    assert_eq!(parse(Value::Null).expect("ok"), None);
}

#[test]
fn compressed_tensors_fp8_schemes() {
    let c = parse(ct("tensor", json!({}))).expect("ok").expect("some");
    assert_eq!(c.weight, WeightQuant::Fp8(Fp8Scales::Tensor));
    assert_eq!(c.unused_leaves, vec!["input_scale".to_string()], "static activations carry input scales");
    assert_eq!(c.leaves(), ["weight", "weight_scale"]);
    assert_eq!(c.weight.shapes(256, 128), vec![vec![256, 128], vec![1]]);
    assert!(!c.quantizes("lm_head"));
    assert!(!c.quantizes("model.layers.3.mlp.gate"), "re: pattern");
    assert!(c.quantizes("model.layers.3.mlp.gate_proj"), "`$` anchors the pattern");
    assert!(c.quantizes("model.layers.0.self_attn.q_proj"));
    let c = parse(ct("channel", json!({}))).expect("ok").expect("some");
    assert_eq!(c.weight, WeightQuant::Fp8(Fp8Scales::Channel));
    assert_eq!(c.weight.shapes(256, 128)[1], vec![256, 1]);
    let c = parse(ct("block", json!({"block_structure": [128, 128]}))).expect("ok").expect("some");
    assert_eq!(c.weight, WeightQuant::Fp8(Fp8Scales::Block { rows: 128, cols: 128, inv_name: false }));
    assert_eq!(c.weight.shapes(300, 129)[1], vec![3, 2]);
}

#[test]
fn compressed_tensors_refusals_name_the_field() {
    let e = err(ct("group", json!({})));
    assert!(e.contains("weights.strategy") && e.contains("group"), "{e}");
    let e = err(ct("tensor", json!({"num_bits": 4, "type": "int"})));
    assert!(e.contains("config_groups.group_0.weights") && e.contains("8-bit float"), "{e}");
    let e = err(ct("block", json!({})));
    assert!(e.contains("block_structure"), "{e}");
    let mut q = ct("tensor", json!({}));
    q["format"] = json!("pack-quantized");
    let e = err(q);
    assert!(e.contains("pack-quantized") && e.contains("fbgemm_fp8"), "lists what is supported: {e}");
}

#[test]
fn fbgemm_and_fp8_block() {
    let c = parse(json!({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
        "modules_to_not_convert": ["mlp.gate"]}))
    .expect("ok")
    .expect("some");
    assert_eq!(c.weight, WeightQuant::Fp8(Fp8Scales::Channel));
    assert!(!c.quantizes("model.layers.0.mlp.gate") && !c.quantizes("lm_head"));
    assert_eq!(c.unused_leaves, vec!["input_scale_ub".to_string()]);
    let c = parse(json!({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
        "weight_block_size": [128, 128], "modules_to_not_convert": null}))
    .expect("ok")
    .expect("some");
    assert_eq!(c.weight, WeightQuant::Fp8(Fp8Scales::Block { rows: 128, cols: 128, inv_name: true }));
    assert_eq!(c.leaves(), ["weight", "weight_scale_inv"]);
    let e = err(json!({"quant_method": "fp8", "activation_scheme": "dynamic"}));
    assert!(e.contains("quantization_config.weight_block_size") && e.contains("missing"), "{e}");
    let e =
        err(json!({"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": [128, 128]}));
    assert!(e.contains("activation_scheme"), "{e}");
}

#[test]
fn awq_and_gptq() {
    let c = parse(json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "GEMM",
        "zero_point": true, "modules_to_not_convert": null}))
    .expect("ok")
    .expect("some");
    assert_eq!(c.weight, WeightQuant::Awq { group: 128 });
    assert_eq!(c.weight.shapes(256, 512), vec![vec![512, 32], vec![4, 32], vec![4, 256]]);
    let c = parse(json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false,
        "sym": true, "damp_percent": 0.01}))
    .expect("ok")
    .expect("some");
    assert_eq!(c.weight, WeightQuant::Gptq { group: 128, v1_zero_offset: true });
    assert_eq!(c.weight.shapes(256, 512)[0], vec![64, 256]);
    assert_eq!(c.weight.shapes(256, 512)[3], vec![512]);
    let c =
        parse(json!({"quant_method": "gptq", "bits": 4, "group_size": 64, "checkpoint_format": "gptq_v2"}))
            .expect("ok")
            .expect("some");
    assert_eq!(c.weight, WeightQuant::Gptq { group: 64, v1_zero_offset: false });
    let e = err(json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true}));
    assert!(e.contains("desc_act"), "{e}");
    let e = err(json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}));
    assert!(e.contains("version") && e.contains("gemv"), "{e}");
    let e = err(json!({"quant_method": "awq", "bits": 8, "group_size": 128}));
    assert!(e.contains("quantization_config.bits"), "{e}");
    let e = err(json!({"quant_method": "gptq", "bits": 4, "group_size": -1}));
    assert!(e.contains("group_size"), "{e}");
    assert!(WeightQuant::Awq { group: 128 }.fits(64, 64).is_err());
}

#[test]
fn unknown_methods_list_the_supported_ones() {
    let e = err(json!({"quant_method": "bitsandbytes", "load_in_4bit": true}));
    assert!(e.contains("`bitsandbytes`") && e.contains("compressed-tensors") && e.contains("gptq"), "{e}");
    let e = err(json!({"bits": 4}));
    assert!(e.contains("quantization_config.quant_method"), "{e}");
}

#[test]
fn regex_subset() {
    assert!(regex_match(".*lm_head", "lm_head"));
    assert!(regex_match(r".*mlp\.gate$", "model.layers.1.mlp.gate"));
    assert!(!regex_match(r".*mlp\.gate$", "model.layers.1.mlp.gate_proj"));
    assert!(regex_match(r"model\.layers\.0\..*", "model.layers.0.self_attn.q_proj"));
    assert!(!regex_match(r"model\.layers\.0\..*", "model.layers.10.self_attn.q_proj"));
    assert!(regex_match("a|.*b$", "xxb"));
    assert!(!regex_match("(a|b)", "a"), "outside the subset: no match");
}
