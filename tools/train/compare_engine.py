#!/usr/bin/env python3
"""Compare the engine's logits with a reference folder written by export.write_reference
(reference.safetensors + reference.json): relative L2 error and top-1 agreement per sequence,
and whether `bitnet generate` reproduces the greedy continuations. Needs numpy only.

    python3 tools/train/compare_engine.py BITNET_BINARY MODEL_DIR REFERENCE_DIR [extra bitnet flags]
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

DTYPES = {"F32": np.float32, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def engine_logits(binary, model_dir, ids, flags):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "logits.safetensors")
        subprocess.run([binary, "logits", model_dir, "--tokens", ",".join(map(str, ids)), "--all", "-o", path,
                        *flags], check=True, capture_output=True)
        return read_safetensors(path)["logits"]


def compare(ref_logits, got):
    rel = float(np.linalg.norm(got - ref_logits) / np.linalg.norm(ref_logits))
    top1 = float(np.mean(got.argmax(-1) == ref_logits.argmax(-1)))
    return rel, top1


def main():
    binary, model_dir, ref_dir, flags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    ref = read_safetensors(os.path.join(ref_dir, "reference.safetensors"))
    meta = json.load(open(os.path.join(ref_dir, "reference.json")))
    rels, top1s = [], []
    for kind in ("prompt", "generate"):
        j = 0
        while f"{kind}.{j}.ids" in ref:
            ids = ref[f"{kind}.{j}.ids"].tolist()
            rel, top1 = compare(ref[f"{kind}.{j}.logits"], engine_logits(binary, model_dir, ids, flags))
            rels.append(rel)
            top1s.append(top1)
            print(f"{kind}.{j}: {len(ids):3d} tokens  relative L2 {rel:.2e}  top-1 agreement {top1:.3f}")
            j += 1
    print(f"all {len(rels)} sequences: median relative L2 {np.median(rels):.2e}, worst {max(rels):.2e}, "
          f"mean top-1 {np.mean(top1s):.4f}, worst top-1 {min(top1s):.3f}")
    # Greedy generation, teacher-forced: with the same tokens before it, the engine picks the
    # reference's next token at each step up to the first whose reference margin (top-1 minus top-2)
    # is too small to decide.
    for g in meta["generations"]:
        j = g["prompt"]
        start = len(meta["texts"][j]["ids"]) - 1
        full = ref[f"generate.{j}.logits"]
        top2 = np.sort(full, axis=-1)[:, -2:]
        margins = (top2[:, 1] - top2[:, 0])[start:-1]
        picks = engine_logits(binary, model_dir, g["ids"], flags).argmax(-1)[start:-1]
        want = np.array(g["ids"][start + 1:])
        decided = int(np.argmax(margins < 1e-2)) if (margins < 1e-2).any() else len(want)
        same = int(np.argmax(picks != want)) if (picks != want).any() else len(want)
        print(f"greedy {j}: engine follows transformers for {same} of {len(want)} tokens "
              f"({decided} decidable by margin >= 1e-2){'' if same >= decided else '  MISMATCH'}")

if __name__ == "__main__":
    main()
