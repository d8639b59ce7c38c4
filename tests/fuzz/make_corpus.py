#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_model_files: tiny valid models (hidden 8, one layer) of the
three BitNet families, each as 2-byte little-endian config length + config.json + safetensors.

    python3 tests/fuzz/make_corpus.py tests/fuzz/corpus
"""
import json
import os
import struct
import sys

H, F, HEADS, KV, V = 8, 16, 2, 1, 4
HD = H // HEADS
QD, KD = HEADS * HD, KV * HD


def bf16(x):
    return struct.pack("<f", x)[2:]  # truncation is exact for the values used here


def floats(n, seed, scale=0.5):
    # A small deterministic pattern of positive and negative values.
    return b"".join(bf16(scale * (((i * 7 + seed * 3) % 11) - 5) / 5.0 or 0.25) for i in range(n))


def ones(n):
    return bf16(1.0) * n


def packed(out, inp, seed):
    # transformers' pack_weights layout: uint8 [ceil(out/4), in], 2-bit codes 0..2 (value + 1).
    rows = (out + 3) // 4
    codes = [(i * 5 + seed) % 3 for i in range(rows * inp * 4)]
    return bytes(codes[4 * i] | codes[4 * i + 1] << 2 | codes[4 * i + 2] << 4 | codes[4 * i + 3] << 6
                 for i in range(rows * inp)), [rows, inp]


def safetensors(tensors):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def model(family):
    config = {"hidden_size": H, "intermediate_size": F, "num_hidden_layers": 1,
              "num_attention_heads": HEADS, "num_key_value_heads": KV, "vocab_size": V,
              "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2}
    t = [("model.embed_tokens.weight", "BF16", [V, H], floats(V * H, 1)),
         ("model.norm.weight", "BF16", [H], ones(H))]
    p = "model.layers.0."
    t += [(p + "input_layernorm.weight", "BF16", [H], ones(H)),
          (p + "post_attention_layernorm.weight", "BF16", [H], ones(H))]
    linears = [("self_attn.q_proj", QD, H), ("self_attn.k_proj", KD, H), ("self_attn.v_proj", KD, H),
               ("self_attn.o_proj", H, QD), ("mlp.gate_proj", F, H), ("mlp.up_proj", F, H),
               ("mlp.down_proj", H, F)]
    if family == "packed":  # BitNetForCausalLM, offline packed weights with weight_scale
        config.update(architectures=["BitNetForCausalLM"], model_type="bitnet", hidden_act="relu2",
                      tie_word_embeddings=True,
                      quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                           "quantization_mode": "offline"})
        t += [(p + "self_attn.attn_sub_norm.weight", "BF16", [QD], ones(QD)),
              (p + "mlp.ffn_sub_norm.weight", "BF16", [F], ones(F))]
        for i, (name, out, inp) in enumerate(linears):
            raw, shape = packed(out, inp, i)
            t += [(p + name + ".weight", "U8", shape, raw), (p + name + ".weight_scale", "BF16", [1], bf16(0.5))]
    elif family == "master":  # 1bitLLM BitnetForCausalLM: master weights, ternarised at load
        config.update(architectures=["BitnetForCausalLM"], model_type="llama", hidden_act="silu",
                      tie_word_embeddings=False)
        t += [("lm_head.weight", "BF16", [V, H], floats(V * H, 2)),
              (p + "self_attn.inner_attn_ln.weight", "BF16", [QD], ones(QD)),
              (p + "mlp.ffn_layernorm.weight", "BF16", [F], ones(F))]
        for i, (name, out, inp) in enumerate(linears):
            t.append((p + name + ".weight", "BF16", [out, inp], floats(out * inp, i)))
    else:  # LlamaForCausalLM with a bitnet quantization_config: no sub-norms, input norms
        config.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                      tie_word_embeddings=True,
                      quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear",
                                           "quantization_mode": "offline", "use_rms_norm": True})
        for i, (name, out, inp) in enumerate(linears):
            raw, shape = packed(out, inp, i)
            t += [(p + name + ".weight", "U8", shape, raw), (p + name + ".weight_scale", "BF16", [1], bf16(2.0)),
                  (p + name + ".rms_norm.weight", "BF16", [inp], ones(inp))]
    text = json.dumps(config, separators=(",", ":")).encode()
    return struct.pack("<H", len(text)) + text + safetensors(t)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out_dir, exist_ok=True)
    for family in ("packed", "master", "llama"):
        with open(os.path.join(out_dir, "seed_" + family), "wb") as f:
            f.write(model(family))


if __name__ == "__main__":
    main()
