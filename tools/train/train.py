#!/usr/bin/env python3
"""Train the default model: a small BitNet b1.58 decoder (the 2B-4T architecture) with
quantisation-aware training on the corpus of prepare_corpus.py, then export it as a packed
Hugging Face checkpoint, check it with transformers and record reference logits.

    python3 tools/train/train.py --corpus scratch/corpus --out OUT [--train-seconds 420]

Writes into OUT: model/ (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
generation_config.json), reference/ (reference.safetensors, reference.json) and train_log.json
(the loss curve, the run's figures, the checks). The schedule is set in wall-clock time: warmup,
then cosine decay, over --train-seconds after compilation. --bench-shapes and --lr-sweep are the
short experiments that chose the shape and learning rate (see tools/train/README.md).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import export  # noqa: E402
from model import BitNetLM, ModelConfig  # noqa: E402


def bf16_autocast(enabled):
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_shape(text, vocab, ctx, dropout=0.0):
    """HIDDENxFFNxLAYERS; heads of 64, a quarter as many key/value heads (2B-4T's ratio)."""
    hidden, ffn, layers = (int(v) for v in text.split("x"))
    heads = hidden // 64
    return ModelConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                       max_position_embeddings=ctx, dropout=dropout)


def make_optimizer(model, lr, wd, fused):
    ternary = set(id(p) for p in model.ternary_parameters())
    decay = [p for p in model.parameters() if id(p) in ternary]
    other = [p for p in model.parameters() if id(p) not in ternary]
    groups = [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, **kwargs)


def lr_at(frac, peak, warmup_frac, min_ratio):
    if frac < warmup_frac:
        return peak * frac / warmup_frac
    t = min(1.0, (frac - warmup_frac) / (1.0 - warmup_frac))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


@torch.no_grad()
def mean_loss(forward, x, y, batch, autocast):
    """Mean next-token loss over windows x/y, by any callable ids -> logits."""
    total, count = 0.0, 0
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with bf16_autocast(autocast):
            logits = forward(xb)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                 reduction="sum").item()
        count += yb.numel()
    return total / count


