"""Training in Keras 3: Keras's losses and optimizers in a compiled train step, specnet's batches.

specnet drives the epochs and the batch order (a function of (seed, epoch), shared with PyTorch)
instead of ``fit``, so that a run resumes exactly and the two frameworks see the same batches.
Each step is the train step ``fit`` compiles (forward, loss, tape gradients, optimizer apply),
as one ``tf.function``. The loss is computed on logits (the training
plan has no final softmax; ``from_logits=True``), as Keras itself does under the hood for a
softmax output on TensorFlow; the saved model keeps its softmax.

A checkpoint holds all of ``model.variables`` — which include each Dropout's seed-generator state,
left out of ``.keras`` and ``.weights.h5`` files — and all of ``optimizer.variables``, keyed by
layer and variable name (see :meth:`KerasTrainer._variables`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from specnet._frameworks import keras_module, require
from specnet.backends import DEFAULT_OPTIONS, TrainOptions
from specnet.errors import RuntimeFailure, UsageError
from specnet.shapes import Plan
from specnet.spec import SGD, Adam, AdamW, RMSprop, Train
from specnet.weights import Weights

keras = keras_module()


def learning_rate(value: Any) -> Any:
    """A constant rate, or the ``keras.optimizers.schedules`` class a schedule names, with its
    fields (Keras's own names)."""
    if isinstance(value, int | float):
        return value
    fields = value.model_dump(exclude={"type"})
    return getattr(keras.optimizers.schedules, value.type)(**fields)


def optimizer(config: SGD | Adam | RMSprop) -> Any:
    """The Keras optimizer the spec names, with its options (the shared ones — weight decay,
    the clipping — are Keras's own arguments)."""
    shared = {
        "learning_rate": learning_rate(config.learning_rate),
        "weight_decay": config.weight_decay,
        "clipnorm": config.clipnorm,
        "clipvalue": config.clipvalue,
        "global_clipnorm": config.global_clipnorm,
        "use_ema": config.use_ema,
        "ema_momentum": config.ema_momentum,
        "ema_overwrite_frequency": config.ema_overwrite_frequency,
    }
    if isinstance(config, SGD):
        return keras.optimizers.SGD(**shared, momentum=config.momentum, nesterov=config.nesterov)
    if isinstance(config, Adam):
        kind = keras.optimizers.AdamW if isinstance(config, AdamW) else keras.optimizers.Adam
        return kind(
            **shared,
            beta_1=config.beta_1,
            beta_2=config.beta_2,
            epsilon=config.epsilon,
            amsgrad=config.amsgrad,
        )
    return keras.optimizers.RMSprop(
        **shared,
        rho=config.rho,
        momentum=config.momentum,
        epsilon=config.epsilon,
        centered=config.centered,
    )


def _strategy(tf: Any, name: str, replicas: int) -> Any:
    """A TensorFlow distribution strategy: ``mirrored`` over this machine's GPUs (or, with none,
    ``replicas`` logical CPU devices, for testing); ``multi-worker`` reads the standard
    ``TF_CONFIG`` of each worker."""
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name != "mirrored":
        raise UsageError(f"unknown strategy {name!r}; choose mirrored or multi-worker")
    if tf.config.get_visible_devices("GPU"):  # (listing logical devices would start TF)
        return tf.distribute.MirroredStrategy()
    count = max(replicas, 1)
    cpu = tf.config.list_physical_devices("CPU")[0]
    with contextlib.suppress(RuntimeError):  # already initialised: use the devices there are
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
    if len(devices) < count:
        raise UsageError(
            f"--replicas {count}: TensorFlow already started with {len(devices)} CPU device(s); "
            "start a fresh process"
        )
    return tf.distribute.MirroredStrategy(devices)


class KerasTrainer:
    """Owns the compiled training model (logits) and its optimizer; see specnet.train."""

    def __init__(
        self,
        backend: Any,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> None:
        device, strategy = options.device, options.strategy
        tf = require("tensorflow")
        if device == "cpu":  # TensorFlow takes a GPU when it sees one; "cuda"/"auto" let it
            tf.config.set_visible_devices([], "GPU")
        elif device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise RuntimeFailure("--device cuda: TensorFlow sees no GPU here")
        self.backend, self.plan, self.train_config, self.tf = backend, plan, train, tf
        self.strategy = _strategy(tf, strategy, options.replicas) if strategy else None
        scope = self.strategy.scope() if self.strategy else contextlib.nullcontext()
        self.binary = train.loss == "binary_crossentropy"
        with scope:
            keras.utils.set_random_seed(train.seed)  # Dropout's seed generators draw from it
            self.model = backend.build(plan)
            backend.set_weights(self.model, plan, weights)
            losses = keras.losses
            # per-example losses: each replica divides its sum by the *global* batch size, and
            # the optimizer sums the replicas' gradients: the single-device mean gradient
            smoothing = train.label_smoothing
            self.one_hot = bool(smoothing) and not self.binary  # Keras smooths one-hot labels
            if self.binary:
                self.loss = losses.BinaryCrossentropy(
                    from_logits=True, label_smoothing=smoothing, reduction=None
                )
            elif self.one_hot:
                self.loss = losses.CategoricalCrossentropy(
                    from_logits=True, label_smoothing=smoothing, reduction=None
                )
            else:
                self.loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
            self.classes = plan.output_shape[0]
            self.optimizer = optimizer(train.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        # compile=True: XLA (jit_compile); opt-in, see benchmarks/README.md for what it buys
        if self.strategy is None:
            self._step = tf.function(
                self._train_step, jit_compile=options.compile, reduce_retracing=True
            )
        else:
            self._step = tf.function(self._distributed_step, reduce_retracing=True)

    def _train_step(
        self, x: Any, y: Any, batch: Any = None, sample_weight: Any = None
    ) -> tuple[Any, Any]:
        """What Keras's own compiled train step does (forward, loss, gradients, optimizer
        apply), without ``train_on_batch``'s per-call data adapter and metric bookkeeping, which
        cost about 40% of a seed-network step. The loss is Keras's ``compute_loss``: the
        per-example losses times the class weights, summed over the batch size (``sum_over_
        batch_size``, not divided by the weights' sum), plus every regularizer's penalty
        (``model.losses``, evaluated on the weights inside the tape)."""
        tf = self.tf  # not require(): AutoGraph would try to convert importlib
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            target = tf.one_hot(y, self.classes) if self.one_hot else y
            each = self.loss(target, logits)
            if sample_weight is not None:
                each = each * sample_weight
            total = tf.reduce_sum(each)
            loss = total / tf.cast(tf.shape(x)[0] if batch is None else batch, total.dtype)
            if self.model.losses:  # one replica's share under a strategy: gradients are summed
                penalty = tf.add_n(self.model.losses)
                if self.strategy is not None:
                    penalty = penalty / self.strategy.num_replicas_in_sync
                loss = loss + penalty
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        if self.binary:
            guess = tf.cast(logits[:, 0] > 0, y.dtype)
            correct = tf.reduce_sum(tf.cast(tf.equal(guess, y[:, 0]), tf.int32))
        else:
            guess = tf.argmax(logits, axis=1, output_type=y.dtype)
            correct = tf.reduce_sum(tf.cast(tf.equal(guess, y), tf.int32))
        return loss, correct

    def _distributed_step(self, xs: Any, ys: Any, batch: Any, ws: Any = None) -> tuple[Any, Any]:
        tf = self.tf
        assert self.strategy is not None
        loss, correct = self.strategy.run(self._train_step, args=(xs, ys, batch, ws))
        add = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(add, loss, axis=None), self.strategy.reduce(
            add, correct, axis=None
        )

    def step(
        self, x: Any, y: Any, global_batch: int | None = None, sample_weight: Any = None
    ) -> tuple[float, int]:
        """One optimizer step on this worker's share of a global batch (dropout on); returns
        the global batch's mean loss (with the class weights and the regularizers, as Keras's
        ``loss`` reports it) and correct count. ``sample_weight``: one weight per example."""
        labels = y.astype("float32")[:, None] if self.binary else y
        if self.strategy is None:
            loss, correct = self._step(x, labels, None, sample_weight)
            return float(loss), int(correct)
        np = require("numpy")
        # this worker's replicas share its part of the batch (ids are global across workers)
        local = len(self.strategy.extended.worker_devices)
        xs, ys = np.array_split(x, local), np.array_split(labels, local)
        place = self.strategy.experimental_distribute_values_from_function
        ws = None
        if sample_weight is not None:
            parts = np.array_split(sample_weight, local)
            ws = place(lambda ctx: parts[ctx.replica_id_in_sync_group % local])
        loss, correct = self._step(
            place(lambda ctx: xs[ctx.replica_id_in_sync_group % local]),
            place(lambda ctx: ys[ctx.replica_id_in_sync_group % local]),
            np.float32(global_batch or len(x)),
            ws,
        )
        return float(loss), int(correct)

    def finish(self) -> None:
        """What ``fit`` does as training ends (``finalize_variable_values``): with ``use_ema``,
        the weights become their moving averages."""
        self.optimizer.finalize_variable_values(self.model.trainable_variables)

    def logits(self, x: Any) -> Any:
        if self.strategy is not None:  # predict_on_batch would split the batch over replicas
            return self.model(x, training=False).numpy()
        return self.backend.predict(self.model, x)

    def weights(self) -> Weights:
        return self.backend.get_weights(self.model, self.plan)  # type: ignore[no-any-return]

    def set_weights(self, weights: Weights) -> None:
        self.backend.set_weights(self.model, self.plan, weights)

    def learning_rate(self) -> float:
        """The rate of the next step (a schedule's at the current iteration)."""
        # (a MirroredVariable under a strategy: read through Keras's own conversion)
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def set_learning_rate(self, rate: float) -> None:
        self.optimizer.learning_rate = rate  # Keras assigns its float32 variable

    def _variables(self) -> dict[str, Any]:
        """Every model and optimizer variable by a stable name: ``model/<layer>/<variable>``
        (``model/conv2d/kernel``, ``model/dropout/seed_generator_state``) and
        ``optimizer/<variable>`` (``optimizer/conv2d_kernel_momentum``). Not by position:
        a functional model orders its variables by Keras's graph traversal, not the spec's,
        and not by ``variable.path``: a seed generator's path carries a counter of how many
        were made before it in the process."""
        named = {
            f"model/{layer.name}/{variable.name}": variable
            for layer in self.model.layers
            for variable in layer.variables
        }
        named.update({f"optimizer/{v.name}": v for v in self.optimizer.variables})
        count = len(self.model.variables) + len(self.optimizer.variables)
        assert len(named) == count, "two variables share a name"
        return named

    def state(self) -> dict[str, Any]:
        """Everything a resume needs: every model and optimizer variable, by name."""
        np = require("numpy")
        return {key: np.asarray(variable.numpy()) for key, variable in self._variables().items()}

    def load_state(self, state: dict[str, Any]) -> None:
        if "model/0" in state:  # a checkpoint from before graphs: variables by position
            for prefix, variables in (
                ("model", self.model.variables),
                ("optimizer", self.optimizer.variables),
            ):
                for i, variable in enumerate(variables):
                    variable.assign(state[f"{prefix}/{i}"])
            return
        variables = self._variables()
        missing = [key for key in variables if key not in state]
        if missing:
            raise RuntimeFailure(
                f"the checkpoint lacks {', '.join(missing[:3])}"
                + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            )
        for key, variable in variables.items():
            variable.assign(state[key])
