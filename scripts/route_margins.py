# usage (GPU machine or any box with torch + transformers): python3 scripts/route_margins.py FIXTURE_DIR
# DeepSeek-V2 fixture: HF transformers f32 vs bf16 on the reference prompt. Per MoE layer and
# position: the softmax router's group maxima (n_group groups, topk_group kept), the margin between
# the kept group and the best dropped one, and whether bf16 keeps another group; logits NMSE per
# position of HF bf16 vs HF f32 (the reference).
import sys, torch, transformers
from safetensors.torch import load_file
d = sys.argv[1]
ref = load_file(f"{d}/reference.safetensors")
ids = ref["input_ids"].reshape(1, -1).long()
cfg = transformers.AutoConfig.from_pretrained(d)
def run(dtype):
    m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=dtype).eval()
    cap = {}
    for name, mod in m.named_modules():
        if name.endswith("mlp.gate"):
            mod.register_forward_hook(lambda mod, i, o, name=name: cap.__setitem__(name, (o if torch.is_tensor(o) else o[0]).float()))
    with torch.no_grad():
        lg = m(ids).logits.float()[0]
    return lg, cap
lf, cf = run(torch.float32)
lb, cb = run(torch.bfloat16)
r = ref["logits"].float().reshape(lf.shape)
nm = lambda a, b: (((a - b) ** 2).sum(-1) / (b ** 2).sum(-1))
print("HF f32 vs reference NMSE (all):", float(((lf - r) ** 2).sum() / (r ** 2).sum()))
print("HF bf16 vs reference NMSE (all):", float(((lb - r) ** 2).sum() / (r ** 2).sum()))
print("HF bf16 per position:", " ".join(f"{v:.1e}" for v in nm(lb, r).tolist()))
G, TG = cfg.n_group, cfg.topk_group
low = 1.0
for name in cf:
    sf, sb = cf[name].reshape(ids.shape[1], -1).softmax(-1), cb[name].reshape(ids.shape[1], -1).softmax(-1)
    gf = sf.view(sf.shape[0], G, -1).max(-1).values
    gb = sb.view(sb.shape[0], G, -1).max(-1).values
    kf, kb = gf.topk(TG, -1).indices.sort(-1).values, gb.topk(TG, -1).indices.sort(-1).values
    srt = gf.sort(-1, descending=True).values
    margin = srt[:, TG - 1] - srt[:, TG]
    low = min(low, float(margin.min()))
    flips = [p for p in range(sf.shape[0]) if not torch.equal(kf[p], kb[p])]
    print(f"{name}: smallest group margins (f32 softmax) {' '.join(f'p{p}:{margin[p]:.1e}' for p in margin.argsort()[:4].tolist())}; bf16 keeps another group at {flips}")
print(f"MIN_MARGIN {low:.4f} HF_BF16_NMSE {float(((lb - r) ** 2).sum() / (r ** 2).sum()):.2e}")
