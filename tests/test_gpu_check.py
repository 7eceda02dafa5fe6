"""The GPU check runs end to end on CPU in its quick form, so it never rots before a GPU run."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_cpu(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check

    out = tmp_path / "gpu.json"
    result = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text())["quick"] is True
    assert result["tvl1"]["170x128"]["eager"]["within1_vs_opencv"] > 0.95
    assert result["export"]["videos_per_s_loader"] > 0
    assert set(result["mining"]) == {"ucf101_9537", "kinetics_240k"}
    for name, row in result["training"].items():
        assert "error" not in row, (name, row.get("traceback"))
        assert row["samples_per_s_loader"] > 0 and row["gflop_per_sample"] > 0
    methods = {row["method"] for row in result["training"].values()}
    assert methods == {"cvrl", "moco", "cvtcl", "cacl"}
