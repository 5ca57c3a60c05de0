"""SMEAR layer for a causal LM: route each example on its prompt, then merge the experts in parameter space.

The route of position t is softmax(W_g · mean of the example's prompt tokens at positions ≤ t), where the
prompt is what the model call's ``prompt_mask`` marks (see below). So:

- every position from the last prompt token on — the whole response — shares ONE route, the prompt's: that is
  SMEAR's instance-level merge, Ā = Σ p_i A_i, B̄ = Σ p_i B_i, applied to those tokens as s · B̄ Ā dropout(x);
- a position inside the prompt routes on the prompt tokens up to it, so no position ever depends on a later
  token, whether the loss covers the response only or the whole sequence. Those positions (all of the prompt but
  its last token) mix their experts per token, Σ_i p_i B_i (Σ_j p_j A_j x), which costs N LoRAs instead of one.

The router is linear, so the mean of W_g x over the prompt is the pooled logit; the router reads the clean x,
only the experts' input is dropped. The masks come from the model call through the pre-hook
``inject_adapter`` registers (``uses_attention_mask``/``uses_prompt_mask``): padding never counts, and the prompt
is, in this order of precedence,

1. the call's ``prompt_mask=`` keyword (1 on prompt tokens; the training batches carry it), or
2. every real token of a call that starts a sequence (nothing cached yet): a generation's prefill call IS the
   prompt; a plain forward without a prompt mask therefore routes each position on its prefix of real tokens,
3. none of the tokens of a call that continues a cached sequence (a decode step): those tokens are generated.

Each layer keeps the running prompt sum and count of its last call, so a decode step reuses the route its
prefill computed; teacher-forcing prompt + response with its ``prompt_mask`` gives the same logits as cached
generation. Generation without a KV cache re-runs the whole sequence without a prompt mask, which would count
the generated tokens as prompt: generate with the cache (``transformers``' default).
"""

from __future__ import annotations

import torch

from comol.methods.moe import ExpertsLayer
from comol.methods.smear.config import SMEARConfig


class SMEARLayer(ExpertsLayer):
    config_cls = SMEARConfig
    prefix = "smear"
    adapter_layer_names = ("smear_A", "smear_B", "smear_router")
    uses_attention_mask = True
    uses_prompt_mask = True

    def __init__(self, base_layer, config: SMEARConfig, adapter_name: str = "default"):
        super().__init__(base_layer, config, adapter_name)
        # Σ router logits over the prompt tokens seen so far (E, N) and their count (E,), from the last call.
        self._prompt_state: tuple[torch.Tensor, torch.Tensor] | None = None

    def prompt_tokens(self, examples: int, length: int, device: torch.device) -> torch.Tensor:
        """(E, T) bool: which of the call's current tokens are prompt tokens (see the module docstring)."""
        if self.prompt_mask is not None:
            mask = self.prompt_mask
            if mask.shape[0] != examples or mask.shape[1] < length:
                raise ValueError(
                    f"SMEARLayer: prompt_mask of shape {tuple(mask.shape)} does not fit {examples} examples of "
                    f"{length} tokens"
                )
            return mask[:, mask.shape[1] - length :].bool()
        return torch.full((examples, length), self.past_length == 0, dtype=torch.bool, device=device)

    def _past(self, examples: int, experts: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt sum and count this call continues from: zeros for a new sequence."""
        if self.past_length == 0:
            zeros = torch.zeros(examples, experts, device=device)
            return zeros, torch.zeros(examples, dtype=torch.long, device=device)
        state = self._prompt_state
        if state is None or state[0].shape[0] != examples:
            raise ValueError(
                f"SMEARLayer: this call continues a cached sequence ({self.past_length} tokens) but the layer holds "
                f"no route for its {examples} examples; start each generation with its whole prompt in one call"
            )
        return state

    def routes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For an (E, T, n) input: each position's route (E, T, N); the route after the call's last prompt token
        (E, N), which every later position shares; and which positions need their own route (E, T) bool: the
        real tokens before the last prompt token. Routes are float32."""
        examples, length = x.shape[0], x.shape[1]
        logits = self._get("smear_router")(x).float()  # (E, T, N): W_g x per token, on the clean x
        real = self.token_mask(examples, length)
        prompt = self.prompt_tokens(examples, length, x.device)
        if real is not None:
            prompt = prompt & real.bool()
        past_sum, past_count = self._past(examples, logits.shape[-1], x.device)
        sums = past_sum.unsqueeze(1) + (logits * prompt.unsqueeze(-1)).cumsum(1)
        counts = past_count.unsqueeze(1) + prompt.long().cumsum(1)
        self._prompt_state = (sums[:, -1].detach(), counts[:, -1])
        per_token = torch.softmax(sums / counts.clamp_min(1).unsqueeze(-1), dim=-1)
        final = torch.softmax(sums[:, -1] / counts[:, -1:].clamp_min(1), dim=-1)
        early = counts < counts[:, -1:]
        return per_token, final, early if real is None else early & real.bool()

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-2] if x.dim() > 1 else 1
        xe = x.reshape(-1, length, self.in_features)  # (E, T, n)
        per_token, final, early = self.routes(xe)
        dropped = self.dropout(xe)
        p = final.to(x.dtype)
        a_bar = torch.einsum("en,nrk->erk", p, self.expert_A())  # (E, r, n): Ā = Σ p_i A_i
        b_bar = torch.einsum("en,mnr->emr", p, self.expert_B())  # (E, m, r): B̄ = Σ p_i B_i
        out = torch.bmm(torch.bmm(dropped, a_bar.transpose(1, 2)), b_bar.transpose(1, 2))  # B̄ Ā x per token
        out = out.reshape(-1, self.out_features)
        rows = early.reshape(-1).nonzero().squeeze(-1)  # positions inside the prompt: a route of their own
        if rows.numel():
            tokens = dropped.reshape(-1, self.in_features).index_select(0, rows)
            routes = per_token.reshape(-1, per_token.shape[-1]).index_select(0, rows)
            out = out.index_copy(0, rows, self._per_token(tokens, routes))
        return out.reshape(*x.shape[:-1], self.out_features)

    def _per_token(self, x: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
        """Σ_i p_i B_i (Σ_j p_j A_j x) for tokens (U, n) with their own routes (U, N)."""
        p = routes.to(x.dtype)
        h = (self.A(x).unflatten(-1, (self.num_experts, self.config.r)) * p.unsqueeze(-1)).sum(-2)  # Ā x: (U, r)
        return self.B((p.unsqueeze(-1) * h.unsqueeze(-2)).flatten(-2))  # B̄ h: (U, m)

    def flops_per_token(self) -> int:
        """Per response token: its router logits (N·n) and Ā x, B̄ (Ā x). Not included: the per-example merge
        N·r·(n+m), shared by the example's tokens, and the extra cost of the prompt's positions before its last
        token, which mix per token at N·r·(n+m) each (how many they are depends on the data)."""
        r, n, m, N = self.config.r, self.in_features, self.out_features, self.num_experts
        return 2 * (N * n + r * (n + m))
