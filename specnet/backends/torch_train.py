"""Training in PyTorch with Keras's semantics.

Keras's optimizers differ from PyTorch's in small ways that break training parity, so the
ones that differ are written out here:

* SGD with momentum (and Nesterov): Keras keeps ``v = m·v − lr·g`` and adds it, PyTorch keeps
  ``b = m·b + g`` and subtracts ``lr·b``. The two agree while the rate is constant; under a
  schedule PyTorch's scales the whole history by today's rate, Keras's by each step's own:
  :class:`KerasSGD` updates as Keras does (``tests/test_schedules.py`` shows the difference).
  Plain SGD is ``torch.optim.SGD``.
* Adam: Keras adds epsilon to ``sqrt(v)`` *before* the bias correction of the step size
  (``w −= lr·sqrt(1−β2ᵗ)/(1−β1ᵗ) · m / (sqrt(v) + ε)``); PyTorch adds it after. Same formula
  otherwise, so :class:`KerasAdam` changes only that.
* RMSprop: Keras divides by ``sqrt(v + ε)``, PyTorch by ``sqrt(v) + ε``: :class:`KerasRMSprop`.

The loss is computed on logits (the training plan has no final softmax) with
``cross_entropy``, which is numerically stable; the saved model keeps its softmax.
"""

from __future__ import annotations

import math
from typing import Any

from specnet._frameworks import require
from specnet.backends import DEFAULT_OPTIONS, TrainOptions
from specnet.errors import RuntimeFailure
from specnet.schedules import learning_rate
from specnet.shapes import Plan
from specnet.spec import SGD, Adam, RMSprop, Train, regularizers
from specnet.weights import Weights

torch = require("torch")


def _state(optimizer: Any, p: Any, names: tuple[str, ...]) -> dict[str, Any]:
    state = optimizer.state[p]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32)
        for name in names:
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state  # type: ignore[no-any-return]


