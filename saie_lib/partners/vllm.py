"""Partners on vLLM.

`VllmPartner` (config `partner: vllm:<model>`): the API partner (partners.api.OpenAIChatPartner: retries, outage
wait, unusable replies) against a vLLM OpenAI-compatible server, and so the same remark cache. With
`partner_base_url` it uses the server there (e.g. a 7B or 70B partner on a GPU machine); without, it starts one
itself on this machine at the first remark the cache lacks (saie_lib.vllm_server.shared_server: one per
process, stopped at exit). A remark's cache key names the model, where its weights came from and the dtype, not
the port, so cached remarks are found again by the next run.

A server this library started that dies during a batch is restarted (at most MAX_RESTARTS times per batch) and
only the conversations without a reply are asked again.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..vllm_server import ServerSpec, extra_args_from_env, require_vllm, shared_server
from . import IncompleteBatchError, Messages, Reply, Sampling
from .api import OpenAIChatPartner, _Failure

MAX_RESTARTS = 2


class VllmPartner(OpenAIChatPartner):
    """`vllm:<model>`: see the module doc. `spec` (a server to start) or `base_url` (one that runs)."""

    def __init__(self, model: str, *, spec: ServerSpec | None = None, base_url: str | None = None,
                 weights_id: str | None = None, api_key_env: str | None = None, **patience: Any):
        if (spec is None) == (base_url is None):
            raise ValueError("VllmPartner needs a server spec to start or the base_url of a running server")
        key_env = api_key_env if api_key_env and os.environ.get(api_key_env) else None  # a key only when set
        super().__init__(model, base_url=base_url or "http://127.0.0.1:0/v1", api_key_env=key_env, **patience)
        self.spec, self.server = spec, None
        self._model_id = f"vllm:{model}@{weights_id or self.base_url}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def __repr__(self) -> str:
        return f"VllmPartner(model={self.model!r}, model_id={self.model_id!r})"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        replies: dict[int, Reply] = {}
        pending = list(range(len(conversations)))
        for attempt in range(MAX_RESTARTS + 1):
            self._ensure_server()
            try:
                fresh = super().chat([conversations[i] for i in pending], sampling)
            except IncompleteBatchError as error:
                replies.update({pending[i]: reply for i, reply in error.replies.items()})
                pending = [pending[i] for i in error.failed]
                if not self._server_died() or attempt == MAX_RESTARTS:
                    raise IncompleteBatchError(self._message(str(error)), replies, pending) from None
                continue
            replies.update(zip(pending, fresh))
            break
        return [replies[i] for i in range(len(conversations))]

    def _ensure_server(self) -> None:
        """Start (or restart) the library's server and point requests at it (its port changes on a restart,
        which an engine sharing the server may have made)."""
        if self.spec is not None:
            self.server = shared_server(self.spec)
            self.base_url = self.server.base_url

    def _server_died(self) -> bool:
        return self.server is not None and not self.server.alive()

    def _message(self, error: str) -> str:
        return f"{error} {self.server.log_tail()}" if self._server_died() else error

    def _outage_pause_s(self, failures: dict[int, _Failure], round_index: int, deadline: float) -> float | None:
        """A server this library started that died is restarted at once, not waited for."""
        return None if self._server_died() else super()._outage_pause_s(failures, round_index, deadline)


def vllm_partner(model: str, *, base_url: str | None = None, device: str = "auto", api_key_env: str | None = None,
                 **patience: Any) -> VllmPartner:
    """`partner: vllm:<model>`: the server at `base_url`, or one this library starts for `model` (an alias, Hub
    id or local folder, in the dtype an HF partner would load: float32 on CPU, bfloat16 on CUDA)."""
    if base_url:
        return VllmPartner(model, base_url=base_url, api_key_env=api_key_env, **patience)
    from ..engines import serving_dtype
    from ..models import resolve_model

    require_vllm()
    resolved = resolve_model(model)
    dtype = serving_dtype("auto", device)
    spec = ServerSpec(os.path.realpath(resolved.path), served_name=model, dtype=dtype,
                      extra_args=extra_args_from_env())
    return VllmPartner(model, spec=spec, weights_id=f"{resolved.source}/{dtype}", **patience)

