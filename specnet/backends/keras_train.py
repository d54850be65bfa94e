"""Training in Keras 3: ``compile`` + ``train_on_batch``, with specnet choosing the batches.

specnet drives the epochs and the batch order (a function of (seed, epoch), shared with PyTorch)
instead of ``fit``, so that a run resumes exactly and the two frameworks see the same batches.
Each step is Keras's own compiled train function. The loss is computed on logits (the training
plan has no final softmax; ``from_logits=True``), as Keras itself does under the hood for a
softmax output on TensorFlow; the saved model keeps its softmax.

A checkpoint holds all of ``model.variables`` — which include each Dropout's seed-generator state,
left out of ``.keras`` and ``.weights.h5`` files — and all of ``optimizer.variables``.
"""

from __future__ import annotations

from typing import Any

from specnet._frameworks import require
from specnet.backends.keras import _keras
from specnet.shapes import Plan
from specnet.spec import SGD, Adam, RMSprop, Train
from specnet.weights import Weights

keras = _keras()


def optimizer(config: SGD | Adam | RMSprop) -> Any:
    """The Keras optimizer the spec names, with its options."""
    if isinstance(config, SGD):
        return keras.optimizers.SGD(
            learning_rate=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov
        )
    if isinstance(config, Adam):
        return keras.optimizers.Adam(
            learning_rate=config.learning_rate,
            beta_1=config.beta_1,
            beta_2=config.beta_2,
            epsilon=config.epsilon,
            amsgrad=config.amsgrad,
        )
    return keras.optimizers.RMSprop(
        learning_rate=config.learning_rate,
        rho=config.rho,
        momentum=config.momentum,
        epsilon=config.epsilon,
        centered=config.centered,
    )


class KerasTrainer:
    """Owns the compiled training model (logits) and its optimizer; see specnet.train."""

    def __init__(
        self, backend: Any, plan: Plan, train: Train, weights: Weights, compile: bool = False
    ) -> None:
        self.backend, self.plan, self.train_config = backend, plan, train
        keras.utils.set_random_seed(train.seed)  # Dropout's seed generators draw from it
        self.model = backend.build(plan)
        backend.set_weights(self.model, plan, weights)
        self.binary = train.loss == "binary_crossentropy"
        if self.binary:
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
            metric = keras.metrics.BinaryAccuracy(threshold=0.0)  # on logits
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metric = keras.metrics.SparseCategoricalAccuracy()
        # compile=True: XLA (jit_compile); opt-in, see benchmarks/README.md for what it buys
        self.model.compile(
            optimizer=optimizer(train.optimizer), loss=loss, metrics=[metric], jit_compile=compile
        )
        self.model.optimizer.build(self.model.trainable_variables)

    def step(self, x: Any, y: Any) -> tuple[float, int]:
        """One optimizer step on a batch (dropout on); returns (mean loss, correct count)."""
        labels = y.astype("float32")[:, None] if self.binary else y
        logs = self.model.train_on_batch(x, labels, return_dict=True)
        accuracy = next(v for k, v in logs.items() if k != "loss")
        return float(logs["loss"]), round(float(accuracy) * len(x))

    def logits(self, x: Any) -> Any:
        return self.backend.predict(self.model, x)

    def weights(self) -> Weights:
        return self.backend.get_weights(self.model, self.plan)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """Everything a resume needs: every model and optimizer variable, in order."""
        np = require("numpy")
        out = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(self.model.variables)}
        for i, variable in enumerate(self.model.optimizer.variables):
            out[f"optimizer/{i}"] = np.asarray(variable.numpy())
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        for prefix, variables in (
            ("model", self.model.variables),
            ("optimizer", self.model.optimizer.variables),
        ):
            for i, variable in enumerate(variables):
                variable.assign(state[f"{prefix}/{i}"])
