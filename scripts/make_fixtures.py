#!/usr/bin/env python3
"""Generate the tiny HF model fixtures under tests/fixtures/.

Every fixture is a self-contained HF model directory (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json) plus a reference.safetensors
computed by HF transformers (see scripts/hf_reference.py and tests/fixtures/README.md).

No model hub access: every model is built from a config with from_config / the model class,
seeded, and re-randomized with a larger std so that logits are far from uniform.

Usage:
    /tmp/trtllm-models/venv/bin/python scripts/make_fixtures.py [--out tests/fixtures] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_reference  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
INIT_STD = 0.2
T_DEFAULT = 20
GREEDY = 16

# Shared tokenizer / ids
TOKENIZER_VOCAB = 320  # target; the trained size is recorded in the README summary
MODEL_VOCAB = 384  # model vocab >= tokenizer vocab (padded, like real checkpoints)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]

COMMON = dict(
    vocab_size=MODEL_VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=INIT_STD,
    pad_token_id=PAD_ID,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
)

TRAINING_TEXT = """\
The engine reads a model directory, maps the weights into device memory and builds a plan for every layer.
Each request is split into a prefill phase, which processes the whole prompt at once, and a decode phase,
which produces one token at a time while the key and value cache grows by a single row per layer.
Paged attention stores the cache in fixed size blocks so that many sequences of different lengths can share
the same pool of memory without fragmentation. A scheduler decides which requests run in the next step.

Rotary position embeddings rotate pairs of channels in the query and key vectors by an angle that depends
on the position of the token. Scaling variants such as linear, dynamic, yarn, llama3 and longrope stretch
those angles so that a model trained on short sequences can read longer ones. Sliding window attention
limits every token to a fixed number of recent tokens, and some models alternate local and global layers.

Mixture of experts layers route every token to a small number of feed forward experts chosen by a router.
The router produces a score for each expert, keeps the top k, optionally renormalizes the weights, and the
outputs of the chosen experts are summed. Grouped query attention shares one key and value head between
several query heads, which makes the cache smaller and the decode phase faster on modern accelerators.

Hello world! This is a tiny tokenizer for tests: numbers like 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 appear,
punctuation (commas, periods; colons: and dashes - too) appears, and so do "quotes" and 'apostrophes'.
def main():\n    print("hello, world")\n    return 0\n
The quick brown fox jumps over the lazy dog. A lazy dog sleeps under the old tree by the river bank.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells from the shore.
"""

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


def build_tokenizer(tmp_dir: Path) -> tuple[Path, Path, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in TRAINING_TEXT.split("\n")]
    tok.train_from_iterator(lines * 4, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    vocab = tok.get_vocab_size()
    assert vocab <= MODEL_VOCAB
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tok_json = tmp_dir / "tokenizer.json"
    tok.save(str(tok_json))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(i): {
                "content": s,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, s in enumerate(SPECIAL_TOKENS)
        },
    }
    tok_cfg_path = tmp_dir / "tokenizer_config.json"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    return tok_json, tok_cfg_path, vocab


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int, std: float = INIT_STD, embed_std: float | None = None) -> None:
    """Re-randomize every parameter deterministically (parameters visited in sorted-name order).

    >=2-D params: normal(0, std) (token embeddings: normal(0, embed_std) if given).
    1-D params that are all ones (norm scales): 1 + std*randn.
    Other 1-D params (biases, zero-centred Gemma "1 + w" norm weights): std*randn.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.dim() >= 2:
            is_embed = name.endswith("embed_tokens.weight") or name.endswith("wte.weight")
            p.copy_(noise * (embed_std if (is_embed and embed_std is not None) else std))
        elif p.numel() > 0 and torch.all(p == 1):
            p.copy_(1.0 + noise * std)
        else:
            p.copy_(noise * std)


# --------------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------------


def cfg(cls_name: str, **kw):
    merged = dict(COMMON)
    merged.update(kw)
    return getattr(transformers, cls_name)(**merged)


def llama(**kw):
    return cfg("LlamaConfig", **kw)


def gemma3_text_config(**kw):
    layer_types = ["sliding_attention"] * 5 + ["full_attention"]
    base = dict(
        num_hidden_layers=6,
        intermediate_size=64,
        head_dim=16,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,
        layer_types=layer_types,
        query_pre_attn_scalar=24,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        },
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    )
    base.update(kw)
    return cfg("Gemma3TextConfig", **base)


