"""The tiny InternVL of the Iris demo, in plain PyTorch, written to match docs/model.md exactly.

InternViT (pre-norm, LayerNorm eps 1e-6, fused qkv with bias, ls1/ls2 layer scale, exact GELU,
CLS + position embedding, no final norm) -> drop CLS -> pixel shuffle v2 (downsample 0.5) ->
mlp1 (LayerNorm eps 1e-5 -> Linear -> GELU -> Linear) -> InternLM2 decoder (RMSNorm eps 1e-5,
fused interleaved wqkv [kv_head][q_0..q_{g-1}, k, v][head_dim], GQA, NeoX rotate_half RoPE,
SiLU MLP w1/w3/w2, untied output).  <IMG_CONTEXT> embeddings are replaced by the visual tokens
in order.  Module names equal the real checkpoint tensor names (state_dict() is exportable as is).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

DEFAULT_CONFIG = {
    "image_size": 224, "patch_size": 28, "downsample_ratio": 0.5,
    "vit_hidden": 192, "vit_layers": 4, "vit_heads": 6, "vit_mlp": 768,
    "llm_hidden": 256, "llm_layers": 4, "llm_heads": 4, "llm_kv_heads": 2, "llm_mlp": 704,
    "rope_theta": 10000.0, "vocab_size": None,  # vocab_size from the tokenizer
}


def gelu(x):
    return F.gelu(x)  # exact erf GELU (approximate='none')


# ----------------------------------------------------------------------------- InternViT

class VisionEmbeddings(nn.Module):
    def __init__(self, c, image_size, patch):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.randn(1, 1, c) * 0.02)
        self.patch_embedding = nn.Conv2d(3, c, kernel_size=patch, stride=patch)
        n = (image_size // patch) ** 2
        self.position_embedding = nn.Parameter(torch.randn(1, n + 1, c) * 0.02)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values)           # [B, C, g, g]
        x = x.flatten(2).transpose(1, 2)                 # [B, g*g, C] row-major
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        # The position grid always equals the patch grid here (force_image_size == image_size):
        # the reference's bicubic interpolation is the identity.
        return x + self.position_embedding


class VisionAttention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(c, 3 * c, bias=True)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        b, n, c = x.shape
        d = c // self.heads
        qkv = self.qkv(x).view(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q * (d ** -0.5)) @ k.transpose(-1, -2)
        att = att.softmax(dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class VisionMLP(nn.Module):
    def __init__(self, c, inter):
        super().__init__()
        self.fc1 = nn.Linear(c, inter)
        self.fc2 = nn.Linear(inter, c)

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, c, heads, inter):
        super().__init__()
        self.norm1 = nn.LayerNorm(c, eps=1e-6)
        self.attn = VisionAttention(c, heads)
        self.ls1 = nn.Parameter(torch.full((c,), 0.1))
        self.norm2 = nn.LayerNorm(c, eps=1e-6)
        self.mlp = VisionMLP(c, inter)
        self.ls2 = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) * self.ls1
        x = x + self.mlp(self.norm2(x)) * self.ls2
        return x


class VisionEncoder(nn.Module):
    def __init__(self, c, layers, heads, inter):
        super().__init__()
        self.layers = nn.ModuleList([VisionLayer(c, heads, inter) for _ in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class InternVisionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = VisionEmbeddings(cfg["vit_hidden"], cfg["image_size"], cfg["patch_size"])
        self.encoder = VisionEncoder(cfg["vit_hidden"], cfg["vit_layers"], cfg["vit_heads"], cfg["vit_mlp"])

    def forward(self, pixel_values):
        return self.encoder(self.embeddings(pixel_values))  # select_layer -1, no final norm


def pixel_shuffle_v2(x, scale=0.5):
    """x [N, w, h, C] -> [N, w*s, h*s, C/(s*s)], exactly the reference's view/permute sequence."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    x = x.permute(0, 2, 1, 3).contiguous()  # ps_version v2
    return x


# ----------------------------------------------------------------------------- InternLM2

class RMSNorm(nn.Module):
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(positions, dim, base):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    t = positions.float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class InternLM2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.kv = cfg["llm_heads"], cfg["llm_kv_heads"]
        self.d = cfg["llm_hidden"] // self.h
        self.g = self.h // self.kv
        self.wqkv = nn.Linear(cfg["llm_hidden"], (self.h + 2 * self.kv) * self.d, bias=False)
        self.wo = nn.Linear(self.h * self.d, cfg["llm_hidden"], bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        qkv = self.wqkv(x).view(b, t, self.kv, self.g + 2, self.d)
        qkv = qkv.permute(0, 2, 3, 1, 4)                       # [b, kv, g+2, t, d]
        q = qkv[:, :, :self.g]                                 # query head kvh*g + i
        k = qkv[:, :, self.g:self.g + 1]                       # [b, kv, 1, t, d]
        v = qkv[:, :, self.g + 1:]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:  # (k, v) of the earlier positions, rotated
            if cache:
                k = torch.cat([cache[0], k], dim=3)
                v = torch.cat([cache[1], v], dim=3)
            cache[:] = [k, v]
        # GQA without repeating K/V: each KV head's G query heads share one matmul.
        att = (q * (1.0 / math.sqrt(self.d))) @ k.transpose(-1, -2)   # [b, kv, g, t, t]
        att = (att + mask).softmax(dim=-1)
        out = att @ v                                           # [b, kv, g, t, d]
        out = out.permute(0, 3, 1, 2, 4).reshape(b, t, self.h * self.d)
        return self.wo(out)


class InternLM2MLP(nn.Module):
    def __init__(self, c, inter):
        super().__init__()
        self.w1 = nn.Linear(c, inter, bias=False)
        self.w3 = nn.Linear(c, inter, bias=False)
        self.w2 = nn.Linear(inter, c, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class InternLM2Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = InternLM2Attention(cfg)
        self.feed_forward = InternLM2MLP(cfg["llm_hidden"], cfg["llm_mlp"])
        self.attention_norm = RMSNorm(cfg["llm_hidden"])
        self.ffn_norm = RMSNorm(cfg["llm_hidden"])

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, cache)
        return x + self.feed_forward(self.ffn_norm(x))


class InternLM2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg["vocab_size"], cfg["llm_hidden"])
        self.layers = nn.ModuleList([InternLM2Layer(cfg) for _ in range(cfg["llm_layers"])])
        self.norm = RMSNorm(cfg["llm_hidden"])