class KerasAdam(torch.optim.Optimizer):  # type: ignore[misc,name-defined]
    """Adam exactly as Keras 3 updates (epsilon outside the bias correction), applied to all
    parameters at once with PyTorch's multi-tensor (``_foreach``) kernels."""

    def __init__(self, params: Any, lr: float, beta_1: float, beta_2: float, epsilon: float,
                 amsgrad: bool) -> None:  # fmt: skip
        defaults = {
            "lr": lr,
            "beta_1": beta_1,
            "beta_2": beta_2,
            "eps": epsilon,
            "amsgrad": amsgrad,
        }
        super().__init__(params, defaults)

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            b1, b2 = group["beta_1"], group["beta_2"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            names = ("m", "v", "v_hat") if group["amsgrad"] else ("m", "v")
            states = [_state(self, p, names) for p in params]
            grads = [p.grad for p in params]
            ms, vs = [s["m"] for s in states], [s["v"] for s in states]
            for state in states:
                state["step"] += 1
            t = float(states[0]["step"])
            alpha = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
            # the operations in Keras's order, so the rounding is Keras's too
            delta = torch._foreach_sub(grads, ms)
            torch._foreach_add_(ms, delta, alpha=1 - b1)  # m += (g - m)(1 - β1)
            delta = torch._foreach_mul(grads, grads)
            torch._foreach_sub_(delta, vs)
            torch._foreach_add_(vs, delta, alpha=1 - b2)  # v += (g² - v)(1 - β2)
            if group["amsgrad"]:
                hats = [s["v_hat"] for s in states]
                torch._foreach_maximum_(hats, vs)
                vs = hats
            denominator = torch._foreach_sqrt(vs)
            torch._foreach_add_(denominator, group["eps"])
            update = torch._foreach_mul(ms, alpha)
            torch._foreach_div_(update, denominator)
            torch._foreach_sub_(params, update)  # w -= m·α / (sqrt(v) + ε)


class KerasSGD(torch.optim.Optimizer):  # type: ignore[misc,name-defined]
    """SGD with momentum exactly as Keras 3 updates: ``v = m·v − lr·g``, then ``w += v``
    (Nesterov: ``w += m·v − lr·g``), multi-tensor."""

    def __init__(self, params: Any, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum, lr = group["momentum"], group["lr"]
            vs = [_state(self, p, ("v",))["v"] for p in params]
            step = torch._foreach_mul([p.grad for p in params], lr)  # lr·g
            torch._foreach_mul_(vs, momentum)
            torch._foreach_sub_(vs, step)  # v = m·v − lr·g
            if group["nesterov"]:
                ahead = torch._foreach_mul(vs, momentum)
                torch._foreach_sub_(ahead, step)
                torch._foreach_add_(params, ahead)
            else:
                torch._foreach_add_(params, vs)


class KerasRMSprop(torch.optim.Optimizer):  # type: ignore[misc,name-defined]
    """RMSprop exactly as Keras 3 updates (epsilon inside the square root), multi-tensor."""

    def __init__(self, params: Any, lr: float, rho: float, momentum: float, epsilon: float,
                 centered: bool) -> None:  # fmt: skip
        defaults = {
            "lr": lr,
            "rho": rho,
            "momentum": momentum,
            "eps": epsilon,
            "centered": centered,
        }
        super().__init__(params, defaults)

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            rho, lr = group["rho"], group["lr"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [_state(self, p, ("v", "mom", "avg")) for p in params]
            grads = [p.grad for p in params]
            vs = [s["v"] for s in states]
            torch._foreach_mul_(vs, rho)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - rho)
            denominator = torch._foreach_add(vs, group["eps"])
            if group["centered"]:
                avgs = [s["avg"] for s in states]
                torch._foreach_lerp_(avgs, grads, 1 - rho)
                torch._foreach_addcmul_(denominator, avgs, avgs, value=-1)
            torch._foreach_sqrt_(denominator)
            increment = torch._foreach_mul(grads, lr)
            torch._foreach_div_(increment, denominator)  # lr·g / sqrt(v + ε)
            if group["momentum"] > 0:
                moms = [s["mom"] for s in states]
                torch._foreach_mul_(moms, group["momentum"])
                torch._foreach_add_(moms, increment)
                increment = moms
            torch._foreach_sub_(params, increment)


def optimizer(config: SGD | Adam | RMSprop, params: Any) -> Any:
    """A PyTorch optimizer that updates exactly as the Keras optimizer ``config`` names, at the
    rate of its first step (:class:`TorchTrainer` sets each step's rate under a schedule)."""
    rate = learning_rate(config.learning_rate, 0)
    if isinstance(config, SGD):
        if config.momentum > 0:
            return KerasSGD(params, rate, config.momentum, config.nesterov)
        return torch.optim.SGD(params, lr=rate)
    if isinstance(config, Adam):
        return KerasAdam(params, rate, config.beta_1, config.beta_2, config.epsilon, config.amsgrad)
    return KerasRMSprop(params, rate, config.rho, config.momentum, config.epsilon, config.centered)


def _gather(value: Any) -> list[Any]:
    boxes: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(boxes, value)
    return boxes


def _like(param: Any, value: Any) -> Any:
    """Optimizer state in its parameter's memory format (channels-last for conv kernels)."""
    if value.shape != param.shape:
        return value
    return torch.empty_like(param).copy_(value)


def device_for(requested: str, cuda_available: bool) -> str:
    """The device a run trains on: ``cuda`` when asked for or, with ``auto``, when PyTorch sees
    a GPU; ``--device cuda`` without one is refused rather than trained on the CPU."""
    if requested == "cuda" and not cuda_available:
        raise RuntimeFailure("--device cuda: PyTorch sees no CUDA device here")
    return "cuda" if requested == "cuda" or (requested == "auto" and cuda_available) else "cpu"


class TorchTrainer:
    """Owns the training model (logits), its optimizer and the RNG; see specnet.train."""

    def __init__(
        self,
        backend: Any,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.backend, self.plan, self.train_config = backend, plan, train
        self.device = torch.device(device_for(options.device, torch.cuda.is_available()))
        cuda = self.device.type == "cuda"
        dist = torch.distributed
        self.distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if self.distributed else 0
        torch.manual_seed(train.seed + rank)  # each rank its own dropout masks
        self.model = backend.build(plan)
        backend.set_weights(self.model, plan, weights)
        self.model.to(self.device)
        self.optimizer = optimizer(train.optimizer, self.model.parameters())
        self.schedule = train.optimizer.learning_rate
        self.iterations = 0  # optimizer steps taken: Keras's ``optimizer.iterations``
        self.forward: Any = self.model
        if self.distributed:  # gradients averaged over ranks after each backward
            ids = [self.device.index] if cuda else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        # compile=True: torch.compile the forward (opt-in; measured in benchmarks/README.md)
        if options.compile:
            self.forward = torch.compile(self.forward)
        self.binary = train.loss == "binary_crossentropy"
        # the regularized parameters: (the parameter, its l1, its l2), Keras's factors
        parameters = dict(self.model.named_parameters())
        keys = backend.state_keys(plan)
        self.penalties = [
            (parameters[keys[f"{step.name}.{suffix}"]], *r.factors)
            for step in plan.layers
            for suffix, r in regularizers(step.layer).items()
            if suffix in step.weights  # (a bias regularizer without a bias: no variable)
        ]
        # use_ema: each trainable weight's moving average (Keras's optimizer "average"s)
        self.averages = (
            [torch.zeros_like(p) for p in self.model.parameters()]
            if train.optimizer.use_ema
            else []
        )

    def _loss(self, logits: Any, y: Any, sample_weight: Any = None) -> Any:
        """Keras's ``compute_loss``: label smoothing as Keras smooths (one-hot ``y·(1 − s) +
        s/K``, binary ``y·(1 − s) + s/2``), class weights multiplying each example's loss and
        the sum divided by the batch size (PyTorch's ``weight=`` divides by the weights' sum
        instead: ``tests/test_loss_options.py`` shows the difference), then the regularizers'
        penalties added."""
        functional = torch.nn.functional
        smoothing = self.train_config.label_smoothing
        if self.binary:
            target = y.float()
            if smoothing:
                target = target * (1.0 - smoothing) + 0.5 * smoothing
            each = functional.binary_cross_entropy_with_logits(
                logits[:, 0], target, reduction="none"
            )
        else:
            each = functional.cross_entropy(logits, y, label_smoothing=smoothing, reduction="none")
        if sample_weight is not None:
            each = each * sample_weight
        loss = each.sum() / len(each) if sample_weight is not None else each.mean()
        for param, l1, l2 in self.penalties:  # keras.regularizers.L1L2.__call__, in its order
            penalty = torch.zeros((), dtype=param.dtype, device=param.device)
            if l1:
                penalty = penalty + l1 * torch.sum(torch.abs(param))
            if l2:
                penalty = penalty + l2 * torch.sum(torch.square(param))
            loss = loss + penalty
        return loss

    def _correct(self, logits: Any, y: Any) -> int:
        guess = (logits[:, 0] > 0).long() if self.binary else logits.argmax(1)
        return int((guess == y).sum())

    def step(
        self, x: Any, y: Any, global_batch: int | None = None, sample_weight: Any = None
    ) -> tuple[float, int]:
        """One optimizer step on this rank's share of a global batch (dropout on); returns the
        global batch's mean loss (with class weights and regularizers, as Keras reports it)
        and correct count. ``sample_weight``: one weight per example."""
        self.model.train()
        inputs = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
        labels = torch.from_numpy(y).to(self.device)
        weights = None if sample_weight is None else torch.from_numpy(sample_weight).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.forward(inputs)
        loss = self._loss(logits, labels, weights)
        loss.backward()
        rate = learning_rate(self.schedule, self.iterations)  # the rate Keras takes now
        if not isinstance(self.schedule, int | float):
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self._clip_and_decay(rate)
        self.optimizer.step()
        if self.averages:
            self._average()
        self.iterations += 1
        mean, hits = float(loss.detach()), self._correct(logits.detach(), labels)
        if not self.distributed:
            return mean, hits
        totals = torch.tensor([mean * len(x), float(hits)], dtype=torch.float64)
        torch.distributed.all_reduce(totals)
        return float(totals[0]) / (global_batch or len(x)), int(totals[1])

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def _clip_and_decay(self, rate: float) -> None:
        """What Keras's ``BaseOptimizer`` does before the update, in its order: clip the
        gradients (``clipnorm`` per tensor, ``global_clipnorm`` over all, ``clipvalue`` per
        element; Keras allows one), then decay each weight by ``weight · weight_decay · rate``
        (``_apply_weight_decay``: decoupled, at this step's rate, before the update)."""
        config = self.train_config.optimizer
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if config.clipnorm:  # tf.clip_by_norm: g · c / max(‖g‖, c)
            for grad in grads:
                norm = torch.linalg.vector_norm(grad)
                grad.mul_(config.clipnorm).div_(torch.clamp(norm, min=config.clipnorm))
        elif config.global_clipnorm:  # g · c · min(1/‖all‖, 1/c)
            norm = torch.sqrt(torch.stack([torch.sum(g * g) for g in grads]).sum())
            scale = config.global_clipnorm * torch.minimum(
                1.0 / norm, torch.tensor(1.0 / config.global_clipnorm)
            )
            torch._foreach_mul_(grads, scale)
        elif config.clipvalue:
            for grad in grads:
                grad.clamp_(-config.clipvalue, config.clipvalue)
        if config.weight_decay:
            decay = torch._foreach_mul(params, config.weight_decay)
            torch._foreach_mul_(decay, rate)
            torch._foreach_sub_(params, decay)

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def _average(self) -> None:
        """Keras's ``_update_model_variables_moving_average`` after the update, in float32:
        ``a = m·a + (1 − m)·w`` with ``m`` 0 at the first step (the average starts as the
        weights), then every ``ema_overwrite_frequency`` steps the weights set to it."""
        config = self.train_config.optimizer
        params = list(self.model.parameters())
        m = torch.tensor(0.0 if self.iterations == 0 else config.ema_momentum, dtype=torch.float32)
        kept = torch._foreach_mul(self.averages, m)
        fresh = torch._foreach_mul(params, 1 - m)
        torch._foreach_add_(kept, fresh)
        for average, value in zip(self.averages, kept, strict=True):
            average.copy_(value)
        every = config.ema_overwrite_frequency
        if every and (self.iterations + 1) % every == 0:
            self.finish()

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def finish(self) -> None:
        """As Keras's ``finalize_variable_values`` when training ends: with ``use_ema`` the
        weights become their moving averages."""
        for param, average in zip(self.model.parameters(), self.averages, strict=False):
            param.copy_(average)

    def logits(self, x: Any) -> Any:
        return self.backend.predict(self.model, x)

    def weights(self) -> Weights:
        return self.backend.get_weights(self.model, self.plan)  # type: ignore[no-any-return]

    def set_weights(self, weights: Weights) -> None:
        self.backend.set_weights(self.model, self.plan, weights)

    def learning_rate(self) -> float:
        """The rate of the next step (a schedule's at the current iteration)."""
        return learning_rate(self.schedule, self.iterations)

    def set_learning_rate(self, rate: float) -> None:
        """A constant rate from now on (ReduceLROnPlateau; the spec forbids it with a
        schedule)."""
        self.schedule = rate
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def state(self) -> dict[str, Any]:
        """Everything a resume needs, as NumPy arrays: model, optimizer, RNG. A snapshot: the
        arrays are copies, which later steps do not change (a tensor's ``.numpy()`` is a view
        of the memory the optimizer updates in place)."""
        # .contiguous(): conv weights and their optimizer state are channels-last in memory,
        # and a safetensors file stores raw memory in the shape's row-major order
        out = {
            f"model/{k}": v.detach().cpu().contiguous().numpy().copy()
            for k, v in self.model.state_dict().items()
        }
        # keyed by parameter name, not position, as the model's own state is
        for name, param in self.model.named_parameters():
            for key, value in self.optimizer.state.get(param, {}).items():
                if value is not None:  # SGD without momentum keeps a None buffer
                    tensor = torch.as_tensor(value).detach().cpu().contiguous()
                    out[f"optimizer/{name}/{key}"] = tensor.numpy().copy()
        for (name, _), average in zip(self.model.named_parameters(), self.averages, strict=False):
            out[f"ema/{name}"] = average.detach().cpu().contiguous().numpy().copy()
        out["optimizer/iterations"] = torch.tensor(self.iterations).numpy().astype("int64")
        if isinstance(self.schedule, int | float):  # ReduceLROnPlateau may have changed it
            out["optimizer/learning_rate"] = torch.tensor(
                float(self.schedule), dtype=torch.float64
            ).numpy()
        rng = torch.get_rng_state().numpy()
        if self.distributed:  # every rank's generator, so a resumed run redraws the same masks
            for rank, state in enumerate(_gather(rng)):
                out[f"rng/torch/{rank}"] = state
        else:
            out["rng/torch"] = rng
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        model = {
            k[len("model/") :]: torch.from_numpy(v)
            for k, v in state.items()
            if k.startswith("model/")
        }
        self.model.load_state_dict(model, strict=True)
        for i, (name, param) in enumerate(self.model.named_parameters()):
            legacy = any(key.startswith(f"optimizer/{i}/") for key in state)  # before graphs
            prefix = f"optimizer/{i}/" if legacy else f"optimizer/{name}/"
            entries = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if entries:
                self.optimizer.state[param] = {
                    k: _like(param, torch.from_numpy(v.copy())) for k, v in entries.items()
                }
        if self.averages:
            with torch.no_grad():
                for (name, _), average in zip(
                    self.model.named_parameters(), self.averages, strict=True
                ):
                    average.copy_(torch.from_numpy(state[f"ema/{name}"].copy()))
        if "optimizer/iterations" in state:  # (older checkpoints: a constant rate, unused)
            self.iterations = int(state["optimizer/iterations"])
        if "optimizer/learning_rate" in state and isinstance(self.schedule, int | float):
            self.set_learning_rate(float(state["optimizer/learning_rate"]))
        rank = torch.distributed.get_rank() if self.distributed else 0
        rng = state.get(f"rng/torch/{rank}", state.get("rng/torch"))
        if rng is None:
            raise RuntimeFailure(f"the checkpoint holds no RNG state for rank {rank}")
        torch.set_rng_state(torch.from_numpy(rng.copy()))
