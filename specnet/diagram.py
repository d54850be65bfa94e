"""``specnet plot``: a picture of the network, drawn without Graphviz.

Keras's ``plot_model`` needs the Graphviz program and pydot and fails without them
(keras-team/keras#10935, #9304); the pure-Python layout libraries (grandalf, last released in
2023) place general graphs, while a CNN is a main path with side branches that rejoin. So
specnet lays it out itself, top to bottom, in a few lines:

* **rows**: a layer sits one row below the lowest of its inputs (parallel branches share rows);
* **columns**: a layer takes its input's column unless a sibling took it already, then the
  next column free from there to the right (a branch steps aside); a merge takes the leftmost
  column of its inputs (the branch rejoins);
* **edges**: straight between neighbours; an edge that would cross a box in its column (a
  residual skip) is routed in the gutter to the right of the column;
* **blocks**: the layers of one block use are framed and labelled ``use (block)``;
  ``collapse_blocks`` draws each use as one box (its output shape, its parameters summed).

One box per layer: its name, kind, output shape and parameters, coloured by kind. The scene is
drawn as SVG by hand (no dependency) or as PNG with matplotlib. Both are written atomically.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._io import atomic_write_bytes, atomic_write_text
from specnet.errors import UsageError
from specnet.shapes import Plan

__all__ = ["Scene", "block_uses", "layout", "plot", "svg_text"]

BOX_W, BOX_H, COL_GAP, ROW_GAP, MARGIN = 280, 44, 50, 22, 24

#: kind → fill colour (light, so that black text reads on every box)
_COLOURS = {
    "conv": "#cfe2ff",
    "norm": "#fff3bf",
    "act": "#ffd8cc",
    "pool": "#d3f9d8",
    "merge": "#e5dbff",
    "dense": "#c5f6fa",
    "shape": "#e9ecef",
    "input": "#ffffff",
    "block": "#f1f3f5",
}
_FAMILY = {
    "Conv2D": "conv",
    "DepthwiseConv2D": "conv",
    "SeparableConv2D": "conv",
    "Conv2DTranspose": "conv",
    "BatchNormalization": "norm",
    "LayerNormalization": "norm",
    "Rescaling": "norm",
    "Activation": "act",
    "ReLU": "act",
    "Softmax": "act",
    "MaxPool": "pool",
    "AveragePooling2D": "pool",
    "GlobalAveragePooling2D": "pool",
    "GlobalMaxPooling2D": "pool",
    "UpSampling2D": "pool",
    "Add": "merge",
    "Subtract": "merge",
    "Multiply": "merge",
    "Average": "merge",
    "Maximum": "merge",
    "Concatenate": "merge",
    "Dense": "dense",
}


@dataclass
class Box:
    name: str
    kind: str
    detail: str
    inputs: tuple[str, ...]
    family: str
    params: int = 0
    row: int = 0
    col: int = 0


@dataclass
class Frame:
    label: str
    members: list[str]


@dataclass
class Scene:
    title: str
    boxes: dict[str, Box]
    frames: list[Frame] = field(default_factory=list)

    @property
    def width(self) -> int:
        cols = max((b.col for b in self.boxes.values()), default=0) + 1
        return max(2 * MARGIN + cols * BOX_W + cols * COL_GAP, 2 * MARGIN + 9 * len(self.title))

    @property
    def height(self) -> int:
        rows = max((b.row for b in self.boxes.values()), default=0) + 1
        return 2 * MARGIN + 30 + rows * (BOX_H + ROW_GAP)

    def at(self, box: Box) -> tuple[float, float]:
        """Top-left corner of a box."""
        return MARGIN + box.col * (BOX_W + COL_GAP), MARGIN + 30 + box.row * (BOX_H + ROW_GAP)

    def edges(self) -> list[tuple[str, str, list[tuple[float, float]]]]:
        """(from, to, polyline) for every edge, routed as the module doc says."""
        occupied: dict[int, list[int]] = {}
        for box in self.boxes.values():
            occupied.setdefault(box.col, []).append(box.row)
        out = []
        for box in self.boxes.values():
            x1, y1 = self.at(box)
            for source in dict.fromkeys(box.inputs):
                parent = self.boxes[source]
                x0, y0 = self.at(parent)
                start = (x0 + BOX_W / 2, y0 + BOX_H)
                end = (x1 + BOX_W / 2, y1)
                between = [r for r in occupied.get(box.col, []) if parent.row < r < box.row] + [
                    r for r in occupied.get(parent.col, []) if parent.row < r < box.row
                ]
                if not between:
                    out.append((source, box.name, [start, end]))
                    continue
                gutter = max(x0, x1) + BOX_W + COL_GAP / 3
                out.append(
                    (
                        source,
                        box.name,
                        [
                            (x0 + BOX_W, y0 + BOX_H / 2),
                            (gutter, y0 + BOX_H / 2 + 6),
                            (gutter, y1 + BOX_H / 2 - 6),
                            (x1 + BOX_W, y1 + BOX_H / 2),
                        ],
                    )
                )
        return out


def _number(n: int) -> str:
    """A parameter count in at most five characters: 864, 9.5k, 1.12M."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def block_uses(spec_file: str | Path) -> dict[str, tuple[str, str]]:
    """Layer name → (block use name, block name) for the layers a spec file's blocks expand
    into; empty when the file has no blocks or cannot be read (the picture is then unframed)."""
    from specnet._yaml import load_yaml
    from specnet.blocks import expand

    try:
        source = load_yaml(Path(spec_file).read_bytes(), str(spec_file))
        layers = source.data.get("layers") if isinstance(source.data, dict) else None
        expanded = expand(source)
    except Exception:  # the picture is a convenience: a spec that fails loads without frames
        return {}
    out = {}
    for origin in expanded.origins.values():
        index = origin.use[1] if len(origin.use) > 1 else None
        use = (
            layers[index].get("name")
            if isinstance(layers, list) and isinstance(index, int)
            else None
        )
        out[origin.name] = (str(use or origin.block), origin.block)
    return out


