"""Export a trained BitNetLM as a Hugging Face checkpoint in the packed layout of
microsoft/bitnet-b1.58-2B-4T (quantization_mode "offline": uint8 weights holding four ternary
values each, plus a bf16 weight_scale per tensor), and record what transformers computes on it.
"""
import json
import os

import torch

from model import ternarize


def pack_ternary(codes):
    """[out, in] codes in {-1, 0, 1} -> uint8 [out/4, in]: row k*R + r of the matrix sits in bits
    2k..2k+1 of packed row r (R = out/4), stored as value + 1 (transformers' pack_weights)."""
    out_features = codes.shape[0]
    if out_features % 4:
        raise ValueError(f"output size {out_features} is not a multiple of 4")
    rows = out_features // 4
    u = (codes + 1).to(torch.uint8)
    packed = torch.zeros((rows, codes.shape[1]), dtype=torch.uint8)
    for k in range(4):
        packed |= u[k * rows:(k + 1) * rows] << (2 * k)
    return packed


def unpack_ternary(packed):
    return torch.cat([((packed >> (2 * k)) & 3).to(torch.int8) - 1 for k in range(4)], dim=0)


def export_state_dict(model):
    sd = {}
    for name, p in model.named_parameters():
        p = p.detach().cpu()
        if name.endswith("_proj.weight"):
            codes, alpha = ternarize(p)
            sd[name] = pack_ternary(codes)
            sd[name[: -len("weight")] + "weight_scale"] = alpha.reshape(1).to(torch.bfloat16)
        else:
            sd[name] = p.to(torch.bfloat16).contiguous()
    return sd


def hf_config(cfg, bos_id, eos_id):
    return {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_act": "relu2",
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": bos_id, "eos_token_id": eos_id,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "initializer_range": cfg.initializer_range, "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": cfg.vocab_size,
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline"},
    }


def export_checkpoint(model, out_dir, bos_id, eos_id, eot_id):
    """config.json, model.safetensors and generation_config.json (the tokenizer files are written
    by data.write_tokenizer_files)."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    save_file(export_state_dict(model), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(model.cfg, bos_id, eos_id), f, indent=2)
    gen = {"bos_token_id": bos_id, "eos_token_id": [eos_id, eot_id], "do_sample": False,
           "max_length": model.cfg.max_position_embeddings}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def load_exported_into(model, out_dir):
    """Load an exported checkpoint back into a BitNetLM (ternary * scale as master weights), so
    the training code can evaluate exactly what was exported."""
    from safetensors.torch import load_file

    load_state_dict_into(model, load_file(os.path.join(out_dir, "model.safetensors")))


def load_state_dict_into(model, sd):
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_proj.weight"):
                alpha = sd[name[: -len("weight")] + "weight_scale"].float().to(p.device)
                p.copy_(unpack_ternary(sd[name]).float().to(p.device) * alpha)
                modules[name[: -len(".weight")]].fixed_scale = alpha
            else:
                p.copy_(sd[name].float().to(p.device))


REFERENCE_PROMPTS = [
    "In the beginning God created the heaven and the earth. And the earth was",
    "The for statement in Python iterates over the items of any sequence",
    "To install a package on a Debian system, run",
    "SELECT name, price FROM products WHERE",
    "def read_config(path):\n    \"\"\"Return the settings stored in the file at path.\"\"\"\n",
    "The kernel uses a spinlock to protect the list of",
]

TOKENIZER_CASES = ["", " ", "\n\n\n", "hello world", "HELLO    WORLD", "tab\tnew\nline\r\nend", "ü",
                   "日本語のテキスト", "🤖🤖🤖", "can't won't shouldn't", "x=1+2*3/4-5%6",
                   "   multiple   spaces   ", "1234567890123", "ALLCAPS and MiXeD", "\u00a0nbsp\u2003em",
                   "And Jesus answering said unto them,", "git commit --amend -m 'fix'",
                   "<|begin_of_text|>User: hi<|eot_id|>Assistant: "]


def write_reference(model_dir, out_dir, name, new_tokens=40):
    """What transformers (BitNetForCausalLM, float32, CPU) computes on the exported checkpoint, in
    the layout of ../shared/reference/*/reference.safetensors + reference.json."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = model.config.eos_token_id
    ref, meta = {}, {"name": name, "mode": "offline", "texts": [], "generations": []}
    for j, text in enumerate(REFERENCE_PROMPTS):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            res = model(torch.tensor([ids]), output_hidden_states=True)
        ref[f"prompt.{j}.ids"] = torch.tensor(ids, dtype=torch.int32)
        ref[f"prompt.{j}.logits"] = res.logits[0].float().contiguous()
        for i, hs in enumerate(res.hidden_states):
            ref[f"prompt.{j}.hidden.{i}"] = hs[0].float().contiguous()
        meta["texts"].append({"text": text, "ids": ids})
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                               eos_token_id=None, pad_token_id=eos)[0].tolist()
            full = model(torch.tensor([g])).logits[0].float()
        top2 = full.topk(2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]).tolist()
        ref[f"generate.{j}.ids"] = torch.tensor(g, dtype=torch.int32)
        ref[f"generate.{j}.logits"] = full.contiguous()
        meta["generations"].append({"prompt": j, "ids": g, "new_tokens": len(g) - len(ids),
                                    "decoded": tok.decode(g[len(ids):]),
                                    "min_margin": min(margin[len(ids) - 1:-1])})
    meta["tokenizer_cases"] = [
        {"text": t, "ids": tok(t)["input_ids"],
         "decoded": tok.decode(tok(t)["input_ids"], skip_special_tokens=True)} for t in TOKENIZER_CASES]
    os.makedirs(out_dir, exist_ok=True)
    save_file(ref, os.path.join(out_dir, "reference.safetensors"))
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    return meta
