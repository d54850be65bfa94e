"""Property-based tests: nothing but specnet's own error ever escapes the loader or inference."""

from __future__ import annotations

import os
import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specnet import SpecError, infer, loads_spec, spec_from_dict
from tests.conftest import SPECS

# `SPECNET_FUZZ_EXAMPLES=200000 pytest tests/test_fuzz.py` runs a longer campaign.
EXAMPLES = int(os.environ.get("SPECNET_FUZZ_EXAMPLES", "600"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = [path.read_text() for path in SPECS]
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAML_BITS = [*list("[]{}:,-&*!|>'\"#%@?\t\n "), "<<: ", "*a", "&a ", "!!str ", "---\n", "~", "0x"]


def _survives(text: str) -> None:
    try:
        plan = infer(loads_spec(text, "fuzz.yaml"))
    except SpecError as exc:
        assert exc.issues
        assert all(issue.file == "fuzz.yaml" for issue in exc.issues)
        return
    assert plan.total_params >= 0


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["same", "valid", "relu", "softmax", "adam", "Conv2D", "Dense", "yes", "010", "bilinear"]
    ),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
NAMES = ["a", "b", "c", "input", "a_b", "conv2d", "blk", "$f"]
FIELDS = [
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "dilation_rate",
    "activation",
    "use_bias",
    "pool_size",
    "rate",
    "units",
    "name",
    "axis",
    "dims",
    "kernel_initializer",
    "momentum",
    "epsilon",
    "center",
    "scale",
    "keepdims",
    "depth_multiplier",
    "max_value",
    "negative_slope",
    "offset",
    "target_shape",
    "size",
    "interpolation",
    "pointwise_initializer",
]
layer = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "Conv2D",
                "Convolution2D",
                "MaxPool",
                "MaxPooling2D",
                "Dropout",
                "Flatten",
                "Dense",
                "Activation",
                "Softmax",
                "Conv3D",
                "dense",
                "Add",
                "Subtract",
                "Multiply",
                "Average",
                "Maximum",
                "Concatenate",
                "BatchNormalization",
                "ZeroPadding2D",
                "GlobalAveragePooling2D",
                "GlobalMaxPooling2D",
                "DepthwiseConv2D",
                "ReLU",
                "AveragePooling2D",
                "AvgPool2D",
                "Rescaling",
                "SeparableConv2D",
                "Conv2DTranspose",
                "UpSampling2D",
                "LayerNormalization",
                "Reshape",
                "Permute",
            ]
        )
    },
    optional={
        **{
            field: st.one_of(st.integers(-3, 40), st.lists(st.integers(-1, 9), max_size=3), values)
            for field in FIELDS
        },
        # graphs: names that references can hit (or miss, or point below, or at themselves)
        "name": st.one_of(st.sampled_from(NAMES), values),
        "inputs": st.one_of(
            st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=5), values
        ),
    },
)
block_use = st.fixed_dictionaries(
    {"block": st.sampled_from(["blk", "nope", "input"])},
    optional={"name": st.one_of(st.sampled_from(NAMES), values), "f": values, "g": values},
)
blocks = st.one_of(
    values,
    st.fixed_dictionaries(
        {
            "blk": st.fixed_dictionaries(
                {"layers": st.lists(layer, max_size=4)},
                optional={"params": st.one_of(st.just(["f"]), values), "extra": values},
            )
        }
    ),
)
spec_dicts = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("fuzz"), scalars),
        "input_shape": st.one_of(st.lists(st.integers(-2, 300), min_size=3, max_size=3), values),
        "layers": st.lists(st.one_of(layer, layer, layer, block_use), max_size=8),
    },
    optional={
        "train": values,
        "data": values,
        "class_names": values,
        "extra": values,
        "blocks": blocks,
    },
)


@FUZZ
@given(spec_dicts)
def test_generated_specs(doc: dict[str, object]) -> None:
    _survives(yaml.dump(doc, Dumper=DUMPER, allow_unicode=True))


HUGE = [10**5000, -(10**5000), 2**63, 2**64 + 1, float("inf"), float("nan")]


@FUZZ
@given(spec_dicts, st.sampled_from(HUGE), st.sampled_from([*FIELDS, "input_shape", "seed"]))
def test_generated_dicts_through_the_api(doc: dict[str, object], huge: float, field: str) -> None:
    """Python callers can pass what YAML cannot spell: a 5,000-digit integer (whose repr
    raises ValueError past 4,300 digits), infinities. Planted in each field in turn."""
    doc = dict(doc)
    if field == "input_shape":
        doc["input_shape"] = [8, huge, 3]
    elif field == "seed":
        doc["train"] = {"seed": huge}
    elif doc["layers"]:
        doc["layers"] = [{**doc["layers"][0], field: huge}, *doc["layers"][1:]]  # type: ignore[index,misc,dict-item]
    try:
        plan = infer(spec_from_dict(doc, "fuzz.py"))
    except SpecError as exc:
        assert exc.issues
        assert len(str(exc)) < 12_000
        return
    assert plan.total_params >= 0


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace", "duplicate"]),
            st.floats(0, 1),
            st.integers(1, 12),
            st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=4)),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_specs(seed: str, mutations: list[tuple[str, float, int, str]]) -> None:
    text = seed
    for op, where, length, bit in mutations:
        at = int(where * len(text))
        if op == "insert":
            text = text[:at] + bit + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + length :]
        elif op == "replace":
            text = text[:at] + bit + text[at + len(bit) :]
        else:
            text = text[:at] + text[at : at + length] + text[at:]
    _survives(text)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _survives(text)


# A plain mutation fuzzer next to hypothesis: fast enough for 12,000 inputs per CI run.
# `SPECNET_FUZZ_MUTATIONS=1000000 pytest tests/test_fuzz.py -k campaign` runs a long campaign.
MUTATIONS = int(os.environ.get("SPECNET_FUZZ_MUTATIONS", "12000"))


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        op = rng.randrange(6)
        if op == 0:
            text = text[:at] + rng.choice(YAML_BITS) + text[at:]
        elif op == 1:
            text = text[:at] + text[at + rng.randint(1, 12) :]
        elif op == 2:
            text = text[:at] + chr(rng.randrange(0, 0x3000)) + text[at + 1 :]
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                line = rng.randrange(len(lines))
                lines.insert(rng.randrange(len(lines) + 1), lines[line])
                text = "".join(lines)
        elif op == 4:  # replace a number with an extreme or odd one
            value = rng.choice(
                [
                    *("0", "-1", "1e308", "99999999999", "0x10", "010", "1.5", ".nan", "true"),
                    *(
                        "9" * rng.choice([19, 20, 21, 4301, 6000]),
                        "0" * 5000 + "1",
                        "0x" + "f" * 17,
                    ),
                ]
            )
            digits = [i for i, ch in enumerate(text) if ch.isdigit()]
            if digits:
                i = rng.choice(digits)
                text = text[:i] + value + text[i + 1 :]
        else:
            text = (
                text[:at]
                + rng.choice(["&a ", "*a ", "<<: *a\n", "!!python/object ", "\t", "\x00"])
                + text[at:]
            )
    return text


def test_mutation_campaign() -> None:
    rng = random.Random(20261124)
    escapes: list[str] = []
    for _ in range(MUTATIONS):
        text = _mutate(rng, rng.choice(SEEDS))
        try:
            _survives(text)
        except BaseException as exc:
            escapes.append(f"{type(exc).__name__}: {exc!r}"[:200])
    assert escapes == [], f"{len(escapes)} of {MUTATIONS} escaped, e.g. {escapes[:3]}"
