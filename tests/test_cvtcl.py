"""CVTCL / CoCLR methods: loss composition, co-training mechanics, a short two-stage CPU run."""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import yaml

from conftest import make_synth_dataset
from vsslpipe.data.augment import AugmentConfig
from vsslpipe.data.flowstore import SCHEMA, quantize_flow, write_flow_group
from vsslpipe.data.framestore import FrameStore
from vsslpipe.errors import ConfigError
from vsslpipe.losses import info_nce
from vsslpipe.methods import build_method
from vsslpipe.methods.base import MethodSpec, TrainContext
from vsslpipe.models.checkpoint import load_backbone, save_checkpoint
from vsslpipe.video.synth import SynthSpec

SPEC = SynthSpec(num_classes=3, groups=4, clips_per_group=2, test_groups=1, frames=16,
                 height=32, width=32, fps=25.0, seed=3)
ARGS = dict(queue_size=8, proj_dim=16, temperature=0.1, num_subclips=2)


def write_flow_store(frames: Path, out: Path) -> None:
    """Farneback flow (fast; the mechanics do not need TV-L1) in the flow-store schema."""
    store = FrameStore(frames)
    ids = store.video_ids()
    with h5py.File(out, "w") as f:
        f.attrs.update(schema=SCHEMA, schema_version=1, bound=20.0)
        for vid in ids:
            gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in store.read(vid, 0, None, 1)]
            flow = np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 7, 2, 5, 1.1, 0)
                             for a, b in zip(gray, gray[1:])])
            write_flow_group(f.create_group(vid), quantize_flow(flow))
        f.create_dataset("video_ids", data=np.array(ids, dtype=h5py.string_dtype()))


@pytest.fixture(scope="module")
def two_stream(tmp_path_factory) -> dict:
    from vsslpipe.data.manifest import read_ucf101
    from vsslpipe.video.extract import ExtractSettings, extract_videos

    root = make_synth_dataset(tmp_path_factory.mktemp("cvtcl_videos"), SPEC)
    out = tmp_path_factory.mktemp("cvtcl_data")
    manifest = read_ucf101(root / "videos", root / "ucfTrainTestlist")
    manifest.to_csv(out / "manifest.csv", index=False)
    extract_videos(manifest, root / "videos", out / "frames.h5", ExtractSettings(short_side=0),
                   workers=1, progress=False)
    write_flow_store(out / "frames.h5", out / "flow.h5")
    return {"frames": out / "frames.h5", "flow": out / "flow.h5", "manifest": out / "manifest.csv",
            "root": out}


def spec(name="cvtcl", modality="rgb", **args) -> MethodSpec:
    base = {k: v for k, v in ARGS.items() if name == "cvtcl" or k != "num_subclips"}
    return MethodSpec(name=name, modality=modality, backbone="tiny3d", backbone_args={"width": 4},
                      clip_len=8, stride=1, size=16,
                      augment=AugmentConfig(preset="coclr"), args={**base, **args})