def _boxes(plan: Plan, groups: dict[str, tuple[str, str]], collapse: bool) -> dict[str, Box]:
    h, w, c = plan.input_shape
    boxes = {"input": Box("input", "Input", f"{h}×{w}×{c}", (), "input")}
    alias: dict[str, str] = {}
    for step in plan.layers:
        shape = "×".join(str(n) for n in step.output_shape)
        group = groups.get(step.name) if collapse else None
        if group is None:
            inputs = tuple(dict.fromkeys(alias.get(i, i) for i in step.inputs))
            boxes[step.name] = Box(
                step.name,
                step.kind,
                f"{step.kind} · {shape} · {_number(step.params)} params",
                inputs,
                _FAMILY.get(step.kind, "shape"),
            )
            continue
        use, block = group
        outside = [alias.get(i, i) for i in step.inputs if alias.get(i, i) != use]
        box = boxes.setdefault(use, Box(use, block, "", (), "block"))
        box.inputs = tuple(dict.fromkeys((*box.inputs, *outside)))
        box.params += step.params
        box.detail = f"block {block} · {shape} · {_number(box.params)} params"
        alias[step.name] = use
    return boxes


def layout(
    plan: Plan, groups: dict[str, tuple[str, str]] | None = None, collapse: bool = False
) -> Scene:
    """Place every layer (see the module doc)."""
    groups = groups or {}
    boxes = _boxes(plan, groups, collapse)
    taken: set[tuple[int, int]] = set()
    first_child: set[str] = set()
    for box in boxes.values():
        if not box.inputs:
            box.row, box.col = 0, 0
            taken.add((0, 0))
            continue
        parents = [boxes[i] for i in box.inputs]
        row = max(p.row for p in parents) + 1
        lead = parents[0]
        if len(parents) > 1:  # a merge rejoins the leftmost of its branches
            col = min(p.col for p in parents)
        elif lead.name not in first_child:
            col = lead.col
            first_child.add(lead.name)
        else:
            col = max((c for (r, c) in taken if r > lead.row), default=lead.col) + 1
            col = max(col, lead.col + 1)
        while (row, col) in taken:
            row += 1
        box.row, box.col = row, col
        taken.add((row, col))
    frames = []
    if groups and not collapse:
        members: dict[str, list[str]] = {}
        labels: dict[str, str] = {}
        for name, (use, block) in groups.items():
            if name in boxes:
                members.setdefault(use, []).append(name)
                labels[use] = f"{use} ({block})"
        frames = [Frame(labels[use], names) for use, names in members.items()]
    title = f"{plan.name}: {plan.total_params:,} params, {plan.flops / 1e6:,.1f} MFLOPs"
    return Scene(title, boxes, frames)