def train(model, step_fn, opt, streams, args, peak_lr, seconds, device, tag):
    """One run of the time-based schedule; returns its curve and figures, and leaves in the model
    the weights of the evaluation with the lowest validation loss (early stopping)."""
    train_stream, (val_x, val_y), (heldout_x, heldout_y) = streams
    best_val, best_state, best_step = float("inf"), None, 0
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    curve, evals = [], []
    step, tokens, window_loss, window_steps = 0, 0, torch.zeros((), device=device), 0
    eval_batch = max(1, args.batch // 2)
    t0 = time.time()
    next_eval = 0.0
    while True:
        elapsed = time.time() - t0
        frac = elapsed / seconds
        if elapsed >= next_eval or frac >= 1.0:
            model.eval()
            v = mean_loss(model, val_x, val_y, eval_batch, autocast=device == "cuda")
            h = mean_loss(model, heldout_x, heldout_y, eval_batch, autocast=device == "cuda")
            model.train()
            evals.append({"step": step, "tokens": tokens, "time": round(time.time() - t0, 2), "val_loss": v,
                          "heldout_loss": h})
            log(f"{tag} step {step:6d} tokens {tokens / 1e6:8.1f}M val {v:.4f} heldout {h:.4f}")
            if v < best_val:
                best_val, best_step = v, step
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            next_eval += args.eval_seconds
        if frac >= 1.0:
            break
        lr = lr_at(frac, peak_lr, args.warmup_frac, args.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = data.random_windows(train_stream, args.batch, args.ctx, gen)
        loss = step_fn(x, y)
        window_loss += loss.detach()
        window_steps += 1
        step += 1
        tokens += x.numel()
        if step % args.log_steps == 0:
            train_loss = (window_loss / window_steps).item()  # also keeps the host near the GPU
            curve.append({"step": step, "tokens": tokens, "time": round(time.time() - t0, 2), "lr": lr,
                          "train_loss": train_loss})
            window_loss.zero_()
            window_steps = 0
            if step % (args.log_steps * 10) == 0:
                log(f"{tag} step {step:6d} tokens {tokens / 1e6:8.1f}M lr {lr:.2e} train {train_loss:.4f} "
                    f"{tokens / (time.time() - t0) / 1e6:.2f}M tok/s")
    torch.cuda.synchronize() if device == "cuda" else None
    seconds_run = time.time() - t0
    if best_step != step:
        log(f"{tag} keeping the weights of step {best_step} (val {best_val:.4f})")
        model.load_state_dict(best_state)
    return {"steps": step, "tokens": tokens, "seconds": round(seconds_run, 1), "curve": curve, "evals": evals,
            "tokens_per_second": tokens / seconds_run, "best_step": best_step, "best_val_loss": best_val}


def make_step_fn(model, opt, args, device):
    def loss_of(x, y):
        with bf16_autocast(device == "cuda"):
            return model(x, y)

    compiled = torch.compile(loss_of) if args.compile else loss_of

    def step(x, y):
        loss = compiled(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def warm_up(x, y):  # compile forward and backward without touching the weights
        loss = compiled(x, y)
        loss.backward()
        opt.zero_grad(set_to_none=True)

    return step, warm_up


def bench_shapes(args, train_stream, device):
    results = []
    for shape in args.bench_shapes.split(","):
        cfg = parse_shape(shape, args.vocab, args.ctx)
        model = BitNetLM(cfg).to(device)
        opt = make_optimizer(model, 1e-4, args.wd, fused=device == "cuda")
        step, warm_up = make_step_fn(model, opt, args, device)
        gen = torch.Generator(device=device)
        gen.manual_seed(0)
        t = time.time()
        for _ in range(2):
            warm_up(*data.random_windows(train_stream, args.batch, args.ctx, gen))
        step(*data.random_windows(train_stream, args.batch, args.ctx, gen))
        torch.cuda.synchronize()
        compile_s = time.time() - t
        n = 15
        t = time.time()
        for _ in range(n):
            loss = step(*data.random_windows(train_stream, args.batch, args.ctx, gen))
        loss.item()
        dt = (time.time() - t) / n
        row = {"shape": shape, **model.count_parameters(), "step_s": round(dt, 4),
               "tokens_per_s": round(args.batch * args.ctx / dt), "compile_s": round(compile_s, 1),
               "max_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1)}
        log(f"bench {row}")
        results.append(row)
        del model, opt, step, warm_up
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return results


def verify_with_transformers(model_dir, heldout_x, heldout_y, device):
    """Held-out loss of the exported checkpoint as transformers' BitNetForCausalLM computes it."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    layer = hf.model.layers[0].self_attn.q_proj
    loss = mean_loss(lambda ids: hf(ids).logits, heldout_x, heldout_y, 16, autocast=False)
    return loss, type(layer).__name__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="scratch/corpus")
    ap.add_argument("--out", default=os.environ.get("OUT", "scratch/train/out"))
    ap.add_argument("--name", default="debdocs-41m", help="the model's name in reference.json")
    ap.add_argument("--tokenizer", help="an existing tokenizer.json (default: train one on the corpus)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--shape", default="640x1728x9", help="HIDDENxFFNxLAYERS")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=128, help="sequences per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout in training")
    ap.add_argument("--train-seconds", type=float, default=430)
    ap.add_argument("--eval-seconds", type=float, default=20)
    ap.add_argument("--log-steps", type=int, default=10)
    ap.add_argument("--val-every", type=int, default=100, help="every N-th training document validates")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--bench-shapes", help="comma-separated shapes: time a few steps of each, then go on")
    ap.add_argument("--lr-sweep", help="comma-separated peak learning rates, --train-seconds each; the "
                                       "best is exported")
    ap.add_argument("--max-train-docs", type=int, help="use only this many training documents (smoke tests)")
    ap.add_argument("--no-reference", dest="reference", action="store_false")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    run_log = {"args": vars(args), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "torch": torch.__version__}
    t_start = time.time()

    corpus_docs = data.read_documents(args.corpus, "train")
    heldout_docs = data.read_documents(args.corpus, "heldout")
    if args.max_train_docs:
        corpus_docs = corpus_docs[: args.max_train_docs]
    # Every val_every-th document of the training file is kept out of training for early stopping,
    # so the held-out set stays untouched by any choice.
    val_docs = corpus_docs[args.val_every - 1::args.val_every]
    train_docs = [d for i, d in enumerate(corpus_docs) if i % args.val_every != args.val_every - 1]
    log(f"{len(train_docs)} training, {len(val_docs)} validation, {len(heldout_docs)} held-out documents")
    if args.tokenizer:
        tok = data.load_tokenizer(args.tokenizer)
    else:
        tok = data.train_tokenizer(train_docs, args.vocab)
        log(f"tokenizer trained in {time.time() - t_start:.1f} s")
    if tok.get_vocab_size() != args.vocab:
        raise SystemExit(f"tokenizer has {tok.get_vocab_size()} tokens, --vocab is {args.vocab}")
    data.write_tokenizer_files(tok, model_dir, args.ctx)
    bos, eos, eot = (tok.token_to_id(t) for t in data.SPECIAL_TOKENS)
    t = time.time()
    train_stream = data.token_stream(tok, train_docs).to(device)
    val_stream = data.token_stream(tok, val_docs).to(device)
    heldout_stream = data.token_stream(tok, heldout_docs).to(device)
    train_bytes = sum(len(d.encode()) for d in train_docs)
    heldout_bytes = sum(len(d.encode()) for d in heldout_docs)
    run_log["data"] = {"train_docs": len(train_docs), "train_tokens": train_stream.numel(), "train_bytes": train_bytes,
                       "val_docs": len(val_docs), "val_tokens": val_stream.numel(),
                       "heldout_docs": len(heldout_docs), "heldout_tokens": heldout_stream.numel(),
                       "heldout_bytes": heldout_bytes, "bytes_per_token": train_bytes / train_stream.numel()}
    log(f"tokenized in {time.time() - t:.1f} s: {run_log['data']}")
    heldout_x, heldout_y = data.eval_windows(heldout_stream, args.ctx)
    val_x, val_y = data.eval_windows(val_stream, args.ctx)
    # A fixed sample of training windows of the same size, for the final train loss.
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed + 1)
    train_eval_x, train_eval_y = data.random_windows(train_stream, heldout_x.shape[0], args.ctx, gen)

    if args.bench_shapes:
        run_log["bench"] = bench_shapes(args, train_stream, device)

    cfg = parse_shape(args.shape, args.vocab, args.ctx, args.dropout)
    model = BitNetLM(cfg).to(device)
    run_log["model"] = {**cfg.to_dict(), "params": model.count_parameters()}
    log(f"model {run_log['model']}")
    opt = make_optimizer(model, args.lr, args.wd, fused=device == "cuda")
    step, warm_up = make_step_fn(model, opt, args, device)
    t = time.time()
    gen.manual_seed(0)
    for _ in range(2):
        warm_up(*data.random_windows(train_stream, args.batch, args.ctx, gen))
    torch.cuda.synchronize() if device == "cuda" else None
    run_log["compile_seconds"] = round(time.time() - t, 1)
    log(f"compiled in {run_log['compile_seconds']} s")

    lrs = [float(v) for v in args.lr_sweep.split(",")] if args.lr_sweep else [args.lr]
    runs, best = [], None
    for lr in lrs:
        if len(lrs) > 1:
            torch.manual_seed(args.seed)
            model.reset_parameters()
            opt.state.clear()
        result = train(model, step, opt, (train_stream, (val_x, val_y), (heldout_x, heldout_y)), args, lr,
                       args.train_seconds, device, f"lr {lr:.0e}")
        result["lr"] = lr
        runs.append(result)
        if best is None or result["best_val_loss"] < best[0]:
            best = (result["best_val_loss"], lr, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if len(lrs) > 1:
        log("sweep (best validation loss): " + ", ".join(f"lr {r['lr']:.0e}: {r['best_val_loss']:.4f}" for r in runs))
        model.load_state_dict(best[2])
    run_log["runs"] = runs

    model.eval()
    final = {"val_loss_fp32": mean_loss(model, val_x, val_y, 64, autocast=False),
             "train_loss_bf16": mean_loss(model, train_eval_x, train_eval_y, 64, autocast=device == "cuda"),
             "heldout_loss_bf16": mean_loss(model, heldout_x, heldout_y, 64, autocast=device == "cuda"),
             "train_loss_fp32": mean_loss(model, train_eval_x, train_eval_y, 64, autocast=False),
             "heldout_loss_fp32": mean_loss(model, heldout_x, heldout_y, 64, autocast=False)}
    export.export_checkpoint(model, model_dir, bos, eos, eot)
    final["model_bytes"] = sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir))
    exported = BitNetLM(cfg).to(device).eval()
    export.load_exported_into(exported, model_dir)
    final["heldout_loss_exported_fp32"] = mean_loss(exported, heldout_x, heldout_y, 64, autocast=False)
    log(f"final {final}")
    run_log["final"] = final
    # transformers' BitNet code wraps small functions in torch.compile; compiling them on the CPU
    # costs about a minute and changes nothing in what they compute.
    torch._dynamo.config.disable = True
    try:
        hf_loss, layer_class = verify_with_transformers(model_dir, heldout_x, heldout_y, device)
        final.update({"heldout_loss_transformers_fp32": hf_loss, "heldout_ppl_transformers": math.exp(hf_loss),
                      "transformers_linear_class": layer_class,
                      "transformers_vs_exported": abs(hf_loss - final["heldout_loss_exported_fp32"])})
        log(f"transformers: held-out loss {hf_loss:.5f}, perplexity {math.exp(hf_loss):.3f} ({layer_class})")
    except Exception as e:  # keep the exported model and the log even if the check breaks
        final["transformers_error"] = repr(e)
        log(f"transformers check failed: {e!r}")
    if args.reference:
        try:
            t = time.time()
            meta = export.write_reference(model_dir, os.path.join(args.out, "reference"), args.name)
            for g in meta["generations"]:
                log(f"greedy {g['prompt']}: {export.REFERENCE_PROMPTS[g['prompt']]!r} -> {g['decoded']!r} "
                    f"(min margin {g['min_margin']:.3f})")
            run_log["reference_seconds"] = round(time.time() - t, 1)
        except Exception as e:
            run_log["reference_error"] = repr(e)
            log(f"reference failed: {e!r}")
    run_log["total_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(run_log, f, indent=1)
    log(f"done in {run_log['total_seconds']} s")


if __name__ == "__main__":
    main()
