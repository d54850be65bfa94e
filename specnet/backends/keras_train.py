"""Training in Keras 3: Keras's losses and optimizers in a compiled train step, specnet's batches.

specnet drives the epochs and the batch order (a function of (seed, epoch), shared with PyTorch)
instead of ``fit``, so that a run resumes exactly and the two frameworks see the same batches.
Each step is the train step ``fit`` compiles (forward, loss, tape gradients, optimizer apply),
as one ``tf.function``. The loss is computed on logits (the training
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
        self,
        backend: Any,
        plan: Plan,
        train: Train,
        weights: Weights,
        compile: bool = False,
        device: str = "cpu",
    ) -> None:
        if device == "cpu":  # TensorFlow takes a GPU when it sees one; "cuda"/"auto" let it
            require("tensorflow").config.set_visible_devices([], "GPU")
        self.backend, self.plan, self.train_config = backend, plan, train
        keras.utils.set_random_seed(train.seed)  # Dropout's seed generators draw from it
        self.model = backend.build(plan)
        backend.set_weights(self.model, plan, weights)
        self.binary = train.loss == "binary_crossentropy"
        if self.binary:
            self.loss = keras.losses.BinaryCrossentropy(from_logits=True)
        else:
            self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.optimizer = optimizer(train.optimizer)
        self.optimizer.build(self.model.trainable_variables)
        tf = require("tensorflow")
        # compile=True: XLA (jit_compile); opt-in, see benchmarks/README.md for what it buys
        self._step = tf.function(self._train_step, jit_compile=compile, reduce_retracing=True)

    def _train_step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """What Keras's own compiled train step does (forward, loss, gradients, optimizer
        apply), without ``train_on_batch``'s per-call data adapter and metric bookkeeping, which
        cost about 7% of a seed-network step."""
        tf = require("tensorflow")
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss(y, logits)
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        if self.binary:
            guess = tf.cast(logits[:, 0] > 0, y.dtype)
            correct = tf.reduce_sum(tf.cast(tf.equal(guess, y[:, 0]), tf.int32))
        else:
            guess = tf.argmax(logits, axis=1, output_type=y.dtype)
            correct = tf.reduce_sum(tf.cast(tf.equal(guess, y), tf.int32))
        return loss, correct

    def step(self, x: Any, y: Any) -> tuple[float, int]:
        """One optimizer step on a batch (dropout on); returns (mean loss, correct count)."""
        labels = y.astype("float32")[:, None] if self.binary else y
        loss, correct = self._step(x, labels)
        return float(loss), int(correct)

    def logits(self, x: Any) -> Any:
        return self.backend.predict(self.model, x)

    def weights(self) -> Weights:
        return self.backend.get_weights(self.model, self.plan)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """Everything a resume needs: every model and optimizer variable, in order."""
        np = require("numpy")
        out = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(self.model.variables)}
        for i, variable in enumerate(self.optimizer.variables):
            out[f"optimizer/{i}"] = np.asarray(variable.numpy())
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        for prefix, variables in (
            ("model", self.model.variables),
            ("optimizer", self.optimizer.variables),
        ):
            for i, variable in enumerate(variables):
                variable.assign(state[f"{prefix}/{i}"])
