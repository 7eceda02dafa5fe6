"""Draw docs/img/pipeline.png, the README's picture of the pipeline.

Laid out by hand (an automatic layout of dvc.yaml's 40 stages is unreadable): one box per stage
family of dvc.yaml (`pretrain@cvrl_rgb` and `pretrain@cvrl_flow` are one box; the export,
retrieve and linear stages of one modality are one), the arrows the data flow between them.
:func:`check_against_dvc_yaml` verifies that every family of dvc.yaml is drawn (the test suite
calls it, so the picture cannot fall behind the pipeline). Run from the repository root:

    python docs/pipeline_figure.py
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

BLUE, ORANGE, GREEN, PINK = "#c7dcef", "#fde0c5", "#d5ecd4", "#f6d5e5"
# box -> (x, y, label, colour, the dvc.yaml stage families it stands for)
BOXES = {
    "synth": (0, 0, "synth\nbuilt-in videos", BLUE, ["synth"]),
    "extract": (1, 0, "extract\nvideos -> frames", BLUE, ["dataset_listing", "extract"]),
    "flow": (2, -1.25, "flow\nTV-L1 optical flow", BLUE, ["flow_versions", "flow"]),
    "frames_moco": (2, 1.25, "pretrain-frames\nimage MoCo\n(CACL frame CNN)", ORANGE, ["pretrain_frames"]),
    "cvrl": (3, 0, "pretrain\nCVRL RGB, flow", ORANGE, ["pretrain"]),
    "cacl": (3, 1.25, "pretrain\nCACL", ORANGE, ["pretrain_cacl"]),
    "cvtcl_init": (3, -1.25, "pretrain\nCVTCL init\nRGB, flow", ORANGE, ["pretrain_cvtcl_init"]),
    "cvtcl_cotrain": (4, -2.1, "pretrain\nCVTCL co-training", ORANGE, ["pretrain_cvtcl_cotrain"]),
    "eval_rgb": (5, 0.65, "RGB encoders:\nexport, retrieve,\nlinear probe", GREEN,
                 ["export_rgb", "retrieve_rgb", "linear_rgb"]),
    "eval_flow": (5, -0.9, "flow encoders:\nexport, retrieve,\nlinear probe", GREEN,
                  ["export_flow", "retrieve_flow", "linear_flow"]),
    "summary": (6, 0, "summary\ntable, charts,\ngalleries", PINK, ["summary"]),
}
EDGES = [("synth", "extract"), ("extract", "flow"), ("extract", "frames_moco"),
         ("extract", "cvrl"), ("flow", "cvrl"), ("extract", "cvtcl_init"), ("flow", "cvtcl_init"),
         ("frames_moco", "cacl"), ("extract", "cacl"), ("cvtcl_init", "cvtcl_cotrain"),
         ("cvrl", "eval_rgb"), ("cvrl", "eval_flow"), ("cacl", "eval_rgb"),
         ("cvtcl_init", "eval_rgb"), ("cvtcl_init", "eval_flow"), ("cvtcl_cotrain", "eval_rgb"),
         ("cvtcl_cotrain", "eval_flow"), ("eval_rgb", "summary"), ("eval_flow", "summary")]


def check_against_dvc_yaml(root: Path = Path(".")) -> list[str]:
    """Stage families of dvc.yaml that no box stands for (empty: the picture is complete)."""
    import yaml

    stages = yaml.safe_load((Path(root) / "dvc.yaml").read_text())["stages"]
    drawn = {f for box in BOXES.values() for f in box[4]}
    return sorted(set(stages) - drawn)


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(15.5, 5.0))
    sx, sy, w, h = 2.55, 1.0, 2.05, 0.86
    centre = {k: (x * sx, y * sy) for k, (x, y, *_rest) in BOXES.items()}
    for a, b in EDGES:
        (xa, ya), (xb, yb) = centre[a], centre[b]
        ax.annotate("", xy=(xb - w / 2, yb), xytext=(xa + w / 2, ya),
                    arrowprops=dict(arrowstyle="-|>", color="#4d4d4d", lw=1.0, shrinkA=1, shrinkB=1))
    for key, (x, y, label, colour, _) in BOXES.items():
        cx, cy = centre[key]
        ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h,
                                    boxstyle="round,pad=0.02,rounding_size=0.1",
                                    fc=colour, ec="#333333", lw=0.9))
        ax.text(cx, cy, label, ha="center", va="center", fontsize=9)
    ax.set_xlim(-w / 2 - 0.2, 6 * sx + w / 2 + 0.2)
    ax.set_ylim(-2.1 - h, 1.25 + h)
    ax.axis("off")
    ax.set_title("The pipeline (dvc.yaml): `dvc repro` runs every stage; each is a `vsslpipe` command.\n"
                 "RGB encoders are evaluated on the frame store, flow encoders on the flow store.",
                 fontsize=10.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    missing = check_against_dvc_yaml()
    if missing:
        raise SystemExit(f"dvc.yaml stages not in the picture: {', '.join(missing)}")
    draw(Path("docs/img/pipeline.png"))
    print("docs/img/pipeline.png")