def _frame_rect(scene: Scene, frame: Frame) -> tuple[float, float, float, float]:
    corners = [scene.at(scene.boxes[name]) for name in frame.members]
    x0 = min(x for x, _ in corners) - 8
    y0 = min(y for _, y in corners) - 16
    x1 = max(x for x, _ in corners) + BOX_W + 8 + COL_GAP / 2
    y1 = max(y for _, y in corners) + BOX_H + 6
    return x0, y0, x1 - x0, y1 - y0


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_text(scene: Scene) -> str:
    """The scene as a standalone SVG document."""
    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width}" height="{scene.height}" '
        f'viewBox="0 0 {scene.width} {scene.height}" font-family="DejaVu Sans, Helvetica, Arial, '
        'sans-serif">',
        f'<rect width="{scene.width}" height="{scene.height}" fill="white"/>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker>'
        "</defs>",
        f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="15" font-weight="bold">'
        f"{e(scene.title)}</text>",
    ]
    for frame in scene.frames:
        x, y, w, h = _frame_rect(scene, frame)
        out.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="8" fill="none" '
            'stroke="#868e96" stroke-dasharray="5,4"/>'
            f'<text x="{x + 6:.0f}" y="{y + 11:.0f}" font-size="10" fill="#495057">'
            f"{e(_clip(frame.label, 48))}</text>"
        )
    for _, _, points in scene.edges():
        path = " ".join(f"{x:.0f},{y:.0f}" for x, y in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="#495057" stroke-width="1.3" '
            'marker-end="url(#arrow)"/>'
        )
    for box in scene.boxes.values():
        x, y = scene.at(box)
        fill = _COLOURS[box.family]
        dash = ' stroke-dasharray="4,3"' if box.family == "block" else ""
        out.append(
            f"<g><title>{e(box.name)}: {e(box.detail)}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="5" '
            f'fill="{fill}" stroke="#343a40"{dash}/>'
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + 18:.0f}" font-size="12.5" '
            f'font-weight="bold" text-anchor="middle">{e(_clip(box.name, 34))}</text>'
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + 35:.0f}" font-size="10.5" '
            f'text-anchor="middle" fill="#343a40">{e(_clip(box.detail, 47))}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png_bytes(scene: Scene) -> bytes:
    """The scene drawn with matplotlib (headless), as PNG."""
    from specnet.plots import _pyplot

    plt = _pyplot()
    patches = __import__("matplotlib.patches", fromlist=["FancyBboxPatch"])
    dpi = 100
    figure = plt.figure(figsize=(scene.width / dpi, scene.height / dpi), dpi=dpi)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.axis("off")
    ax.text(MARGIN, MARGIN + 12, scene.title, fontsize=11, fontweight="bold", va="baseline")
    for frame in scene.frames:
        x, y, w, h = _frame_rect(scene, frame)
        ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, ec="#868e96", ls="--", lw=0.8))
        ax.text(x + 6, y + 11, _clip(frame.label, 48), fontsize=7, color="#495057")
    for _, _, points in scene.edges():
        xs, ys = zip(*points, strict=True)
        ax.plot((*xs[:-1], xs[-1]), ys, color="#495057", lw=1)
        ax.annotate(
            "",
            xy=points[-1],
            xytext=points[-2],
            arrowprops={"arrowstyle": "-|>", "color": "#495057", "lw": 1},
        )
    for box in scene.boxes.values():
        x, y = scene.at(box)
        ax.add_patch(
            patches.FancyBboxPatch(
                (x, y),
                BOX_W,
                BOX_H,
                boxstyle="round,pad=0,rounding_size=5",
                fc=_COLOURS[box.family],
                ec="#343a40",
                ls="--" if box.family == "block" else "-",
            )
        )
        ax.text(
            x + BOX_W / 2, y + 18, _clip(box.name, 34), ha="center", fontsize=9, fontweight="bold"
        )
        ax.text(
            x + BOX_W / 2, y + 35, _clip(box.detail, 47), ha="center", fontsize=7.5, color="#343a40"
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()


def plot(
    target: str | Path,
    output: str | Path | None = None,
    *,
    collapse_blocks: bool = False,
    force: bool = False,
) -> Path:
    """Draw a spec file or a build/run folder to ``output`` (``.svg`` or ``.png``; default
    ``<spec name>.svg`` in the working directory)."""
    from specnet.rundir import SPEC_FILE, read_marker
    from specnet.shapes import infer
    from specnet.spec import load_spec

    if output is not None and Path(output).suffix.lower() not in (".svg", ".png"):
        suffix = Path(output).suffix or "no suffix"
        raise UsageError(f"-o {output}: the picture is .svg or .png, not {suffix!r}")
    path = Path(target)
    if path.is_dir():
        if read_marker(path) is None or not (path / SPEC_FILE).is_file():
            raise UsageError(f"{path}: not a specnet build or run (no specnet.json or {SPEC_FILE})")
        plan = infer(load_spec(path / SPEC_FILE))
        spec_file = (read_marker(path) or {}).get("spec_file")
        groups = _matching(block_uses(spec_file), plan) if isinstance(spec_file, str) else {}
    else:
        plan = infer(load_spec(path))
        groups = block_uses(path)
    out = Path(output) if output is not None else Path(f"{plan.name}.svg")
    if out.exists() and not force:
        raise UsageError(f"{out}: already exists; pass --force to replace it")
    scene = layout(plan, groups, collapse_blocks)
    if out.suffix.lower() == ".svg":
        atomic_write_text(out, svg_text(scene), overwrite=True)
    else:
        atomic_write_bytes(out, png_bytes(scene), overwrite=True)
    return out


def _matching(groups: dict[str, tuple[str, str]], plan: Plan) -> dict[str, tuple[str, str]]:
    """The spec file's blocks, if it still expands to this build's layers (else no frames)."""
    names = {step.name for step in plan.layers}
    return groups if set(groups) <= names else {}


def scene_for(plan: Plan, spec_file: str | None, collapse: bool = False) -> Any:
    groups = block_uses(spec_file) if spec_file and Path(spec_file).is_file() else {}
    return layout(plan, _matching(groups, plan), collapse)