class InternLM2ForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.model = InternLM2Model(cfg)
        self.output = nn.Linear(cfg["llm_hidden"], cfg["vocab_size"], bias=False)


# ----------------------------------------------------------------------------- InternVL

class InternVL(nn.Module):
    def __init__(self, cfg, img_context_id):
        super().__init__()
        self.cfg = dict(cfg)
        self.img_context_id = img_context_id
        self.vision_model = InternVisionModel(cfg)
        vit = cfg["vit_hidden"]
        r = int(1 / cfg["downsample_ratio"])
        self.mlp1 = nn.Sequential(nn.LayerNorm(vit * r * r), nn.Linear(vit * r * r, cfg["llm_hidden"]), nn.GELU(),
                                  nn.Linear(cfg["llm_hidden"], cfg["llm_hidden"]))
        self.language_model = InternLM2ForCausalLM(cfg)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def num_image_token(self):
        g = self.cfg["image_size"] // self.cfg["patch_size"]
        return int(g * g * self.cfg["downsample_ratio"] ** 2)

    def extract_feature(self, pixel_values):
        vit = self.vision_model(pixel_values)[:, 1:, :]
        n, t, c = vit.shape
        h = w = int(t ** 0.5)
        vit = vit.reshape(n, h, w, c)
        vit = pixel_shuffle_v2(vit, self.cfg["downsample_ratio"])
        vit = vit.reshape(n, -1, vit.shape[-1])
        return self.mlp1(vit)

    def embed(self, input_ids, pixel_values):
        emb = self.language_model.model.tok_embeddings(input_ids)
        if pixel_values is not None and pixel_values.shape[0] > 0:
            vis = self.extract_feature(pixel_values).reshape(-1, emb.shape[-1])
            sel = input_ids == self.img_context_id
            assert int(sel.sum()) == vis.shape[0], (int(sel.sum()), vis.shape)
            emb = emb.clone()
            emb[sel] = vis.to(emb.dtype)
        return emb

    def hidden(self, emb, attn_pad=None):
        """emb [B, T, H] -> final-normed hidden [B, T, H]; attn_pad [B, T] bool (True = real token)."""
        b, t, _ = emb.shape
        d = self.cfg["llm_hidden"] // self.cfg["llm_heads"]
        cos, sin = rope_cos_sin(torch.arange(t), d, self.cfg["rope_theta"])
        mask = torch.full((t, t), float("-inf")).triu(1)
        if attn_pad is not None:
            mask = mask + torch.where(attn_pad, 0.0, float("-inf"))[:, None, None, :]
            mask = mask.clamp(min=-1e9)  # padded rows stay finite
        x = emb
        for layer in self.language_model.model.layers:
            x = layer(x, cos, sin, mask)
        return self.language_model.model.norm(x)

    def logits(self, h):
        return self.language_model.output(h)

    def hidden_cached(self, emb, caches, start):
        """Incremental forward of emb [1, t, H] at positions start.. with per-layer KV caches."""
        t = emb.shape[1]
        d = self.cfg["llm_hidden"] // self.cfg["llm_heads"]
        cos, sin = rope_cos_sin(torch.arange(start, start + t), d, self.cfg["rope_theta"])
        mask = torch.full((t, start + t), float("-inf")).triu(start + 1)
        x = emb
        for layer, cache in zip(self.language_model.model.layers, caches):
            x = layer(x, cos, sin, mask, cache)
        return self.language_model.model.norm(x)

    @torch.no_grad()
    def greedy(self, input_ids, pixel_values, im_end_id, max_new_tokens=64):
        """Greedy decoding of one prompt (list of ids), KV cached. Stops at <|im_end|> (not included)."""
        ids = torch.tensor([input_ids])
        emb = self.embed(ids, pixel_values)
        caches = [[] for _ in self.language_model.model.layers]
        h = self.hidden_cached(emb, caches, 0)
        pos = emb.shape[1]
        out = []
        for _ in range(max_new_tokens):
            nxt = int(self.logits(h[:, -1]).argmax(-1))
            if nxt == im_end_id:
                break
            out.append(nxt)
            e = self.language_model.model.tok_embeddings(torch.tensor([[nxt]]))
            h = self.hidden_cached(e, caches, pos)
            pos += 1
        return out

    @torch.no_grad()
    def greedy_nocache(self, input_ids, pixel_values, im_end_id, max_new_tokens=64):
        """The same as greedy() by full recomputation (a check of the cache)."""
        ids = torch.tensor([input_ids])
        emb = self.embed(ids, pixel_values)
        out = []
        for _ in range(max_new_tokens):
            h = self.hidden(emb)
            nxt = int(self.logits(h[:, -1]).argmax(-1))
            if nxt == im_end_id:
                break
            out.append(nxt)
            e = self.language_model.model.tok_embeddings(torch.tensor([[nxt]]))
            emb = torch.cat([emb, e], dim=1)
        return out
