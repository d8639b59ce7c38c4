"""A BitNet b1.58 decoder with the architecture of microsoft/bitnet-b1.58-2B-4T, as Hugging Face
transformers' BitNetForCausalLM computes it, with quantisation-aware training.

Every projection inside the decoder layers is a BitLinear: its input is quantised per token to
int8 (absmax), its weight to ternary with one absmean scale per tensor; straight-through
estimators pass the gradient through both roundings. The forward pass computes what the exported
checkpoint computes in transformers: y = (x_q . w_t) * alpha / s_x, with alpha stored in bf16.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int = 4096
    hidden_size: int = 512
    intermediate_size: int = 1536
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    # Residual dropout, in training only (the exported model has none): the corpus is small
    # enough that the run sees it many times over.
    dropout: float = 0.0

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        return asdict(self)


def weight_scale(w):
    """The per-tensor absmean scale, rounded to bf16 because the checkpoint stores it so."""
    return w.detach().float().abs().mean().clamp(min=1e-5).to(torch.bfloat16).float()


def ternarize(w):
    """Ternary codes {-1, 0, 1} (float) and their scale, exactly as the export writes them."""
    alpha = weight_scale(w)
    return (w.detach().float() / alpha).round().clamp(-1, 1), alpha


def straight_through(x, q):
    """q forward, identity gradient to x backward."""
    return x + (q - x).detach()


class BitLinear(nn.Module):
    """Linear layer without bias whose forward is the BitNet b1.58 integer computation.

    The matrix product runs on integer-valued operands (|x_q| <= 128, w_t in {-1, 0, 1}), which
    bf16 holds exactly, so under autocast only the product's final rounding differs from the
    int32 result an inference engine computes.
    """

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        # Set when the weight holds an exported checkpoint's ternary values times its scale: the
        # absmean of those values is not the scale, so it must not be recomputed.
        self.fixed_scale = None

    def forward(self, x):
        x32 = x.float()
        s_x = (127.0 / x32.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)).detach()
        x_s = x32 * s_x
        x_q = straight_through(x_s, x_s.round().clamp(-128, 127))
        alpha = weight_scale(self.weight) if self.fixed_scale is None else self.fixed_scale
        w_s = self.weight / alpha
        w_t = straight_through(w_s, w_s.round().clamp(-1, 1))
        # Under autocast F.linear runs in bf16, which is exact for these integer-valued operands.
        return F.linear(x_q, w_t).float() * (alpha / s_x)


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        x = x.float()
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(cfg, length, device):
    """cos and sin [length, head_dim] in the NeoX half-split layout."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):  # x: [B, heads, T, d]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def causal_attention(q, k, v):
    """q [B, H, T, d], k/v [B, KV, T, d]; query head h uses key/value head h // (H / KV)."""
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[2]
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    return scores.softmax(-1) @ v.float()


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = BitLinear(h, cfg.num_attention_heads * d)
        self.k_proj = BitLinear(h, cfg.num_key_value_heads * d)
        self.v_proj = BitLinear(h, cfg.num_key_value_heads * d)
        self.o_proj = BitLinear(cfg.num_attention_heads * d, h)
        self.attn_sub_norm = RMSNorm(h, cfg.rms_norm_eps)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        d = self.cfg.head_dim
        q = self.q_proj(x).view(B, T, -1, d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = causal_attention(q, k, v)
        a = a.transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(self.attn_sub_norm(a))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = BitLinear(h, f)
        self.up_proj = BitLinear(h, f)
        self.down_proj = BitLinear(f, h)
        self.ffn_sub_norm = RMSNorm(f, cfg.rms_norm_eps)

    def forward(self, x):
        g = F.relu(self.gate_proj(x)).square() * self.up_proj(x)  # hidden_act "relu2"
        return self.down_proj(self.ffn_sub_norm(g))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)
        self.dropout = cfg.dropout

    def forward(self, h, cos, sin):
        p = self.dropout if self.training else 0.0
        h = h + F.dropout(self.self_attn(self.input_layernorm(h), cos, sin), p, self.training)
        return h + F.dropout(self.mlp(self.post_attention_layernorm(h)), p, self.training)


class BitNetLM(nn.Module):
    """Parameter names follow the Hugging Face checkpoint (model.* ; lm_head tied to the embedding)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.model.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.model.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.reset_parameters()

    def reset_parameters(self):
        std = self.cfg.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, ids, targets=None):
        T = ids.shape[1]
        cos, sin = rope_tables(self.cfg, T, ids.device)
        h = self.model.embed_tokens(ids).float()
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        h = self.model.norm(h)
        logits = F.linear(h, self.model.embed_tokens.weight)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def ternary_parameters(self):
        return [p for n, p in self.named_parameters() if n.endswith("_proj.weight")]

    def count_parameters(self):
        ternary = sum(p.numel() for p in self.ternary_parameters())
        total = sum(p.numel() for p in self.parameters())
        return {"ternary": ternary, "embedding": self.model.embed_tokens.weight.numel(),
                "norms": total - ternary - self.model.embed_tokens.weight.numel(), "total": total}
