"""IP-Adapter cross-attention with a per-ROW image scale λ_ip, so one batched UNet call can mix rows.

IP-Adapter's decoupled cross-attention (Ye et al. 2023, Eq. 5) adds an image branch to every
cross-attention layer of the UNet:

    Z = Attn(Q, K_text, V_text) + λ_ip · Attn(Q, K_img, V_img),   K_img = c_img W'_k,  V_img = c_img W'_v

diffusers' ``IPAdapterAttnProcessor2_0`` holds λ_ip per *layer* (``set_ip_adapter_scale``), the same for
every row of the batch, and its unconditional rows see the embeddings of a blank image, which still
give a non-zero image branch. A guidance step that batches a text-only row with a render-conditioned
row (AnchorDS, ISD) needs λ_ip per *row*, and "no image" must be exactly the text-only network.
``RowScaledIPAttnProcessor`` does that: the image branch is computed only for the rows listed in the
shared ``IPRows`` and added, times their own λ_ip, with ``index_add``; every other row goes through
exactly the text-only arithmetic of diffusers' ``AttnProcessor2_0``. The K/V projections are the
adapter's own ``to_k_ip`` / ``to_v_ip`` modules (shared, so fine-tuning them here trains the adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class IPRows:
    """The image tokens of the current UNet call, set by the prior for exactly one call.

    ``rows`` [K] (long) are the batch rows that see an image; ``tokens`` [K, M, D] their projected image
    tokens; ``scale`` [K] their λ_ip. ``rows is None`` means no row sees an image.
    """

    rows: Tensor | None = None
    tokens: Tensor | None = None
    scale: Tensor | None = None


class RowScaledIPAttnProcessor(nn.Module):
    """Cross-attention processor: text attention for every row plus λ_ip[i] · image attention for the
    rows in ``state``. Equal to diffusers' ``IPAdapterAttnProcessor2_0`` when every row has the same λ_ip,
    and to ``AttnProcessor2_0`` (bit for bit) on rows without an image."""

    def __init__(self, to_k_ip: nn.Linear, to_v_ip: nn.Linear, state: IPRows) -> None:
        super().__init__()
        self.to_k_ip = to_k_ip
        self.to_v_ip = to_v_ip
        self.state = state

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None) -> Tensor:
        if (encoder_hidden_states is None or hidden_states.ndim != 3 or attn.spatial_norm is not None
                or attn.group_norm is not None or attn.norm_cross or attn.norm_q is not None):
            raise ValueError("RowScaledIPAttnProcessor serves Stable Diffusion's plain cross-attention only")
        residual = hidden_states
        batch, _, _ = hidden_states.shape  # [B, L, C]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(x.shape[0], -1, attn.heads, head_dim).transpose(1, 2)
                             for x in (query, key, value))  # [B, heads, L, d]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)  # [B, L, inner]
        if self.state.rows is not None:
            out = out.index_add(0, self.state.rows, self._image_branch(attn, query, head_dim))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _image_branch(self, attn: nn.Module, query: Tensor, head_dim: int) -> Tensor:
        """λ_ip · Attn(Q, K_img, V_img) for the image rows only. [K, L, inner]"""
        s = self.state
        q = query[s.rows]  # [K, heads, L, d]
        k, v = (p(s.tokens).view(s.tokens.shape[0], -1, attn.heads, head_dim).transpose(1, 2)
                for p in (self.to_k_ip, self.to_v_ip))  # [K, heads, M, d]
        ip = F.scaled_dot_product_attention(q, k, v)
        ip = ip.transpose(1, 2).reshape(q.shape[0], -1, attn.heads * head_dim).to(query.dtype)
        return s.scale.to(ip.dtype)[:, None, None] * ip  # IP-Adapter Eq. 5, λ_ip per row


def install_row_scaled_processors(unet: nn.Module, state: IPRows) -> dict[str, RowScaledIPAttnProcessor]:
    """Replace every diffusers IP-Adapter processor of ``unet`` by a ``RowScaledIPAttnProcessor`` sharing
    its K/V weights and ``state``. Returns the new processors by attention-layer name
    (``"up_blocks.3.attentions.2.transformer_blocks.0.attn2"``)."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    processors = dict(unet.attn_processors)
    installed = {}
    for name, proc in processors.items():
        if isinstance(proc, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
            if len(proc.to_k_ip) != 1:
                raise ValueError("only one IP-Adapter at a time is supported")
            new = RowScaledIPAttnProcessor(proc.to_k_ip[0], proc.to_v_ip[0], state)
            processors[name] = new
            installed[name.removesuffix(".processor")] = new
    unet.set_attn_processor(processors)
    return installed