def make_specs():
    """name -> dict(config=callable, cls=str, T=int, prefix_len=int|None, post=callable|None)."""
    specs = {}

    def add(name, config_fn, cls, **opts):
        specs[name] = dict(config=config_fn, cls=cls, **opts)

    add("llama", lambda: llama(tie_word_embeddings=False), "LlamaForCausalLM")
    add(
        "llama_tied",
        lambda: llama(tie_word_embeddings=True, num_key_value_heads=1),
        "LlamaForCausalLM",
    )
    add(
        "llama_rope_linear",
        lambda: llama(tie_word_embeddings=False, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
        "LlamaForCausalLM",
    )
    add(
        "llama_rope_dynamic",
        lambda: llama(
            tie_word_embeddings=False,
            max_position_embeddings=16,
            rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
        ),
        "LlamaForCausalLM",
        prefix_len=12,
    )
    # original_max_position_embeddings=32 (not 16): with head_dim 16 / theta 1e4 the wavelengths are
    # 6.3, 19.9, 62.8, ... so orig=32 (high_freq_wavelen 8, low_freq_wavelen 32) hits all three llama3
    # branches (unchanged / smoothed / scaled); orig=16 would never hit the "unchanged" branch.
    add(
        "llama_rope_llama3",
        lambda: llama(
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
                "rope_theta": 10000.0,
            },
        ),
        "LlamaForCausalLM",
    )
    add(
        "llama_rope_yarn",
        lambda: llama(
            tie_word_embeddings=False,
            max_position_embeddings=64,
            rope_parameters={
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "rope_theta": 10000.0,
            },
        ),
        "LlamaForCausalLM",
    )
    add(
        "mistral_swa",
        lambda: cfg("MistralConfig", sliding_window=8, tie_word_embeddings=False),
        "MistralForCausalLM",
    )
    add("qwen2", lambda: cfg("Qwen2Config", tie_word_embeddings=False), "Qwen2ForCausalLM")
    add(
        "qwen2_swa",
        lambda: cfg(
            "Qwen2Config",
            tie_word_embeddings=False,
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=1,
        ),
        "Qwen2ForCausalLM",
    )
    add(
        "qwen3",
        lambda: cfg("Qwen3Config", head_dim=32, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        "Qwen3ForCausalLM",
    )
    add(
        "gemma",
        lambda: cfg(
            "GemmaConfig",
            head_dim=32,
            num_key_value_heads=1,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
        ),
        "GemmaForCausalLM",
        **GEMMA_OPTS,
    )
    add(
        "gemma2",
        lambda: cfg(
            "Gemma2Config",
            num_hidden_layers=4,
            head_dim=16,
            sliding_window=8,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=GEMMA2_ATTN_SOFTCAP,
            final_logit_softcapping=GEMMA2_FINAL_SOFTCAP,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
        ),
        "Gemma2ForCausalLM",
        **GEMMA2_OPTS,
    )
    add("gemma3", lambda: gemma3_text_config(), "Gemma3ForCausalLM", **GEMMA3_OPTS)
    add("gemma3_cond", gemma3_cond_config, "Gemma3ForConditionalGeneration", **GEMMA3_OPTS)
    add("phi3", lambda: cfg("Phi3Config", tie_word_embeddings=False), "Phi3ForCausalLM")
    add(
        "phi3_longrope",
        lambda: cfg(
            "Phi3Config",
            tie_word_embeddings=False,
            max_position_embeddings=64,
            original_max_position_embeddings=16,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
                # rotary_dim = head_dim(16) * 0.5 = 8 -> 4 factors each
                "short_factor": [1.0, 1.25, 1.6, 2.0],
                "long_factor": [1.5, 3.0, 6.0, 12.0],
            },
        ),
        "Phi3ForCausalLM",
        prefix_len=12,
    )
    add(
        "gpt2",
        lambda: transformers.GPT2Config(
            vocab_size=MODEL_VOCAB,
            n_positions=256,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_inner=128,
            activation_function="gelu_new",
            initializer_range=INIT_STD,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
            tie_word_embeddings=True,
        ),
        "GPT2LMHeadModel",
    )
    add("gpt2_noprefix", None, "GPT2LMHeadModel", derive_from="gpt2", post="strip_transformer_prefix")
    add(
        "mixtral",
        lambda: cfg(
            "MixtralConfig",
            intermediate_size=64,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=None,
            tie_word_embeddings=False,
        ),
        "MixtralForCausalLM",
    )
    add(
        "qwen3_moe",
        lambda: cfg(
            "Qwen3MoeConfig",
            head_dim=16,
            moe_intermediate_size=32,
            num_experts=8,
            num_experts_per_tok=4,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            tie_word_embeddings=False,
        ),
        "Qwen3MoeForCausalLM",
    )
    add("olmo2", lambda: cfg("Olmo2Config", tie_word_embeddings=False), "Olmo2ForCausalLM")
    add(
        "granite",
        lambda: cfg(
            "GraniteConfig",
            tie_word_embeddings=False,
            embedding_multiplier=4.0,
            residual_multiplier=0.5,
            attention_multiplier=0.125,
            logits_scaling=2.0,
        ),
        "GraniteForCausalLM",
    )
    add(
        "starcoder2",
        lambda: transformers.Starcoder2Config(
            **{k: v for k, v in COMMON.items()},
            sliding_window=8,
            use_bias=True,
            hidden_act="gelu_pytorch_tanh",
            tie_word_embeddings=True,
        ),
        "Starcoder2ForCausalLM",
    )
    add(
        "gpt_neox",
        lambda: transformers.GPTNeoXConfig(
            vocab_size=MODEL_VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=256,
            hidden_act="gelu",
            use_parallel_residual=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            initializer_range=INIT_STD,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
            tie_word_embeddings=False,
        ),
        "GPTNeoXForCausalLM",
    )
    add(
        "cohere",
        lambda: cfg("CohereConfig", logit_scale=0.5, use_qk_norm=False, tie_word_embeddings=True),
        "CohereForCausalLM",
    )
    add(
        "qwen2_moe",
        lambda: cfg(
            "Qwen2MoeConfig",
            num_hidden_layers=3,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            tie_word_embeddings=False,
        ),
        "Qwen2MoeForCausalLM",
    )
    # GPT-OSS: sinks, sliding/full layers, biased experts with a clamped SwiGLU whose limit (1.0)
    # is inside this model's range of gate/up values, YaRN.
    add(
        "gpt_oss",
        lambda: cfg(
            "GptOssConfig",
            num_hidden_layers=2,
            head_dim=16,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=8,
            swiglu_limit=1.0,
            max_position_embeddings=64,
            rope_parameters={
                "rope_type": "yarn",
                "factor": 4.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "truncate": False,
                "original_max_position_embeddings": 16,
                "rope_theta": 10000.0,
            },
            tie_word_embeddings=False,
        ),
        "GptOssForCausalLM",
        seed=11,
    )
    falcon_common = dict(
        vocab_size=MODEL_VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_hidden_size=128,
        max_position_embeddings=256,
        initializer_range=INIT_STD,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        alibi=False,
        parallel_attn=True,
    )
    # Falcon's new decoder (40B/180B): GQA with the fused qkv grouped by KV head, two LayerNorms.
    add(
        "falcon",
        lambda: transformers.FalconConfig(
            **falcon_common, new_decoder_architecture=True, num_kv_heads=2, bias=False, tie_word_embeddings=False
        ),
        "FalconForCausalLM",
    )
    # Falcon-7B's layout: multi-query, one LayerNorm feeding attention and MLP in parallel, biases.
    add(
        "falcon_mqa",
        lambda: transformers.FalconConfig(
            **falcon_common, new_decoder_architecture=False, multi_query=True, bias=True, tie_word_embeddings=True
        ),
        "FalconForCausalLM",
    )
    deepseek_common = dict(
        num_hidden_layers=3,
        moe_intermediate_size=32,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=2,
        topk_group=1,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    yarn_mscale = {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 16,
        "mscale": 1.0,
        "mscale_all_dim": 0.8,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "rope_theta": 10000.0,
    }
    # DeepSeek-V2(-Lite): MLA with q_proj (no q_lora_rank), softmax group-limited routing. Seed 12:
    # its smallest routing margin (kept group vs best dropped, softmax) is 0.079; the default seed's
    # 0.02 let bf16 rounding pick the other group at one position (HF's own bf16 NMSE 5e-3 there).
    add(
        "deepseek_v2",
        lambda: cfg(
            "DeepseekV2Config",
            **deepseek_common,
            q_lora_rank=None,
            topk_method="group_limited_greedy",
            routed_scaling_factor=1.5,
            norm_topk_prob=False,
            rope_parameters=yarn_mscale,
        ),
        "DeepseekV2ForCausalLM",
        seed=12,
    )
    # DeepSeek-V3: MLA with q_lora_rank, sigmoid routing with a (randomized) correction bias,
    # group-limited top-2-sum group scores, interleaved RoPE.
    add(
        "deepseek_v3",
        lambda: cfg(
            "DeepseekV3Config",
            **deepseek_common,
            q_lora_rank=48,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            rope_interleave=True,
            rope_parameters=yarn_mscale,
        ),
        "DeepseekV3ForCausalLM",
        random_buffers=["e_score_correction_bias"],
    )
    return specs


# Gemma2 soft-caps: chosen small relative to this tiny model's attention scores / logits so that
# they change the outputs measurably (checked in check_softcap_effect()).
GEMMA2_ATTN_SOFTCAP = 2.0
GEMMA2_FINAL_SOFTCAP = 3.0

# Gemma scales embeddings by sqrt(hidden) and ties them to the LM head; with embeddings as large as
# the other weights the residual stream is dominated by the current token's embedding and greedy
# decoding just repeats the last token. Smaller embeddings (plus a larger final-norm scale to keep
# the logits spread) give a non-degenerate greedy continuation.
GEMMA_OPTS = dict(embed_std=0.08)
GEMMA2_OPTS = dict(embed_std=0.05, final_norm_offset=1.0)
GEMMA3_OPTS = dict(embed_std=0.08, final_norm_offset=1.0)


def gemma3_cond_config():
    text = gemma3_text_config()
    vision = transformers.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_channels=3,
        image_size=32,
        patch_size=8,
        vision_use_head=False,  # like the released Gemma 3 checkpoints (no attention-pooling head)
        initializer_range=INIT_STD,
    )
    return transformers.Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,  # 4x4 patches avg-pooled to 2x2
        boi_token_index=MODEL_VOCAB - 3,
        eoi_token_index=MODEL_VOCAB - 2,
        image_token_index=MODEL_VOCAB - 1,
        initializer_range=INIT_STD,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


