"""Mixed precision for the training step, one small abstraction: which dtype the forward pass computes in, and
whether the loss is scaled.

- `fp32`: plain float32 (CPU default; nothing to do).
- `bf16`: autocast to bfloat16 where the device supports it (Ampere+ GPUs, CPUs with AVX-512 BF16); bf16 has
  float32's range, so no loss scaling.
- `fp16`: autocast to float16 with a gradient scaler (T4 and other pre-Ampere GPUs, where Unsloth loads the model
  in fp16): without scaling small gradients underflow to zero; the scaler skips a step whose gradients overflowed
  and lowers the scale, which is expected and counted, not an error.

`auto` picks bf16 on a CUDA device that supports it, fp16 on one that does not, and the dtype the model was
loaded in on CPU (fp32 unless a config asks otherwise). The LoRA weights and optimiser state stay float32
(`keep_trainable_fp32`).

The dtype a model is loaded in (config field `dtype`, `resolve_dtype`):
- `auto`: float32 on CPU, bfloat16 on CUDA. Committed runs were made with this rule, so it never changes.
- `native`: bfloat16 where the hardware computes it natively (a CPU with AVX-512 BF16 or AMX, a CUDA GPU from
  Ampere on), float32 elsewhere (bfloat16 emulated in software is slower than float32). On a 2-core AVX-512
  BF16 CPU it made SmolLM2-135M's prefill 1.9x and a LoRA step 1.3x faster (issue 14); it changes outputs.
- `float32`, `bfloat16`, `float16`: as named.
The resolved dtype and the reason are recorded in every run's model info (env.json).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of native bfloat16 arithmetic (oneDNN uses them)


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The flags of this CPU that mean native bfloat16 arithmetic; [] when it has none or they cannot be read
    (no /proc/cpuinfo: not Linux), so `native` falls back to float32 rather than guess."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in CPU_BF16_FLAGS if f in flags]


def resolve_dtype(requested: str, device: str) -> tuple[str, str]:
    """(dtype name, why) for loading a model on `device` ('cpu' or 'cuda'); see the module doc for the rules."""
    if requested not in ("auto", "native"):
        return requested, "set in the config"
    if requested == "auto":
        name = "bfloat16" if device == "cuda" else "float32"
        return name, f"auto: {name} on {device.upper()} ('native' picks bfloat16 where the hardware has it)"
    if device == "cuda":
        import torch

        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return ("bfloat16", "native: the GPU computes bfloat16") if native else \
            ("float32", "native: the GPU has no native bfloat16")
    flags = cpu_bf16_flags()
    return ("bfloat16", f"native: the CPU has {', '.join(flags)}") if flags else \
        ("float32", f"native: the CPU has none of {', '.join(CPU_BF16_FLAGS)}")


def keep_trainable_fp32(model: Any) -> int:
    """Trainable parameters (the LoRA weights) cast to float32 in place, so their updates and the optimiser
    state stay float32 when the frozen base is bfloat16 (peft does this by default; this makes it certain).
    Returns how many were cast."""
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def contiguous_head_input(model: Any) -> Any:
    """On CPU, a bfloat16/float16 matmul whose input is a strided view takes a slow path, and both callers of the
    output head hand it one: generation's prefill keeps only the last position (`hidden[:, -1:, :]`,
    logits_to_keep=1) and the training loss the target span (saie_lib.training). In bf16 with SmolLM2's 49152 x 576
    head, the strided matmul took 1.9 s and 1.7 GB for a 32-row prefill that takes 0.005 s contiguous
    (results/bench/head-input-*.json; pytorch/pytorch#151934 is the same for bmm). A forward pre-hook on the output
    head makes its input contiguous. A prefill's logits come out bit-identical (tested: same greedy tokens); a
    loss over many positions rounds differently, so a model trained with the hook differs from one trained without.
    Installed for reduced-precision models on CPU only; returns the hook's handle, None where it was not."""
    import torch

    head = model.get_output_embeddings()
    if head is None or model.device.type != "cpu" or model.dtype not in (torch.bfloat16, torch.float16):
        return None
    return head.register_forward_pre_hook(lambda _, args: tuple(a.contiguous() if torch.is_tensor(a) else a
                                                                for a in args))


def resolve_precision(requested: str, device_type: str, model_dtype: str = "float32") -> str:
    """The precision a step runs in: `requested` unless it is 'auto'."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bfloat16": "bf16", "float16": "fp16"}.get(model_dtype, "fp32")


@dataclass
class StepPrecision:
    """Autocast and (for fp16) a gradient scaler for one device; `skipped_steps` counts overflowed fp16 steps."""

    name: str
    device_type: str
    scaler: Any = None
    skipped_steps: int = field(default=0)

    @classmethod
    def create(cls, name: str, device_type: str) -> "StepPrecision":
        import torch

        scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None
        return cls(name, device_type, scaler)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.name == "fp32":
            yield
            return
        import torch

        with torch.autocast(self.device_type, dtype=getattr(torch, _DTYPE_NAMES[self.name])):
            yield

    def backward(self, loss: Any) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer: Any) -> None:
        """Gradients back in their true units before clipping."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Any, grad_norm_finite: bool) -> bool:
        """Take the optimiser step; False when fp16 gradients overflowed and the scaler skipped it."""
        if not self.scaler:
            optimizer.step()
            return True
        self.scaler.step(optimizer)  # skips the update itself when it found inf/nan gradients
        self.scaler.update()
        if not grad_norm_finite:
            self.skipped_steps += 1
        return grad_norm_finite

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scaler": self.scaler.state_dict() if self.scaler else None,
                "skipped_steps": self.skipped_steps}
