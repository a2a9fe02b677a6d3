"""Add a pooled encoder-feature output to a segmentation ONNX model (for the view gate).

The view / out-of-distribution gate (edge_service/detector/view.py) scores a frame by the
Mahalanobis distance of the network's own encoder features to those of in-distribution
frames (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples and adversarial attacks"). The exported model has only the `logits` output, so this
adds a second output `features` (1, 2 * sum(C_i)): the per-channel mean and standard
deviation over the image of every encoder stage (the inputs of the max-pools and of the
first decoder resize, i.e. the bottleneck). The shallow stages carry the speckle texture
(natural images and other simulators differ there), the deep ones the anatomy. Plain ONNX
ops, so the appliance still needs only onnxruntime; fp32 and QDQ int8 graphs work alike
(the tensors are found by topology, not by name). Rerunnable: an existing `features`
output (and the nodes this script added) is replaced.

`python -m models.view_features [MODEL.onnx ...]` (default: both shipped models).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

log = logging.getLogger(__name__)

FEATURE_OUTPUT = "features"
MODELS = Path(__file__).resolve().parent


PREFIX = "dgs_view_"


def _encoder_tensors(graph: onnx.GraphProto) -> list[str]:
    """[inputs of every MaxPool, input of the first Resize] in topological order."""
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    if not pools or not resizes:
        raise ValueError("graph has no MaxPool/Resize: not the U-Net this script knows")
    return [n.input[0] for n in pools] + [resizes[0].input[0]]


def _strip(g: onnx.GraphProto) -> None:
    keep = [
        n for n in g.node if not any(o.startswith(PREFIX) or o == FEATURE_OUTPUT for o in n.output)
    ]
    del g.node[:]
    g.node.extend(keep)
    outs = [o for o in g.output if o.name != FEATURE_OUTPUT]
    del g.output[:]
    g.output.extend(outs)


def add_feature_output(path: Path) -> bool:
    """(Re)write the `features` output of the model at `path` in place; True if it changed."""
    m = onnx.load(str(path))
    g = m.graph
    before = m.SerializeToString()
    _strip(g)
    parts = []
    for i, t in enumerate(_encoder_tensors(g)):
        p = f"{PREFIX}{i}"
        g.node.extend(
            [
                helper.make_node("GlobalAveragePool", [t], [f"{p}_mean"]),
                helper.make_node("Mul", [t, t], [f"{p}_sq"]),
                helper.make_node("GlobalAveragePool", [f"{p}_sq"], [f"{p}_msq"]),
                helper.make_node("Mul", [f"{p}_mean", f"{p}_mean"], [f"{p}_mean2"]),
                helper.make_node("Sub", [f"{p}_msq", f"{p}_mean2"], [f"{p}_var0"]),
                # Rounding can make E[x^2] - E[x]^2 slightly negative: clamp before the root.
                helper.make_node("Relu", [f"{p}_var0"], [f"{p}_var"]),
                helper.make_node("Sqrt", [f"{p}_var"], [f"{p}_std"]),
            ]
        )
        parts += [f"{p}_mean", f"{p}_std"]
    g.node.append(helper.make_node("Concat", parts, ["dgs_view_cat"], axis=1))
    g.node.append(helper.make_node("Flatten", ["dgs_view_cat"], [FEATURE_OUTPUT], axis=1))
    g.output.append(helper.make_tensor_value_info(FEATURE_OUTPUT, TensorProto.FLOAT, [1, None]))
    onnx.checker.check_model(m)
    if m.SerializeToString() == before:
        return False
    onnx.save(m, str(path))
    return True


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or [MODELS / "dgs_seg.onnx", MODELS / "dgs_seg.int8.onnx"]
    for p in paths:
        log.info("%s: %s", p, "features output written" if add_feature_output(p) else "unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
