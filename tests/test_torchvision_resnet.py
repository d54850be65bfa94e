"""A torchvision-style ResNet-50 spec against torchvision's architecture.

torchvision itself cannot be imported here (it resolves only as a CUDA build, whose compiled ops
do not load with the CPU torch), so the reference is written by hand below from torchvision's
``resnet.py`` design (Bottleneck v1.5: the stride on the 3×3 convolution, convolutions without
bias, ``downsample`` = 1×1 convolution + BatchNorm, ``MaxPool2d(3, 2, padding=1)``), with
torchvision's module names, and checked against torchvision's published parameter count
(25,557,032) before it is trusted. Its weights (BatchNorm statistics drawn, not 0 and 1) are
transplanted into the spec's canonical weights by name and layout in this file — not through
specnet's converters — and Keras, PyTorch and ONNX must compute what it computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from specnet import infer, load_spec, loads_spec
from specnet.backends import get_backend
from specnet.backends.onnx import build_graph, ort_session, run_session
from specnet.weights import check_weights
from tests.conftest import ROOT

SPEC = ROOT / "specs" / "applications" / "resnet50_torchvision.yaml"
TORCHVISION_PARAMETERS = 25_557_032  # torchvision's documentation of resnet50's weights


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, width: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inplanes, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )
            if downsample
            else None
        )

    def forward(self, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        stages, inplanes = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers = [Bottleneck(inplanes, width, stride, downsample=True)]
            layers += [Bottleneck(width * 4, width, 1, False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            inplanes = width * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: a state_dict entry's last name → the canonical variable (convolutions and BatchNorm)
_VARIABLES = {"running_mean": "moving_mean", "running_var": "moving_variance"}


def _transplant(reference: nn.Module) -> dict[str, np.ndarray]:
    """torchvision's state_dict → canonical weights: ``layer1.0.conv1.weight`` →
    ``layer1_0_conv1.kernel``; OIHW → HWIO, Linear (out, in) → (in, out), BatchNorm's weight
    and bias → gamma and beta."""
    weights = {}
    for key, value in reference.state_dict().items():
        module, variable = key.rsplit(".", 1)
        if variable == "num_batches_tracked":
            continue
        array = value.numpy()
        name = module.replace(".", "_")
        if array.ndim == 4:
            weights[f"{name}.kernel"] = array.transpose(2, 3, 1, 0)
        elif module == "fc":
            weights[f"{name}.{'kernel' if variable == 'weight' else 'bias'}"] = array.T
        else:
            batch_norm = {"weight": "gamma", "bias": "beta", **_VARIABLES}
            weights[f"{name}.{batch_norm[variable]}"] = array
    return weights


def test_the_spec_has_torchvisions_parameters() -> None:
    plan = infer(load_spec(SPEC))
    assert plan.trainable_params == TORCHVISION_PARAMETERS  # PyTorch counts no buffers
    reference = ResNet50()
    assert sum(p.numel() for p in reference.parameters()) == TORCHVISION_PARAMETERS
    assert "layer1.0.downsample.0.weight" in reference.state_dict()  # torchvision's names
    buffers = sum(b.numel() for n, b in reference.named_buffers() if "running" in n)
    assert plan.total_params == TORCHVISION_PARAMETERS + buffers


def test_every_runtime_computes_what_torchvisions_resnet50_computes() -> None:
    torch.manual_seed(0)
    reference = ResNet50().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
    plan = infer(loads_spec(SPEC.read_text().replace("[224, 224, 3]", "[64, 64, 3]")))
    weights = check_weights(plan, _transplant(reference), "torchvision's weights")
    x = np.random.default_rng(2).normal(0, 1, (3, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    scale = float(np.abs(want).max())
    assert scale > 0.1  # logits that say something
    got = {}
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        got[name] = backend.predict(model, x)
    got["onnx"] = run_session(ort_session(build_graph(plan, weights)), x, "nhwc")
    for name, logits in got.items():
        np.testing.assert_allclose(logits, want, rtol=0, atol=2e-5 * scale, err_msg=name)
        assert (logits.argmax(1) == want.argmax(1)).all(), name