def raw(b=4, t=8, c=3, seed=0):
    """uint8 training views (B, T, 16, 16, C), as the loader workers cut them."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 16, 16, c), generator=g, dtype=torch.uint8)


def cotrain_batch(trained="rgb", index=None, seed=0, **extra):
    """A co-training batch of the ``trained`` phase: query and key views, the frozen stream's
    centre view (keys of :class:`~vsslpipe.data.twostream.TwoStreamSampler`)."""
    frozen = "flow" if trained == "rgb" else "rgb"
    c = {"rgb": 3, "flow": 2}
    return {trained: raw(c=c[trained], seed=seed), f"{trained}_key": raw(c=c[trained], seed=seed + 1),
            f"{frozen}_center": raw(c=c[frozen], seed=seed + 2),
            "index": torch.arange(4) if index is None else index, **extra}


def init_checkpoints(tmp_path: Path, name="cvtcl") -> dict:
    paths = {}
    for m in ("rgb", "flow"):
        torch.manual_seed(1)
        method = build_method(spec(name, m))
        paths[m] = tmp_path / f"init_{m}.pt"
        save_checkpoint(paths[m], {"method": name, "modality": m, "backbone": method.export_spec(),
                                   "backbone_state": method.export_backbone().state_dict(),
                                   "model_state": method.state_dict()})
    return paths


def context(n=12, epochs=4) -> TrainContext:
    labels = np.arange(n) % 3
    return TrainContext(device=torch.device("cpu"), epoch=0, step=0, epochs=epochs,
                        steps_per_epoch=1, dataset_size=n, labels=labels,
                        groups=[f"g{i % 2:02d}" for i in range(n)], rank=0, world_size=1,
                        make_loader=None)


def cotrain_method(tmp_path, name="cvtcl", **args):
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = init_checkpoints(tmp_path, name)
    method = build_method(spec(name, "rgb", stage="cotrain", init_rgb=str(paths["rgb"]),
                               init_flow=str(paths["flow"]), cycles=1, epochs_per_phase=2, **args))
    ctx = context()
    method.on_train_start(ctx)
    g = torch.Generator().manual_seed(5)
    for s in method.streams.values():   # banks as a refresh would leave them
        s.bank.update(torch.arange(12), torch.randn(12, 16, generator=g))
    method.bank_phase.fill_(0)
    return method


def test_init_loss_is_infonce_plus_ltcl_and_coclr_is_cvtcl_without_ltcl():
    views = {"clip0": raw(), "clip1": raw(seed=1), "index": torch.arange(4)}
    results = {}
    for key, name, args in [("cvtcl", "cvtcl", {}), ("off", "cvtcl", dict(use_local=False, use_lt=False)),
                            ("coclr", "coclr", {})]:
        torch.manual_seed(0)
        method = build_method(spec(name, **args))
        torch.manual_seed(1)
        loss, logs = method(views)
        results[key] = (loss.item(), logs)
    full, logs = results["cvtcl"]
    assert full == pytest.approx(logs["loss_nce"].item() + logs["loss_local"].item()
                                 + logs["loss_lt"].item(), rel=1e-5)
    assert results["off"][0] == pytest.approx(results["coclr"][0], rel=1e-6)
    assert results["off"][0] == pytest.approx(results["off"][1]["loss_nce"].item(), rel=1e-6)
    with pytest.raises(ConfigError):
        build_method(spec("coclr", use_local=True))      # CoCLR has no LTCL parameters


def test_two_windows_init_contrasts_two_clips_and_ltcl_keeps_the_query_window():
    """``clips: independent`` (CoCLR's code): query and key views come from two windows; LTCL's
    key view is a second augmentation of the query's window (its sub-clips are L_LT negatives)."""
    from vsslpipe.data.windows import IndependentWindowsSampler

    torch.manual_seed(0)
    method = build_method(spec("cvtcl", clips="independent"))
    sampler = method.make_sampler()
    assert isinstance(sampler, IndependentWindowsSampler) and sampler.extra == ("clip_ltcl",)
    c0, c1, c0b = raw(seed=0), raw(seed=1), raw(seed=2)
    torch.manual_seed(1)
    loss, logs = method({"clip0": c0, "clip1": c1, "clip_ltcl": c0b, "index": torch.arange(4)})
    st = method.streams["rgb"]
    torch.manual_seed(1)
    x1, x2, x2_ltcl = method.augment_rgb(c0, view=0), method.augment_rgb(c1, view=1), \
        method.augment_rgb(c0b, view=1)
    nce, _ = info_nce(st.query(x1), st.key(x2), st.queue.keys, method.cfg.temperature)
    lt, _ = st.ltcl(x1, x2_ltcl, method.cfg)
    assert logs["loss_nce"].item() == pytest.approx(nce.item(), rel=1e-5)
    assert loss.item() == pytest.approx(nce.item() + lt.item(), rel=1e-5)
    with pytest.raises(ConfigError):
        build_method(spec("cvtcl", clips="sometimes"))


def test_two_stream_sampler_gives_the_phase_views_of_shared_windows():
    """Per epoch only the trained stream's views and the frozen stream's centre view; the frozen
    view shows the query's window, the key view a second, independent window."""
    from vsslpipe.data.twostream import TwoStreamSampler
    from vsslpipe.data.views import Spatial

    class Video:
        num_frames, epoch = 30, 0

        def read(self, start, stop, step=1, modality=None):
            idx = np.arange(start, stop)[::step]
            c = 3 if modality == "rgb" else 2
            return np.broadcast_to(idx[:, None, None, None], (len(idx), 6, 8, c)).astype(np.uint8)

    sp = Spatial(size=4, area=(0.3, 1.0), aspect=(0.5, 2.0), flip_p=0.5)
    sampler = TwoStreamSampler(clip_len=4, stride=2, spatial_rgb=sp, spatial_flow=sp,
                               epochs_per_phase=2, first_phase="rgb", two_windows=True, ltcl=("rgb",))
    rng = np.random.default_rng(0)
    video = Video()
    gaps = set()
    for epoch, trained, frozen in ((0, "rgb", "flow"), (1, "rgb", "flow"), (2, "flow", "rgb"),
                                   (3, "flow", "rgb"), (4, "rgb", "flow")):
        video.epoch = epoch
        for _ in range(10):
            out = sampler(video, rng)
            keys = {trained, f"{trained}_key", f"{frozen}_center"} | (
                {"rgb_ltcl"} if trained == "rgb" else set())
            assert set(out) == keys
            first = out[trained][:, 0, 0, 0]
            assert np.array_equal(out[f"{frozen}_center"][:, 0, 0, 0], first)   # same window
            if trained == "rgb":
                assert np.array_equal(out["rgb_ltcl"][:, 0, 0, 0], first)
            assert out[f"{frozen}_center"].shape == (4, 4, 4, 3 if frozen == "rgb" else 2)
            gaps.add(int(out[f"{trained}_key"][0, 0, 0, 0]) - int(first[0]))
    assert len(gaps) > 5                  # the windows differ, in both orders
    same = TwoStreamSampler(4, 2, sp, sp)(video, rng)
    assert np.array_equal(same["rgb"][:, 0, 0, 0], same["rgb_key"][:, 0, 0, 0])   # epoch 4: rgb


def test_cotrain_two_windows_key_view_from_the_second_window(tmp_path):
    method = cotrain_method(tmp_path, topk=0, ltcl_rgb=False, clips="independent")
    batch = cotrain_batch("rgb")
    torch.manual_seed(2)
    loss, _ = method(batch)
    st = method.streams["rgb"]
    torch.manual_seed(2)
    x1, x2 = method.augment_rgb(batch["rgb"], view=0), method.augment_rgb(batch["rgb_key"], view=1)
    expected, _ = info_nce(st.query(x1), st.key(x2), st.queue.keys, method.cfg.temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cotrain_k0_is_instance_discrimination(tmp_path):
    method = cotrain_method(tmp_path, topk=0, ltcl_rgb=False)
    batch = cotrain_batch("rgb")
    torch.manual_seed(2)
    loss, _ = method(batch)
    st = method.streams["rgb"]
    torch.manual_seed(2)
    x1, x2 = method.augment_rgb(batch["rgb"], view=0), method.augment_rgb(batch["rgb_key"], view=1)
    expected, _ = info_nce(st.query(x1), st.key(x2), st.queue.keys, method.cfg.temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cotrain_positives_are_key_plus_mined_bank_entries(tmp_path):
    method = cotrain_method(tmp_path, topk=2, ltcl_rgb=False)
    st, sf = method.streams["rgb"], method.streams["flow"]
    batch = cotrain_batch("rgb", index=torch.tensor([0, 3, 5, 7]))
    st.queue.index[:4] = torch.tensor([1, 2, 9, 11])
    torch.manual_seed(3)
    loss, logs = method(batch)
    # by hand: flow-space neighbours (brute force), RGB bank embeddings as extra positives
    torch.manual_seed(3)
    x1, x2 = method.augment_rgb(batch["rgb"], view=0), method.augment_rgb(batch["rgb_key"], view=1)
    q, k = st.query(x1), st.key(x2)
    sf.eval()
    with torch.no_grad():     # the frozen stream's centre view: normalised, not augmented
        center = batch["flow_center"].permute(0, 4, 1, 2, 3).float() * (40 / 255) - 20
        z = sf.query((center / 20).clamp(-1, 1))
    sims = z @ sf.bank.emb.T
    sims[torch.arange(4), batch["index"]] = -float("inf")
    mined = sims.topk(2, dim=1).indices
    total = 0.0
    for i in range(4):
        pos = [k[i], *st.bank.emb[mined[i]]]
        negs = [st.queue.keys[j] for j in range(8) if int(st.queue.index[j]) not in mined[i].tolist()]
        e = lambda v: torch.exp(q[i] @ v / 0.1)   # noqa: E731
        p = sum(e(v) for v in pos)
        total += -torch.log(p / (p + sum(e(v) for v in negs)))
    assert loss.item() == pytest.approx(total.item() / 4, rel=1e-4)
    assert 0.0 <= float(logs["mined_precision"]) <= 1.0


def test_frozen_stream_gets_no_gradient_and_does_not_move(tmp_path):
    method = cotrain_method(tmp_path, topk=2)
    ctx = context()
    method.on_epoch_start(0, ctx)          # RGB phase (banks already current: no refresh)
    frozen_before = {k: v.clone() for k, v in method.streams["flow"].state_dict().items()}
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2, weight_decay=1e-4)
    batch = cotrain_batch("rgb")
    loss, logs = method(batch)
    assert "loss_lt" in logs              # LTCL on for RGB in co-training (paper)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad
               for p in method.streams["flow"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in method.streams["rgb"].query_parameters())
    opt.step()
    method.after_step(1, ctx)
    for k, v in method.streams["flow"].state_dict().items():
        assert torch.equal(v, frozen_before[k]), k
    # the flow phase: roles swap, LTCL off for flow (paper)
    method.bank_phase.fill_(1)
    method.on_epoch_start(2, ctx)
    assert method.trained == "flow" and not any(
        p.requires_grad for p in method.streams["rgb"].query_parameters())
    with pytest.raises(RuntimeError, match="rgb phase reached the flow phase"):
        method(batch)                     # a batch of the other phase is a schedule bug
    _, logs = method(cotrain_batch("flow"))
    assert "loss_lt" not in logs


def test_coclr_code_switches_queue_mining(tmp_path):
    method = cotrain_method(tmp_path, "coclr", topk=2, mining_source="queue",
                            same_source_positive=True, drop_self_prob=0.9, wait_full_queue=True)
    batch = cotrain_batch("rgb")
    st = method.streams["rgb"]
    st.queue.reset()
    loss, _ = method(batch)                 # queue not full: no update of the encoders
    loss.backward()
    assert all(p.grad is None for p in st.query_parameters())
    method.after_step(1, context())
    loss, _ = method({**batch, "index": torch.arange(4, 8)})
    method.after_step(2, context())
    assert st.queue.full
    loss, logs = method(batch)
    loss.backward()
    assert any(p.grad is not None for p in st.query_parameters())


def test_cotrain_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        build_method(spec(stage="cotrain"))
    method = cotrain_method(tmp_path)
    with pytest.raises(ConfigError):
        method.on_train_start(context(epochs=5))


def _params(data: dict, out: Path) -> Path:
    base = yaml.safe_load(Path("params.yaml").read_text())
    d = base["pretrain"]["defaults"]
    d.update(backbone="tiny3d", backbone_args={"width": 8}, clip_len=8, stride=1, size=24,
             batch_size=6, workers=0, threads=1, device="cpu", checkpoint_every=100,
             out_dir=str(out / "models"), live_dir=str(out / "dvclive"), lr=3e-3, warmup_epochs=0)
    base["data"] = {"frames": str(data["frames"]), "flow": str(data["flow"]),
                    "manifest": str(data["manifest"])}
    # mild augmentation: the test checks the mechanics (losses fall), not representation quality
    d["augment"] = {"preset": "coclr", "overrides": {"flip_p": 0.0, "jitter_p": 0.0, "gray_p": 0.0,
                                                     "blur_p": [0.0, 0.0]}}
    cv = dict(ARGS, queue_size=12, proj_dim=32)
    models = out / "models"
    base["pretrain"]["experiments"] = {
        "init_rgb": {"method": "cvtcl", "epochs": 30, "method_args": {"cvtcl": cv}},
        "init_flow": {"method": "cvtcl", "modality": "flow", "epochs": 30,
                      "method_args": {"cvtcl": cv}},
        "cotrain": {"method": "cvtcl", "epochs": 32, "method_args": {"cvtcl": dict(
            cv, stage="cotrain", init_rgb=str(models / "init_rgb/final.pt"),
            init_flow=str(models / "init_flow/final.pt"), topk=2, cycles=2, epochs_per_phase=8,
            export_other_to=str(models / "cotrain_flow/final.pt"))}},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.slow
def test_two_stage_cpu_run_losses_fall(two_stream, tmp_path):
    from test_pretrain import train

    params = _params(two_stream, tmp_path)
    hist = {}
    for name in ("init_rgb", "init_flow", "cotrain"):
        train(params, name)
        hist[name] = [row["loss"] for row in
                      torch.load(tmp_path / "models" / name / "final.pt", weights_only=True)["history"]]
    mean = lambda xs: sum(xs) / len(xs)   # noqa: E731
    for name in ("init_rgb", "init_flow"):   # epoch 1 sees a random queue: start from epoch 2
        assert mean(hist[name][-5:]) < mean(hist[name][1:6]) - 0.3, hist[name]
    phases = [hist["cotrain"][i:i + 8] for i in range(0, 32, 8)]   # rgb, flow, rgb, flow
    for first, second in ((phases[0], phases[2]), (phases[1], phases[3])):
        # each phase starts with freshly mined positives (the loss jumps, then falls); the
        # second cycle of a stream reaches below its first cycle's average
        assert min(second[1:]) < mean(first[1:]), hist["cotrain"]
    rgb, meta = load_backbone(tmp_path / "models/cotrain/final.pt", expect_modality="rgb")
    flow, meta_flow = load_backbone(tmp_path / "models/cotrain_flow/final.pt", expect_modality="flow")
    assert meta["method"] == meta_flow["method"] == "cvtcl"
    out = flow(torch.zeros(1, 2, 8, 24, 24))
    assert out.shape == (1, 64) and rgb(torch.zeros(1, 3, 8, 24, 24)).shape == (1, 64)


def test_cotrain_coclr_equals_cvtcl_without_ltcl(tmp_path):
    losses = []
    for name, args in [("coclr", {}), ("cvtcl", dict(ltcl_rgb=False))]:
        torch.manual_seed(0)
        method = cotrain_method(tmp_path / name, name, topk=2, **args)
        torch.manual_seed(4)
        loss, _ = method(cotrain_batch("rgb"))
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.slow
def test_cotrain_resume_inside_a_phase_is_identical(two_stream, tmp_path):
    from test_pretrain import train

    finals = []
    for run, stop in (("straight", None), ("killed", 3)):
        params = _params(two_stream, tmp_path / run)
        p = yaml.safe_load(params.read_text())
        exps = p["pretrain"]["experiments"]
        exps["init_rgb"]["epochs"] = exps["init_flow"]["epochs"] = 2
        exps["cotrain"].update(epochs=4, checkpoint_every=1)
        exps["cotrain"]["method_args"]["cvtcl"].update(cycles=1, epochs_per_phase=2)
        params.write_text(yaml.safe_dump(p))
        for name in ("init_rgb", "init_flow"):
            train(params, name)
        if stop:   # killed inside the flow phase, then resumed
            train(params, "cotrain", stop_after=stop)
            assert not (tmp_path / run / "models/cotrain/final.pt").exists()
        train(params, "cotrain")
        finals.append(torch.load(tmp_path / run / "models/cotrain/final.pt", weights_only=True))
    for key, value in finals[0]["model_state"].items():
        assert torch.equal(value, finals[1]["model_state"][key]), key