# --------------------------------------------------------------------------------------------------
# Build / save / reference
# --------------------------------------------------------------------------------------------------


def fixed_input_ids(T: int, tok_vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED)
    return torch.randint(len(SPECIAL_TOKENS), tok_vocab, (T,), generator=g)


def build_model(spec) -> torch.nn.Module:
    seed = spec.get("seed", SEED)
    torch.manual_seed(seed)
    config = spec["config"]()
    cls = getattr(transformers, spec["cls"])
    model = cls._from_config(config, attn_implementation="eager")
    randomize(model, seed, spec.get("std", INIT_STD), spec.get("embed_std"))
    # Buffers that are weights of the checkpoint (DeepSeek-V3's routing correction bias) are zeros
    # at init; random values make the fixture exercise them.
    g = torch.Generator().manual_seed(seed + 1)
    for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
        if any(name.endswith(s) for s in spec.get("random_buffers", [])):
            with torch.no_grad():
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
    if spec.get("final_norm_offset"):
        _, norm = hf_reference.find_final_norm(model)
        with torch.no_grad():
            norm.weight.add_(spec["final_norm_offset"])
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )
    model.eval()
    return model


def strip_transformer_prefix(src: Path, dst: Path) -> None:
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(src / "model.safetensors"))
    out = {}
    for k, v in tensors.items():
        nk = k[len("transformer."):] if k.startswith("transformer.") else k
        out[nk] = v
    save_file(out, str(dst / "model.safetensors"), metadata=meta)


def check_softcap_effect(model, ids) -> str:
    """Describe how much Gemma2's softcaps change the logits (each cap removed in turn)."""
    with torch.no_grad():
        base = model(input_ids=ids[None]).logits[0]
        res = []
        # attention softcap is cached on each attention module
        attn = [m for m in model.modules() if hasattr(m, "attn_logit_softcapping")]
        saved = [m.attn_logit_softcapping for m in attn]
        for m in attn:
            m.attn_logit_softcapping = None
        alt = model(input_ids=ids[None]).logits[0]
        for m, s in zip(attn, saved):
            m.attn_logit_softcapping = s
        res.append(f"attn cap {saved[0]}: max|dlogit| when removed={float((alt - base).abs().max()):.3f}")
        # final softcap is read from the config
        cap = model.config.final_logit_softcapping
        model.config.final_logit_softcapping = None
        alt = model(input_ids=ids[None]).logits[0]
        model.config.final_logit_softcapping = cap
        res.append(
            f"final cap {cap}: max|logit| uncapped={float(alt.abs().max()):.3f} capped={float(base.abs().max()):.3f}"
        )
    return "; ".join(res)


def dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())


def make_fixture(name, spec, out_root: Path, tok_files, tok_vocab, built: dict):
    d = out_root / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    T = spec.get("T", T_DEFAULT)
    ids = fixed_input_ids(T, tok_vocab)
    notes = {}

    if spec.get("derive_from"):
        src = out_root / spec["derive_from"]
        for fn in ("config.json", "generation_config.json"):
            shutil.copy(src / fn, d / fn)
        if spec["post"] == "strip_transformer_prefix":
            strip_transformer_prefix(src, d)
    else:
        model = build_model(spec)
        if name == "gemma2":
            notes["softcap_effect"] = check_softcap_effect(model, ids)
        model.save_pretrained(str(d), safe_serialization=True)
        built[name] = model
    for f in tok_files:
        shutil.copy(f, d / f.name)

    # Reference from the *reloaded* directory (validates the checkpoint round trip).
    loaded = hf_reference.load_model(str(d), "float32", "cpu")
    if name in built:
        ref_sd = built[name].state_dict()
        for k, v in loaded.state_dict().items():
            if k in ref_sd and not torch.equal(ref_sd[k].float(), v.float()):
                raise RuntimeError(f"{name}: reloaded param {k} differs from the built model")
    if spec.get("derive_from") and spec["derive_from"] in built:
        src_sd = built[spec["derive_from"]].state_dict()
        for k, v in loaded.state_dict().items():
            if not torch.equal(src_sd[k], v):
                raise RuntimeError(f"{name}: param {k} differs from {spec['derive_from']}")

    tensors, meta = hf_reference.compute_reference(
        loaded,
        ids,
        greedy=GREEDY,
        seed=spec.get("seed", SEED),
        dtype="float32",
        prefix_len=spec.get("prefix_len"),
        extra_metadata={
            "fixture": name,
            "init_std": spec.get("std", INIT_STD),
            "embed_std": spec.get("embed_std", spec.get("std", INIT_STD)),
            "final_norm_offset": spec.get("final_norm_offset", 0.0),
        },
    )
    hf_reference.save_reference(str(d / "reference.safetensors"), tensors, meta)

    n_params = sum(p.numel() for p in loaded.parameters())
    size = dir_size(d)
    return dict(
        name=name,
        arch=meta["architecture"],
        params=n_params,
        size=size,
        vocab=int(meta["vocab_size"]),
        T=T,
        greedy=tensors["greedy"].tolist(),
        normed=meta["last_hidden_is_normed"],
        recompute=meta.get("greedy_matches_recompute"),
        margin=float(meta.get("greedy_min_margin", "nan")),
        logit_std=float(tensors["logits"].std()),
        notes=notes,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    ap.add_argument("--seed", action="append", default=[], metavar="NAME=SEED", help="build fixture NAME with another seed")
    args = ap.parse_args(argv)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1))

    tok_dir = out_root / ".tokenizer_tmp"
    tok_json, tok_cfg, tok_vocab = build_tokenizer(tok_dir)
    tok_files = [tok_json, tok_cfg]

    specs = make_specs()
    for kv in args.seed:
        name, seed = kv.split("=", 1)
        specs[name]["seed"] = int(seed)
    names = args.only or list(specs)
    # derived fixtures need their source
    for n in list(names):
        src = specs[n].get("derive_from")
        if src and src not in names:
            names.insert(names.index(n), src)

    rows, skipped, built = [], [], {}
    for name in names:
        try:
            rows.append(make_fixture(name, specs[name], out_root, tok_files, tok_vocab, built))
            r = rows[-1]
            print(f"[ok] {name}: {r['arch']} params={r['params']} size={r['size']/1024:.1f}KiB", flush=True)
        except Exception as e:  # keep going; report at the end
            traceback.print_exc()
            skipped.append((name, f"{type(e).__name__}: {e}"))
            shutil.rmtree(out_root / name, ignore_errors=True)
    shutil.rmtree(tok_dir, ignore_errors=True)

    print()
    print(f"tokenizer vocab (trained) = {tok_vocab}, model vocab = {MODEL_VOCAB}, transformers {transformers.__version__}, torch {torch.__version__}")
    hdr = f"{'fixture':20} {'architecture':32} {'params':>7} {'size':>9} {'vocab':>5} {'T':>3} {'normed':>6} {'recmp':>5} {'lstd':>5} {'margin':>6}  greedy"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['name']:20} {r['arch']:32} {r['params']:7d} {r['size']/1024:7.1f}Ki {r['vocab']:5d} {r['T']:3d} "
            f"{r['normed']:>6} {str(r['recompute']):>5} {r['logit_std']:5.2f} {r['margin']:6.3f}  {r['greedy']}"
        )
        for k, v in r["notes"].items():
            print(f"{'':20} note {k}: {v}")
    too_big = [r["name"] for r in rows if r["size"] >= 1024 * 1024]
    if too_big:
        print(f"WARNING: fixtures >= 1 MiB: {too_big}")
    for name, why in skipped:
        print(f"SKIPPED {name}: {why}")
    return 1 if (skipped or too_big) else 0


if __name__ == "__main__":
    sys.exit(main())
