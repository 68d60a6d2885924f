"""Training side: FER2013 loaders, the fit CLI (+ resume), the evaluate CLI, metrics, augmentation.

Everything runs on tiny synthetic data (a class-dependent bright bar, so the classes are
learnable) with the `tiny` architecture and one torch thread.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emobatch.types import EMOTIONS
from training import evaluate as ev
from training import scoring as sc
from training.augment import mixup, random_affine, random_erasing
from training.data import Split, TrainingError, load_fer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Folder names used for each EMOTIONS index: some aliases, some canonical.
FOLDER = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sad", 5: "surprised", 6: "neutral"}
CSV_COUNTS = {"Training": 70, "PublicTest": 21, "PrivateTest": 7}
N_TRAIN_PER_CLASS, N_TEST_PER_CLASS = 8, 3


def face(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 'face': dark noise with a bright horizontal bar at a class-dependent row
    (flip-invariant, so the training augmentation keeps it learnable)."""
    img = rng.integers(0, 60, (48, 48), dtype=np.uint8)
    r = 3 + 6 * label
    img[r:r + 5, 8:40] = rng.integers(200, 256, (5, 32), dtype=np.uint8)
    return img


def run(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, f"{args[0]} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory) -> tuple[Path, list[dict]]:
    """fer2013.csv with 70 Training, 21 PublicTest and 7 PrivateTest rows (interleaved)."""
    rng = np.random.default_rng(0)
    rows = []
    for usage, n in CSV_COUNTS.items():
        rows += [{"emotion": i % 7, "Usage": usage} for i in range(n)]
    rows = [rows[i] for i in rng.permutation(len(rows))]  # PrivateTest rows not at the end
    for r in rows:
        r["pixels"] = " ".join(map(str, face(r["emotion"], rng).ravel()))
    path = tmp_path_factory.mktemp("csv") / "fer2013.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["emotion", "pixels", "Usage"])
        w.writeheader()
        w.writerows(rows)
    return path, rows


@pytest.fixture(scope="module")
def fer_folder(tmp_path_factory) -> Path:
    """train/<class>/Training_i.png, test/<class>/PublicTest_i.png (alias folder names),
    a contempt/ class in both, and one PrivateTest_ image inside test/."""
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("folder")
    k = 0
    for top, prefix, n in (("train", "Training", N_TRAIN_PER_CLASS), ("test", "PublicTest", N_TEST_PER_CLASS)):
        for label, name in FOLDER.items():
            d = root / top / name
            d.mkdir(parents=True)
            for _ in range(n):
                cv2.imwrite(str(d / f"{prefix}_{k}.png"), face(label, rng))
                k += 1
        (root / top / "contempt").mkdir()
        cv2.imwrite(str(root / top / "contempt" / f"{prefix}_{k}.png"), face(0, rng))
        k += 1
    cv2.imwrite(str(root / "test" / "happiness" / "PrivateTest_999.png"), face(3, rng))
    return root


# ----------------------------------------------------------------------------- data

def test_load_csv_splits_and_labels(fer_csv):
    path, rows = fer_csv
    data = load_fer(path)
    assert {s: len(data[s]) for s in CSV_COUNTS} == CSV_COUNTS
    for usage in CSV_COUNTS:  # the CSV's label order (already EMOTIONS order) is kept
        expect = [r["emotion"] for r in rows if r["Usage"] == usage]
        assert data[usage].labels.tolist() == expect
        assert data[usage].images.shape == (len(expect), 48, 48)
        assert data[usage].images.dtype == np.uint8 and data[usage].labels.dtype == np.int64
    first_private = next(i for i, r in enumerate(rows) if r["Usage"] == "PrivateTest")
    assert data["PrivateTest"].paths[0].endswith(f":{first_private}")
    want = np.array(rows[first_private]["pixels"].split(), dtype=np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(data["PrivateTest"].images[0], want)
    assert load_fer(path.parent)["Training"].labels.tolist() == data["Training"].labels.tolist()


def test_load_folder_aliases_and_contempt(fer_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="training.data"):
        data = load_fer(fer_folder)
    assert len(data["Training"]) == 7 * N_TRAIN_PER_CLASS
    assert len(data["PublicTest"]) == 7 * N_TEST_PER_CLASS
    assert len(data["PrivateTest"]) == 1 and data["PrivateTest"].labels.tolist() == [3]
    for split in data.values():
        for path, label in zip(split.paths, split.labels):
            folder = Path(path).parent.name
            assert folder != "contempt"
            assert label == {v: k for k, v in FOLDER.items()}[folder]
    for split in ("Training", "PublicTest"):
        assert sorted(set(data[split].labels.tolist())) == list(range(7))
    tr = data["Training"]
    for folder, emotion in (("anger", "angry"), ("happiness", "happy"), ("surprised", "surprise")):
        got = {int(lab) for path, lab in zip(tr.paths, tr.labels) if Path(path).parent.name == folder}
        assert got == {EMOTIONS.index(emotion)}
    assert any("contempt" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


# ----------------------------------------------------------------------------- fit

@pytest.fixture(scope="module")
def csv_run(fer_csv, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("fit_csv")
    args = ["--data", str(fer_csv[0]), "--out", f"{tmp}/w/", "--ckpt-dir", str(tmp / "ck"),
            "--arch", "tiny", "--batch-size", "16", "--threads", "1"]
    run("training.fit", *args, "--epochs", "1")
    first = (tmp / "ck" / "history.csv").read_text().splitlines()
    meta1 = json.loads((tmp / "w" / "emobatch_fer.json").read_text())
    run("training.fit", *args, "--epochs", "2", "--resume")
    return {"tmp": tmp, "first_history": first, "meta1": meta1}


def test_fit_csv_writes_weights_checkpoint_history(csv_run):
    tmp, meta = csv_run["tmp"], csv_run["meta1"]
    assert (tmp / "w" / "emobatch_fer.pt").is_file() and (tmp / "ck" / "checkpoint.pt").is_file()
    assert len(meta["sha256"]) == 64 and meta["labels"] == list(EMOTIONS) and meta["arch"] == "tiny"
    assert 0.0 <= meta["metrics"]["publictest_acc"] <= 1.0
    assert meta["command"].startswith("python -m training.fit ") and "--epochs 1" in meta["command"]
    hist = csv_run["first_history"]
    assert hist[0].split(",") == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                                  "ema_val_loss", "ema_val_acc", "seconds"]
    assert len(hist) == 2 and hist[1].startswith("1,")


def test_fit_resume_continues_history(csv_run):
    tmp = csv_run["tmp"]
    with open(tmp / "ck" / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    lines = (tmp / "ck" / "history.csv").read_text().splitlines()
    assert lines[:2] == csv_run["first_history"]  # the first epoch's row is kept as it was
    ck = torch.load(tmp / "ck" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 1 and len(ck["history"]) == 2
    from emobatch.faces.emotion.weights import load_weights
    loaded = load_weights(tmp / "w" / "emobatch_fer.pt")  # sidecar sha256 still matches
    assert loaded.config["arch"] == "tiny"


def test_seeded_run_repeats_exactly_also_when_resumed(fer_folder, tmp_path, monkeypatch):
    """The shipped weights' recorded command must reproduce them: same seed, same numbers,
    whether the run went straight through or was interrupted and resumed."""
    import training.fit as fit

    def go(name: str, resume: bool = False) -> list[dict]:
        argv = ["--data", str(fer_folder), "--out", str(tmp_path / name / "w"),
                "--ckpt-dir", str(tmp_path / name), "--arch", "tiny", "--epochs", "2",
                "--batch-size", "16", "--threads", "1"] + (["--resume"] if resume else [])
        threads = torch.get_num_threads()
        try:
            return fit.main(fit.get_args_parser().parse_args(argv), argv=argv)["history"]
        finally:
            torch.set_num_threads(threads)

    straight = go("straight")
    real_write = fit.write_history

    def stop_after_first_epoch(path, history):
        real_write(path, history)
        raise KeyboardInterrupt  # the checkpoint of epoch 1 is already saved

    monkeypatch.setattr(fit, "write_history", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        go("resumed")
    monkeypatch.setattr(fit, "write_history", real_write)
    resumed = go("resumed", resume=True)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert drop(resumed) == drop(straight)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def folder_run(fer_folder, tmp_path_factory) -> Path:
    """One epoch on the folder layout, in-process (saves a Python + torch start-up)."""
    from training.fit import get_args_parser, main

    tmp = tmp_path_factory.mktemp("fit_folder")
    argv = ["--data", str(fer_folder), "--out", str(tmp / "w"), "--ckpt-dir", str(tmp / "ck"),
            "--arch", "tiny", "--epochs", "1", "--batch-size", "16", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        res = main(get_args_parser().parse_args(argv), argv=argv)
    finally:
        torch.set_num_threads(threads)
    assert len(res["history"]) == 1 and 0.0 <= res["best_publictest_acc"] <= 1.0
    return tmp


def test_fit_folder_layout(folder_run):
    assert (folder_run / "w" / "emobatch_fer.pt").is_file()
    assert (folder_run / "w" / "emobatch_fer.json").is_file()
    assert len((folder_run / "ck" / "history.csv").read_text().splitlines()) == 2


def test_fit_init_warm_restart_records_provenance(fer_folder, folder_run, tmp_path):
    """--init starts from earlier weights (a run continued on another day) and the
    exported config says which weights, by sha256 and command, it started from."""
    from emobatch.faces.emotion.weights import load_weights
    from training.fit import get_args_parser, main

    src = folder_run / "w" / "emobatch_fer.pt"
    argv = ["--data", str(fer_folder), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--lr", "0", "--warmup-epochs", "0", "--init", str(src)]
    threads = torch.get_num_threads()
    try:
        main(get_args_parser().parse_args(argv), argv=argv)
        with pytest.raises(SystemExit, match="architecture 'tiny'"):
            main(get_args_parser().parse_args(argv + ["--arch", "vgg_s"]), argv=argv)
    finally:
        torch.set_num_threads(threads)
    before, after = load_weights(src), load_weights(tmp_path / "w" / "emobatch_fer.pt")
    init = after.config["init"]
    assert init["sha256"] == before.sha256 and init["command"] == before.config["command"]
    # lr 0: the convolutions are the initial ones (EMA averaging may round the last bit)
    sb, sa = before.model.state_dict(), after.model.state_dict()
    convs = [k for k in sb if k.endswith("weight") and sb[k].ndim == 4]
    assert convs and all(torch.allclose(sb[k], sa[k], atol=1e-6) for k in convs)
    metrics = after.config["metrics"]  # every TTA mode scored once, at the end
    assert {f"publictest_acc_{m}_tta" for m in ("flip", "zoom", "tencrop")} <= set(metrics)
    assert after.config["tta"] in ("none", "flip", "zoom", "tencrop")


# ----------------------------------------------------------------------------- evaluate CLI

def test_evaluate_cli(fer_folder, folder_run, tmp_path):
    report = tmp_path / "r.json"
    p = run("training.evaluate", "--data", str(fer_folder), "--weights",
            str(folder_run / "w" / "emobatch_fer.pt"), "--json", str(report),
            "--history", str(folder_run / "ck" / "history.csv"), "--fit-temperature",
            "--threads", "1")
    r = json.loads(report.read_text())
    n_public = 7 * N_TEST_PER_CLASS  # PrivateTest_999.png and contempt/ are not counted
    assert r["n"] == n_public and r["split"] == "PublicTest"
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
    assert list(r["per_class"]) == list(EMOTIONS) == r["labels"]
    assert all(c["support"] == N_TEST_PER_CLASS for c in r["per_class"].values())
    cm = np.array(r["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == n_public
    assert np.trace(cm) / n_public == pytest.approx(r["accuracy"])
    assert 0.0 <= r["ece"] <= 1.0 and r["nll"] > 0
    assert r["tta"] in ("none", "flip") and len(r["weights_sha256"]) == 64
    ts = r["temperature_scaling"]
    assert ts["temperature"] > 0 and ts["nll_after"] <= ts["nll_before"] + 1e-9
    for name in ("confusion_matrix.png", "calibration.png", "training_curves.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    cal = json.loads((tmp_path / "calibration.json").read_text())
    assert cal["temperature"] == pytest.approx(ts["temperature"]) and len(cal["bins_before"]) == 15
    assert json.loads((tmp_path / "confusion_matrix.json").read_text())["counts"] == r["confusion_matrix"]
    assert "accuracy" in p.stdout and "macro-F1" in p.stdout and "happy" in p.stdout
    assert "contempt" in p.stderr  # load_fer's skip warning reaches the user


def test_select_split_fallback_never_uses_private():
    def sp(n: int, label: int) -> Split:
        return Split(np.zeros((n, 48, 48), np.uint8), np.full(n, label, np.int64), [str(label)] * n)

    data = {"Training": sp(2, 0), "PublicTest": sp(0, 0), "PrivateTest": sp(3, 1), "Extra": sp(1, 2)}
    split, name = ev.select_split(data, "PublicTest")
    assert name == "Training+Extra" and split.labels.tolist() == [0, 0, 2]
    split, name = ev.select_split(data, "PrivateTest")
    assert name == "PrivateTest" and len(split) == 3
    with pytest.raises(TrainingError, match="PrivateTest"):  # a library function raises
        ev.select_split({"Training": sp(0, 0), "PublicTest": sp(0, 0), "PrivateTest": sp(3, 1)},
                        "PublicTest")


def test_evaluate_other_dataset_six_classes(folder_run, tmp_path, capsys):
    """A CK+48-style set: <class>/ folders without FER2013's file-name prefixes, 6 of the 7
    classes (no neutral) and a contempt/ folder. The report names the data as class folders,
    not a FER2013 split, and its macro averages cover the 6 classes."""
    rng = np.random.default_rng(3)
    names = {0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sadness", 5: "surprise"}
    for label, name in {**names, 6: "contempt"}.items():
        (tmp_path / "ck" / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "ck" / name / f"S{label:03d}_{i}.png"), face(label % 6, rng))
    report = tmp_path / "r.json"
    args = ev.get_args_parser().parse_args([
        "--data", str(tmp_path / "ck"), "--weights", str(folder_run / "w" / "emobatch_fer.pt"),
        "--json", str(report), "--tta", "none", "--threads", "1", "--align", "off"])
    threads = torch.get_num_threads()
    try:
        r = ev.main(args)
    finally:
        torch.set_num_threads(threads)
    assert r == json.loads(report.read_text())
    assert r["split"] == "class folders (no FER2013 split)" and r["fer2013_split"] is False
    assert r["n"] == 18 and r["classes"] == [EMOTIONS[i] for i in range(6)]
    assert r["per_class"]["neutral"]["support"] == 0
    f1 = [r["per_class"][c]["f1"] for c in r["classes"]]
    assert r["macro_f1"] == pytest.approx(np.mean(f1))
    out = capsys.readouterr().out
    assert "PublicTest" not in out and "class folders (no FER2013 split)" in out
    assert "macro avg (6 classes)" in out and "(not in the data)" in out


def test_macro_f1_ignores_classes_the_data_lacks():
    labels = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # one prediction into class 2, which the data does not have
    m = sc.metrics(np.eye(3)[pred], labels, 3, ["a", "b", "c"])
    assert m["classes"] == ["a", "b"] and m["per_class"]["c"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["accuracy"] == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------- metrics

def test_confusion_and_metrics():
    labels = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    cm = sc.confusion(pred, labels, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    m = sc.metrics(np.eye(3)[pred], labels, 3, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def _toy(conf: float, acc: float, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence `conf` on class 0 for every row; a fraction `acc` truly class 0."""
    probs = np.full((n, 7), (1 - conf) / 6)
    probs[:, 0] = conf
    labels = np.where(np.arange(n) < round(acc * n), 0, 1)
    return probs, labels


def test_ece():
    assert sc.ece(*_toy(0.8, 0.8)) == pytest.approx(0.0, abs=1e-9)
    p1, l1 = _toy(0.6, 0.6, 500)
    p2, l2 = _toy(0.9, 0.9, 500)
    assert sc.ece(np.concatenate([p1, p2]), np.concatenate([l1, l2])) == pytest.approx(0.0, abs=1e-9)
    assert sc.ece(*_toy(0.99, 0.5)) == pytest.approx(0.49)
    bins = sc.reliability(*_toy(0.99, 0.5))
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 1000 and bins[-1]["count"] == 1000


def test_fit_temperature_overconfident():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (3000, 7))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = (p_true.cumsum(1) > rng.random((3000, 1))).argmax(1)  # sampled: calibrated at T=1
    over = np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True)  # 3x sharper: overconfident
    t = sc.fit_temperature(over, labels)
    assert 2.0 < t < 4.5
    scaled = sc.scale_probs(over, t)
    assert sc.nll(scaled, labels) < sc.nll(over, labels) - 0.1
    assert sc.ece(scaled, labels) < sc.ece(over, labels)
    assert (scaled.argmax(1) == over.argmax(1)).all()  # accuracy unchanged
    assert sc.fit_temperature(np.zeros((0, 7)), np.zeros(0, np.int64)) == 1.0


# ----------------------------------------------------------------------------- augmentation

def test_random_affine():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 48, 48, generator=g)
    y = random_affine(x, generator=g)
    assert y.shape == x.shape and torch.isfinite(y).all()
    ident = random_affine(x, max_deg=0, max_shift=0, scale=(1, 1), flip=False, generator=g)
    torch.testing.assert_close(ident, x, atol=1e-4, rtol=0)


def test_random_erasing():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 48, 48, generator=g) + 0.5  # no zeros before erasing
    assert torch.equal(random_erasing(x, p=0.0, generator=g), x)
    y = random_erasing(x, p=1.0, generator=g)
    erased = y == 0
    assert erased.flatten(1).any(1).all()  # every image lost a rectangle
    assert torch.equal(y[~erased], x[~erased]) and erased.float().mean() < 0.5


def test_mixup_blends_each_image_with_one_partner():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 48, 48, generator=g)
    y, perm, lam = mixup(x, 0.4, generator=g)
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(y, lam * x + (1 - lam) * x[perm])


def test_fit_with_mixup_and_stronger_augmentation(fer_folder, tmp_path):
    import training.fit as fit
    from emobatch.faces.emotion.weights import load_weights

    argv = ["--data", str(fer_folder), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--mixup", "0.4", "--rotate", "15", "--shift", "0.2",
            "--scale", "0.8", "1.2"]
    res = fit_main(argv)
    row = res["history"][0]
    assert np.isfinite(row["train_loss"]) and 0.0 <= row["train_acc"] <= 1.0
    command = load_weights(tmp_path / "w" / "emobatch_fer.pt").config["command"]
    assert "--mixup 0.4" in command and "--scale 0.8 1.2" in command


def test_to_emotions_order_reorders_columns_and_refuses_other_labels():
    """Evaluation and distillation targets read a model's columns by its config's labels."""
    probs = np.arange(14, dtype=np.float32).reshape(2, 7)
    rev = list(EMOTIONS)[::-1]
    np.testing.assert_array_equal(ev.to_emotions_order(probs, rev), probs[:, ::-1])
    assert ev.to_emotions_order(probs, EMOTIONS) is probs
    with pytest.raises(TrainingError, match="not the seven"):
        ev.to_emotions_order(probs, [*EMOTIONS[:6], "contempt"])


def test_distill_loss_is_kl_up_to_the_targets_entropy():
    from training.distill import distill_loss, soften
    g = torch.Generator().manual_seed(0)
    logits, p = torch.randn(5, 7, generator=g), torch.rand(5, 7, generator=g)
    p = p / p.sum(1, keepdim=True)
    torch.testing.assert_close(soften(p, 1.0), p)
    q = soften(p, 2.0)
    assert torch.all(q.max(1).values <= p.max(1).values)  # a temperature > 1 flattens
    kl = F.kl_div(F.log_softmax(logits / 2, 1), q, reduction="batchmean") * 4
    entropy = -(q * q.log()).sum(1).mean() * 4
    torch.testing.assert_close(distill_loss(logits, q, 2.0), kl + entropy)


def test_fit_distill_records_teachers_and_caches_their_targets(fer_folder, folder_run, tmp_path):
    """--distill: an earlier model (here the folder run's) scores the training images once;
    the config names it by sha256, and a resumed run reads its targets from the cache."""
    import training.fit as fit
    from emobatch.faces.emotion.weights import load_weights

    teacher = folder_run / "w" / "emobatch_fer.pt"
    argv = ["--data", str(fer_folder), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--mixup", "0.4", "--distill", str(teacher), str(teacher),
            "--distill-alpha", "0.7"]
    threads = torch.get_num_threads()
    try:
        res = fit.main(fit.get_args_parser().parse_args(argv), argv=argv)
        cache = tmp_path / "ck" / "teacher_probs.npz"
        stamp = cache.stat().st_mtime_ns
        fit.main(fit.get_args_parser().parse_args(argv + ["--epochs", "2", "--resume"]),
                 argv=argv)
    finally:
        torch.set_num_threads(threads)
    assert cache.stat().st_mtime_ns == stamp  # read, not recomputed
    assert np.isfinite(res["history"][0]["train_loss"])
    with np.load(cache) as z:
        probs = z["probs"]
    assert probs.shape == (7 * N_TRAIN_PER_CLASS, 7)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    config = load_weights(tmp_path / "w" / "emobatch_fer.pt").config
    distill = config["distill"]
    assert distill["alpha"] == 0.7 and distill["temperature"] == 2.0
    assert [t["sha256"] for t in distill["teachers"]] == [load_weights(teacher).sha256] * 2
    assert "--distill " in config["command"]


def test_pair_stats_and_ensemble_accuracies():
    from training.ensemble import ensemble_accuracies, pair_stats

    labels = np.array([0, 1, 2, 0])
    pa = np.eye(3)[[0, 1, 0, 1]]  # right, right, wrong, wrong
    pb = np.eye(3)[[0, 2, 2, 1]] * 0.9 + 0.1 / 3  # right, wrong, right, wrong
    s = pair_stats(pa, pb, labels)
    assert s == {"disagree": 0.5, "both_wrong": 0.25, "oracle": 0.75}
    rows = ensemble_accuracies({"a": pa, "b": pb, "c": pa}, labels)
    assert [r["models"] for r in rows] == [["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"]]
    assert rows[1]["accuracy"] == 0.5 and rows[3]["accuracy"] == 0.5
    assert len(ensemble_accuracies({"a": pa, "b": pb, "c": pa}, labels, max_size=2)) == 3


def test_ensemble_cli(fer_folder, folder_run, tmp_path):
    """Two copies of the same weights: they never disagree and their mean scores like one."""
    w = folder_run / "w" / "emobatch_fer.pt"
    copy = tmp_path / "copy" / "emobatch_fer.pt"
    copy.parent.mkdir()
    copy.write_bytes(w.read_bytes())
    report = tmp_path / "e.json"
    p = run("training.ensemble", "--data", str(fer_folder), str(w), str(copy), "--tta", "flip",
            "--json", str(report), "--threads", "1")
    r = json.loads(report.read_text())
    assert r["n"] == 7 * N_TEST_PER_CLASS and r["split"] == "PublicTest"
    acc = r["models"][0]["accuracy"]
    assert [m["tta"] for m in r["models"]] == ["flip", "flip"]
    assert r["pairs"][0]["disagree"] == 0.0 and r["pairs"][0]["oracle"] == pytest.approx(acc)
    assert r["ensembles"] == [{"models": [r["models"][0]["name"], r["models"][1]["name"]],
                               "accuracy": pytest.approx(acc)}]
    assert [m["name"] for m in r["models"]] == ["w/emobatch_fer.pt", "copy/emobatch_fer.pt"]
    assert "disagree" in p.stdout and "mean of" in p.stdout


def test_photos_are_detected_and_aligned_like_inference(tmp_path):
    """A labelled folder of photos (not crops) gets the pipeline's detection + alignment."""
    import shutil

    import cv2

    from emobatch.faces.align import Aligner
    from emobatch.faces.detection.detector import Detector
    from emobatch.media.sources import read_image

    photo = ROOT / "examples" / "sample" / "astronaut.jpg"
    (tmp_path / "happiness").mkdir()
    shutil.copy(photo, tmp_path / "happiness" / "a.jpg")
    cv2.imwrite(str(tmp_path / "happiness" / "blank.png"), np.full((200, 200), 90, np.uint8))
    split = load_fer(tmp_path)["PublicTest"]
    assert len(split) == 1 and split.labels.tolist() == [EMOTIONS.index("happy")]  # blank skipped
    img = read_image(photo).image
    expected = Aligner().align(img, Detector().detect(img)[[0]]).crops[0]
    np.testing.assert_array_equal(split.images[0], expected)
    off = load_fer(tmp_path, align="off")["PublicTest"]
    assert len(off) == 2  # plain resize keeps both


def test_quantize_adds_int8_calibration_that_loads_exactly(fer_folder, folder_run, tmp_path):
    """training.quantize writes the observers; the int8 backend rebuilt from them at load
    time is the network converted right after calibration, and the float weights are kept."""
    from emobatch.faces.emotion.runtimes import convert_int8, load_runtime, prepare_int8
    from emobatch.errors import BackendUnavailable
    from emobatch.faces.emotion.preprocess import to_tensor
    from emobatch.faces.emotion.weights import load_weights
    from training.quantize import calibrate, get_args_parser, main

    src = folder_run / "w" / "emobatch_fer.pt"
    out = tmp_path / "q.pt"
    info = main(get_args_parser().parse_args(["--data", str(fer_folder), "--weights", str(src),
                                              "--out", str(out), "--faces", "20", "--eval"]))
    assert info["faces"] == 20 and set(info["publictest"]) == {"none", "flip", "zoom", "tencrop"}
    before, after = load_weights(src), load_weights(out)
    assert after.config["int8"]["faces"] == 20 and after.int8
    for k, v in before.model.state_dict().items():
        assert torch.equal(v, after.model.state_dict()[k])
    with pytest.raises(BackendUnavailable, match="calibration"):
        load_runtime(before, torch.device("cpu"), "int8")
    assert load_runtime(before, torch.device("cpu")).name.startswith("torch-")

    rt = load_runtime(after, torch.device("cpu"))  # auto: int8 for calibrated weights
    assert rt.name == "int8"
    imgs = load_fer(fer_folder)["Training"].images
    pick = np.sort(np.random.default_rng(0).choice(len(imgs), 20, replace=False))
    prepared = prepare_int8(before.model)
    with torch.inference_mode():
        prepared(to_tensor(imgs[pick]))
    direct = convert_int8(prepared)
    x = to_tensor(imgs[:9])
    with torch.inference_mode():
        torch.testing.assert_close(rt.model(x), direct(x), rtol=0, atol=0)
    assert calibrate(before.model, imgs[pick], 0.5, 0.25).keys() == after.int8.keys()


# ----------------------------------------------------------------------------- FER+ votes

def test_ferplus_majority_distribution_and_targets():
    from training import ferplus as fp

    col = {c: i for i, c in enumerate(fp.VOTE_COLUMNS)}

    def v(**counts: int) -> list[int]:
        row = [0] * len(fp.VOTE_COLUMNS)
        for name, n in counts.items():
            row[col[name]] = n
        return row

    votes = np.array([
        v(anger=6, neutral=4),              # angry
        v(neutral=5, sadness=5),            # tied: no majority
        v(contempt=6, disgust=4),           # contempt-led: no majority; distribution all disgust
        v(NF=10),                           # not a face: nothing
        v(unknown=5, happiness=3, fear=2),  # unknown-led: no majority
        v(happiness=4, surprise=3, contempt=3),  # happy, the contempt votes dropped
        [-1] * 10,                          # no votes known
    ])
    maj = fp.majority(votes)
    assert maj.tolist() == [EMOTIONS.index("angry"), -1, -1, -1, -1, EMOTIONS.index("happy"), -1]
    dist = fp.distribution(votes)
    e = {name: i for i, name in enumerate(EMOTIONS)}
    np.testing.assert_allclose(dist[0][[e["angry"], e["neutral"]]], [0.6, 0.4])
    np.testing.assert_allclose(dist[2][e["disgust"]], 1.0)
    assert dist[3].sum() == 0 and dist[6].sum() == 0
    np.testing.assert_allclose(dist[4][[e["happy"], e["fear"]]], [0.6, 0.4])
    np.testing.assert_allclose(dist[5][[e["happy"], e["surprise"]]], [4 / 7, 3 / 7], rtol=1e-6)
    labels = np.full(len(votes), e["sad"])
    q = fp.targets(votes, labels, mix=0.25)
    np.testing.assert_allclose(q[0][[e["angry"], e["neutral"], e["sad"]]], [0.45, 0.3, 0.25])
    np.testing.assert_allclose(q[[0, 1, 2, 4, 5]].sum(1), 1.0, rtol=1e-6)
    assert q[3].sum() == 0 and q[6].sum() == 0  # no target where no emotion votes


VOTE_SHIFT = 2  # the synthetic votes' majority: the folder's class + 2 (mod 7)


def targets_seen(monkeypatch) -> list[torch.Tensor]:
    """Every batch's targets training.fit's loss is given, in order (filled as it trains)."""
    import training.fit as fit

    seen: list[torch.Tensor] = []
    real_loss = fit.batch_loss

    def spy(logits, y, y_b, lam, soft, args):
        seen.append(y.detach().clone())
        return real_loss(logits, y, y_b, lam, soft, args)

    monkeypatch.setattr(fit, "batch_loss", spy)
    return seen


def fit_main(argv: list[str]) -> dict:
    """training.fit in this process, torch's thread count restored afterwards."""
    import training.fit as fit

    threads = torch.get_num_threads()
    try:
        return fit.main(fit.get_args_parser().parse_args(argv), argv=argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fer_votes(fer_folder, tmp_path_factory) -> Path:
    """fer_folder as data/fer2013 beside data/ferplus/*.csv, as in ../shared: each image's
    votes put 7 on the class VOTE_SHIFT after its folder's and 3 on its own; one training
    image is 'not a face' (NF=10)."""
    import shutil
    from training import ferplus as fp

    data = tmp_path_factory.mktemp("data")
    shutil.copytree(fer_folder, data / "fer2013")
    (data / "ferplus").mkdir()
    loaded = load_fer(data / "fer2013", votes=None)
    for name, split in (("train", loaded["Training"]), ("publictest", loaded["PublicTest"])):
        with open(data / "ferplus" / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", *fp.VOTE_COLUMNS])
            for i, (path, label) in enumerate(zip(split.paths, split.labels)):
                row = [0] * len(fp.VOTE_COLUMNS)
                row[fp.EMOTION_COLUMNS[(label + VOTE_SHIFT) % 7]] += 7
                row[fp.EMOTION_COLUMNS[label]] += 3
                if name == "train" and i == 0:
                    row = [0] * 9 + [10]
                rel = Path(path).relative_to(data / "fer2013").as_posix()
                w.writerow([rel, *row])
    return data


def test_load_fer_attaches_votes_found_beside_the_data(fer_votes, tmp_path):
    from training import ferplus as fp

    data = load_fer(fer_votes / "fer2013")
    for name in ("Training", "PublicTest"):
        split = data[name]
        assert split.votes.shape == (len(split), 10) and (split.votes.sum(1) == 10).all()
        maj = fp.majority(split.votes)
        ok = maj != fp.NO_LABEL
        assert (maj[ok] == (split.labels[ok] + VOTE_SHIFT) % 7).all()
    assert data["PrivateTest"].votes.tolist() == [[-1] * 10]  # FER+ has none for it
    sub = data["Training"].subset(np.array([2, 0]))
    assert sub.paths == [data["Training"].paths[i] for i in (2, 0)]
    np.testing.assert_array_equal(sub.votes, data["Training"].votes[[2, 0]])
    assert load_fer(fer_votes / "fer2013", votes=None)["Training"].votes is None
    (tmp_path / "ck" / "anger").mkdir(parents=True)  # other images beside a votes folder
    (tmp_path / "ferplus").symlink_to(fer_votes / "ferplus")
    cv2.imwrite(str(tmp_path / "ck" / "anger" / "S1.png"), np.zeros((48, 48), np.uint8))
    assert load_fer(tmp_path / "ck")["PublicTest"].votes is None


def test_fit_trains_on_the_vote_distribution_and_selects_on_the_ferplus_majority(
        fer_votes, tmp_path, monkeypatch):
    """--labels ferplus (auto with votes beside the data): every target the loss sees is an
    image's vote distribution (whose majority is here always another class than the
    folder's), the not-a-face image is left out, and the best epoch is chosen on
    PublicTest's FER+ majority."""
    import training.fit as fit
    from emobatch.faces.emotion.weights import load_weights
    from training import ferplus as fp

    seen = targets_seen(monkeypatch)
    argv = ["--data", str(fer_votes / "fer2013"), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "2", "--batch-size", "16",
            "--threads", "1"]
    res = fit_main(argv)
    train = load_fer(fer_votes / "fer2013")["Training"]
    want = fp.distribution(train.votes[1:])  # the first image is not a face
    got = torch.cat(seen[:len(seen) // 2]).numpy()  # the first epoch: each image once
    assert got.shape == want.shape
    np.testing.assert_allclose(got[np.lexsort(got.T)], want[np.lexsort(want.T)])
    assert res["selected_on"] == "publictest_ferplus_acc"
    rows = res["history"]
    assert {"val_fp_acc", "ema_val_vote_ce"} <= set(rows[-1])
    best = max(max(r["val_fp_acc"], r["ema_val_fp_acc"]) for r in rows)
    assert res["best_publictest_acc"] == best
    config = load_weights(tmp_path / "w" / "emobatch_fer.pt").config
    assert config["targets"] == "ferplus" and config["label_mix"] == 0.0
    assert config["metrics"]["selected_on"] == "publictest_ferplus_acc"
    assert config["metrics"]["publictest_ferplus_acc"] == best
    assert "publictest_ferplus_acc_zoom_tta" in config["metrics"]
    with pytest.raises(SystemExit, match="no FER\\+ votes"):
        fit.main(fit.get_args_parser().parse_args(argv + ["--labels", "ferplus", "--votes", "none"]))


def test_fer2013_labels_beside_votes_train_and_score_as_before_and_resume_refuses_a_switch(
        fer_votes, tmp_path):
    """--labels fer2013 with votes beside the data learns FER2013's labels, selects on them
    and writes the same history columns as before; a checkpoint of one labels mode does not
    resume under the other."""
    import training.fit as fit
    from emobatch.faces.emotion.weights import load_weights

    argv = ["--data", str(fer_votes / "fer2013"), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--labels", "fer2013"]
    threads = torch.get_num_threads()
    try:
        res = fit.main(fit.get_args_parser().parse_args(argv), argv=argv)
        with pytest.raises(SystemExit, match="trained with --labels fer2013"):
            again = argv[:-1] + ["auto", "--epochs", "2", "--resume"]  # auto: ferplus here
            fit.main(fit.get_args_parser().parse_args(again), argv=again)
        with pytest.raises(SystemExit, match="needs --labels ferplus"):
            fit.main(fit.get_args_parser().parse_args(argv + ["--label-mix", "0.3"]))
    finally:
        torch.set_num_threads(threads)
    assert res["selected_on"] == "publictest_acc"
    assert list(res["history"][0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss",
                                       "val_acc", "ema_val_loss", "ema_val_acc", "seconds"]
    config = load_weights(tmp_path / "w" / "emobatch_fer.pt").config
    assert config["targets"] == "fer2013" and config["metrics"]["selected_on"] == "publictest_acc"
    assert "publictest_ferplus_acc" not in config["metrics"]


def test_votes_folder_given_but_matching_no_image_is_an_error(fer_votes, tmp_path):
    (tmp_path / "other" / "train" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "other" / "train" / "happy" / "Training_1.png"),
                np.zeros((48, 48), np.uint8))
    with pytest.raises(TrainingError, match="no image under"):
        load_fer(tmp_path / "other", votes=fer_votes / "ferplus")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text("file,neutral,happiness,surprise,sadness,anger,disgust,fear,"
                                   "contempt,unknown,NF\ntrain/happy/Training_1.png,1,,0,0,0,0,0,0,0,0\n")
    with pytest.raises(TrainingError, match="train.csv:2: vote counts"):
        load_fer(tmp_path / "other", votes=bad)


def test_training_targets_leave_out_faces_without_emotion_votes(fer_votes):
    from training.data import training_targets

    train = load_fer(fer_votes / "fer2013")["Training"]
    kept, q = training_targets("ferplus", train, mix=0.5)
    assert len(kept) == len(train) - 1 and train.paths[0] not in kept.paths
    assert q.shape == (len(kept), 7)
    own = q[np.arange(len(kept)), kept.labels]
    np.testing.assert_allclose(own, 0.5 * 0.3 + 0.5)  # half the votes' 3/10, half the label
    same, labels = training_targets("fer2013", train, mix=0.0)
    assert same is train and labels is train.labels
    # mixed for the chosen classes' faces only; the others keep their votes' distribution
    only, q2 = training_targets("ferplus", train, mix=0.5, mix_classes=[EMOTIONS[kept.labels[0]]])
    chosen = only.labels == only.labels[0]
    np.testing.assert_allclose(q2[chosen], q[chosen])
    np.testing.assert_allclose(q2[~chosen], training_targets("ferplus", train, mix=0.0)[1][~chosen])
    assert (~chosen).any() and not np.allclose(q2[~chosen], q[~chosen])


def test_evaluate_reports_the_ferplus_majority_and_vote_cross_entropy(fer_votes, folder_run,
                                                                     tmp_path):
    report = tmp_path / "r.json"
    p = run("training.evaluate", "--data", str(fer_votes / "fer2013"), "--weights",
            str(folder_run / "w" / "emobatch_fer.pt"), "--json", str(report), "--threads", "1")
    r = json.loads(report.read_text())
    fp = r["ferplus"]
    assert fp["majority"]["n"] == r["n"] == 7 * N_TEST_PER_CLASS and fp["left_out"] == 0
    shifted = np.roll(np.array(r["confusion_matrix"]), VOTE_SHIFT, axis=0)
    assert fp["majority"]["confusion_matrix"] == shifted.tolist()  # same predictions, other truth
    assert fp["vote_cross_entropy"] > fp["vote_entropy"] > 0
    assert sum(b["count"] for b in fp["vote_calibration"]) == 7 * r["n"]
    assert (tmp_path / "confusion_matrix_ferplus.png").stat().st_size > 1000
    assert "FER+ majority" in p.stdout and "cross-entropy" in p.stdout


def test_logit_adjustment_divides_probabilities_by_the_prior(folder_run):
    """training.adjust folds prior ** -S into the output bias: the adjusted network's
    probabilities are the original ones divided by the prior ** S, renormalised."""
    from emobatch.faces.emotion.classifier import predict_probs
    from emobatch.faces.emotion.weights import load_weights
    from training.adjust import adjust, grid_scores

    loaded = load_weights(folder_run / "w" / "emobatch_fer.pt")
    images = np.random.default_rng(0).integers(0, 255, (10, 48, 48), dtype=np.uint8)
    cpu = torch.device("cpu")
    before = predict_probs(loaded.model, images, cpu, None, 16, tta="none").astype(np.float64)
    prior = np.array([0.09, 0.02, 0.04, 0.26, 0.15, 0.12, 0.32])
    adjust(loaded.model, prior, loaded.config["labels"], 0.5)
    after = predict_probs(loaded.model, images, cpu, None, 16, tta="none").astype(np.float64)
    want = before / prior ** 0.5
    np.testing.assert_allclose(after, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    votes = np.zeros((10, 10), np.int64)
    votes[:, 0] = 10  # every face neutral: adjusting away from neutral can only cost accuracy
    grid = grid_scores(before, prior, votes)
    assert grid[0]["strength"] == 0.0 and grid[-1]["strength"] == 1.0
    assert [r["ferplus_acc"] for r in grid] == sorted((r["ferplus_acc"] for r in grid), reverse=True)


def test_adjust_cli_records_the_strength_and_where_the_weights_came_from(fer_votes, folder_run,
                                                                        tmp_path):
    from emobatch.faces.emotion.weights import load_weights

    src = folder_run / "w" / "emobatch_fer.pt"
    out = tmp_path / "adj.pt"
    run("training.adjust", "--data", str(fer_votes / "fer2013"), "--weights", str(src),
        "--out", str(out), "--strength", "0.3")
    config = load_weights(out).config
    adj = config["logit_adjustment"]
    assert adj["strength"] == 0.3 and len(adj["prior"]) == 7
    assert abs(sum(adj["prior"]) - 1) < 1e-4
    assert config["adjusted_from"]["sha256"] == load_weights(src).sha256
    assert config["metrics"]["selected_on"] == "publictest_ferplus_acc"
    assert "publictest_ferplus_acc_tencrop_tta" in config["metrics"] and "int8" not in config
    p = subprocess.run([sys.executable, "-m", "training.adjust", "--data",
                        str(fer_votes / "fer2013"), "--weights", str(out), "--out",
                        str(tmp_path / "twice.pt")], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode != 0 and "adjusted already" in p.stderr


@pytest.fixture(scope="module")
def posed_folder(tmp_path_factory) -> Path:
    """A posed-tw-style folder: the sample photo (and its mirror image) as four photos of
    four performers with observers' shares, and a blank photo without a face."""
    root = tmp_path_factory.mktemp("posed")
    photo = cv2.imread(str(ROOT / "examples" / "sample" / "astronaut.jpg"))
    rows = []
    for i, performer in enumerate(["10", "2", "1", "3"]):
        name = f"p{performer}.jpg"
        cv2.imwrite(str(root / name), photo[:, ::-1] if i % 2 else photo)
        shares = [0.0] * 7
        shares[i] = 0.8
        shares[6] = 0.3  # rows sum to more than 1, as when observers endorse several
        rows.append([name, performer, "theatric", EMOTIONS[i], *shares])
    cv2.imwrite(str(root / "blank.png"), np.full((200, 200), 90, np.uint8))
    rows.append(["blank.png", "3", "calm", "neutral", 0, 0, 0, 0, 0, 0, 1])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "performer", "performance", "intended", *EMOTIONS])
        w.writerows(rows)
    return root


def test_posed_photos_are_aligned_like_inference_with_normalised_shares(posed_folder, caplog,
                                                                        tmp_path):
    from emobatch.faces.align import Aligner
    from emobatch.faces.detection.detector import Detector
    from emobatch.media.sources import read_image
    from training import posed as pd_

    with caplog.at_level(logging.WARNING):
        posed = pd_.load_posed(posed_folder, cache_dir=tmp_path)
    assert "no face found" in caplog.text and "blank.png" in caplog.text
    assert posed.performer.tolist() == ["10", "2", "1", "3"]
    np.testing.assert_allclose(posed.shares.sum(1), 1.0, rtol=1e-6)
    assert posed.shares[0].argmax() == 0 and posed.intended.tolist() == [0, 1, 2, 3]
    img = read_image(posed_folder / "p10.jpg").image
    want = Aligner().align(img, Detector().detect(img)[[0]]).crops[0]
    images, shares = pd_.crops(posed)
    np.testing.assert_array_equal(images[0], want)  # the clean render is the pipeline's crop
    np.testing.assert_array_equal(shares, posed.shares)
    jittered, _ = pd_.crops(posed, 2, np.random.default_rng(0))
    again, _ = pd_.crops(posed, 2, np.random.default_rng(0))
    assert jittered.shape == (8, 48, 48) and (jittered == again).all()
    assert not (jittered[:4] == jittered[4:]).all()  # each copy is a new render
    cached = pd_.load_posed(posed_folder, cache_dir=tmp_path)  # no detector: from the cache
    np.testing.assert_array_equal(cached.landmarks, posed.landmarks)


def test_performer_folds_hold_every_performer_once_in_natural_order():
    from training.posed import performer_folds

    performer = np.array(["10", "2", "1", "3", "2", "10", "x"])
    fold = performer_folds(performer, 2)
    # natural order 1, 2, 3, 10, x dealt round-robin: 1->0, 2->1, 3->0, 10->1, x->0
    assert fold.tolist() == [1, 1, 0, 0, 1, 1, 0]
    with pytest.raises(TrainingError):
        performer_folds(performer, 6)


def test_fit_learns_posed_shares_and_scores_the_held_out_performers(fer_votes, posed_folder,
                                                                   tmp_path, monkeypatch):
    """--posed adds each training performer's photo --posed-copies times per epoch with its
    shares as the target; --posed-holdout leaves a fold out, scores it every epoch, and the
    weights' config names the performers they learnt from."""
    import training.fit as fit
    from emobatch.faces.emotion.weights import load_weights
    from training import posed as pd_

    seen = targets_seen(monkeypatch)
    argv = ["--data", str(fer_votes / "fer2013"), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--posed", str(posed_folder), "--posed-copies", "3",
            "--posed-folds", "2", "--posed-holdout", "1"]
    res = fit_main(argv)
    posed = pd_.load_posed(posed_folder)
    held = pd_.performer_folds(posed.performer, 2) == 1  # performers 2 and 10
    got = torch.cat(seen).numpy()
    for i in range(len(posed)):
        n = int(np.isclose(got, posed.shares[i], atol=1e-6).all(1).sum())
        assert n == (0 if held[i] else 3), (posed.performer[i], n)
    assert {"val_posed_top", "ema_val_posed_top"} <= set(res["history"][0])
    config = load_weights(tmp_path / "w" / "emobatch_fer.pt").config
    assert config["posed"]["performers"] == ["1", "3"] and config["posed"]["holdout"] == 1
    assert "posed photos of 2 performers" in config["trained_on"]
    with pytest.raises(SystemExit, match="needs --labels ferplus"):
        fit.main(fit.get_args_parser().parse_args(argv + ["--labels", "fer2013"]))


def test_fit_distills_the_training_faces_and_keeps_the_posed_photos_shares(
        fer_votes, posed_folder, folder_run, tmp_path, monkeypatch):
    """--distill with --posed: the training faces' distillation targets are the teacher's
    probabilities, the posed renders' are their own observers' shares, both softened at the
    distillation temperature; held-out performers give neither."""
    import training.fit as fit
    from training import posed as pd_
    from training.distill import soften

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_loss = fit.batch_loss

    def spy(logits, y, y_b, lam, soft, args):
        seen.append((y.detach().clone(), soft.detach().clone()))
        return real_loss(logits, y, y_b, lam, soft, args)

    monkeypatch.setattr(fit, "batch_loss", spy)
    fit_main(["--data", str(fer_votes / "fer2013"), "--out", str(tmp_path / "w"),
              "--ckpt-dir", str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1",
              "--batch-size", "16", "--threads", "1", "--posed", str(posed_folder),
              "--posed-copies", "2", "--posed-folds", "2", "--posed-holdout", "1",
              "--distill", str(folder_run / "w" / "emobatch_fer.pt"), "--distill-temp", "3"])
    y = torch.cat([s[0] for s in seen])
    q = torch.cat([s[1] for s in seen])
    posed = pd_.load_posed(posed_folder)
    learnt = torch.from_numpy(posed.shares[pd_.performer_folds(posed.performer, 2) == 0])
    is_posed = (y[:, None, :] - learnt[None]).abs().amax(2).lt(1e-6).any(1)
    assert int(is_posed.sum()) == 2 * len(learnt)
    torch.testing.assert_close(q[is_posed], soften(y[is_posed], 3.0))
    with np.load(tmp_path / "ck" / "teacher_probs.npz") as z:
        teacher = soften(torch.from_numpy(z["probs"]), 3.0)
    assert len(teacher) == int((~is_posed).sum())
    torch.testing.assert_close(q[~is_posed].sort(0).values, teacher.sort(0).values)


def test_fit_shift_takes_the_best_held_out_agreement_that_keeps_ferplus():
    """--shift posed: on the grid, the smallest shift with the best agreement on held-out
    posed photos among those that keep PublicTest's FER+ majority and vote cross-entropy."""
    from training.adjust import fit_shift

    a, n = EMOTIONS.index("angry"), EMOTIONS.index("neutral")
    val = np.full((40, 7), -6.0)
    val[:, n], val[:, a] = 0.0, -3.0  # neutral faces whose votes give anger a share
    votes = np.zeros((40, 10), np.int64)  # counts in FER+'s columns: neutral, ..., anger
    votes[:, 0], votes[:, 4] = 6, 4
    posed = np.full((10, 7), -6.0)
    posed[:, n], posed[:, a] = 0.0, -0.35  # posed anger read as neutral by a small margin
    top = np.full(10, a)
    shift, fig = fit_shift(val, votes, posed, top, ["angry", "disgust"], 0.0)
    assert shift[a] == pytest.approx(0.4) and fig["posed_held_out_top"] == 1.0
    assert shift[EMOTIONS.index("disgust")] == 0 and shift[n] == 0
    assert fig["posed_held_out_top_unshifted"] == 0.0
    assert fig["ferplus_acc"] == fig["ferplus_acc_unshifted"] == 1.0
    assert fig["vote_ce"] <= fig["vote_ce_unshifted"]
    votes[:, 0], votes[:, 4] = 10, 0  # no share for anger: any shift toward it raises the CE
    shift, fig = fit_shift(val, votes, posed, top, ["angry"], 0.0)
    assert shift[a] <= 0 and fig["posed_held_out_top"] == 0.0


def test_adjust_cli_fits_a_posed_shift_on_models_that_never_saw_the_performers(
        fer_votes, folder_run, posed_folder, tmp_path):
    """Each posed photo is scored by the fold model that did not train on its performer; the
    fitted constants go into the bias and the config records the rule, folds and figures."""
    from emobatch.faces.emotion.weights import load_weights, save_weights
    from training import posed as pd_
    from training.adjust import held_out_log_probs

    src = folder_run / "w" / "emobatch_fer.pt"
    loaded = load_weights(src)
    folds = []
    for i, performers in enumerate([["1", "3"], ["10", "2"]]):
        config = {k: v for k, v in loaded.config.items() if k not in ("labels", "sha256")}
        save_weights(loaded.model, config | {"posed": {"performers": performers}},
                     tmp_path / f"f{i}.pt")
        folds.append(str(tmp_path / f"f{i}.pt"))
    posed = pd_.load_posed(posed_folder)
    cpu = torch.device("cpu")
    with pytest.raises(TrainingError, match="every model trained on performer"):
        held_out_log_probs(folds[:1], posed, cpu, "off")
    assert held_out_log_probs(folds, posed, cpu, "off").shape == (4, 7)
    out = tmp_path / "shifted.pt"
    run("training.adjust", "--data", str(fer_votes / "fer2013"), "--weights", str(src),
        "--out", str(out), "--shift", "posed", "--posed", str(posed_folder), "--folds", *folds,
        "--shift-classes", "angry", "neutral", "--max-drop", "0")
    adj = load_weights(out).config["logit_adjustment"]
    assert len(adj["folds"]) == 2 and adj["classes"] == ["angry", "neutral"]
    assert {"posed_held_out_top", "ferplus_acc", "vote_ce"} <= set(adj["figures"])
    assert adj["figures"]["ferplus_acc"] >= adj["figures"]["ferplus_acc_unshifted"]
    assert set(adj["shift"]) == set(EMOTIONS) and adj["shift"]["happy"] == 0
    given = tmp_path / "given.pt"
    run("training.adjust", "--data", str(fer_votes / "fer2013"), "--weights", str(src),
        "--out", str(given), "--shift", "angry=0.3")
    labels = loaded.config["labels"]
    bias = [dict(zip(labels, last_bias(w))) for w in (src, given)]
    assert bias[1]["angry"] - bias[0]["angry"] == pytest.approx(0.3, abs=1e-5)
    assert bias[1]["happy"] == pytest.approx(bias[0]["happy"], abs=1e-6)


def test_interpolate_blends_every_tensor_and_records_both_parents(fer_votes, folder_run,
                                                                   tmp_path):
    """training.interpolate: alpha 0 is the base network, 1 the tuned one, between them every
    floating-point tensor (batch-norm statistics too) is the straight-line blend."""
    from emobatch.faces.emotion.weights import load_weights, save_weights
    from training.interpolate import blend

    src = folder_run / "w" / "emobatch_fer.pt"
    base = load_weights(src)
    with torch.no_grad():
        for t in base.model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn_like(t))
    config = {k: v for k, v in load_weights(src).config.items() if k not in ("labels", "sha256")}
    save_weights(base.model, config | {"init": {"sha256": load_weights(src).sha256}},
                 tmp_path / "tuned.pt")
    base, tuned = load_weights(src), load_weights(tmp_path / "tuned.pt")
    sa, sb = base.model.state_dict(), tuned.model.state_dict()
    for alpha in (0.0, 0.3, 1.0):
        mixed = blend(base, tuned, alpha).state_dict()
        for k, v in sb.items():
            want = (1 - alpha) * sa[k].float() + alpha * v.float() if v.is_floating_point() else v
            torch.testing.assert_close(mixed[k].float(), want.float(), rtol=1e-5, atol=1e-6)
    assert any("running_var" in k for k in sb)  # the statistics are blended too
    with pytest.raises(TrainingError, match="alpha"):
        blend(base, tuned, 1.5)
    out = tmp_path / "blend.pt"
    run("training.interpolate", "--data", str(fer_votes / "fer2013"), "--base", str(src),
        "--tuned", str(tmp_path / "tuned.pt"), "--alpha", "0.3", "--out", str(out), "--tta",
        "flip")
    config = load_weights(out).config
    assert config["interpolation"]["alpha"] == 0.3
    assert config["interpolation"]["base"]["sha256"] == base.sha256
    assert config["interpolation"]["tuned"]["sha256"] == tuned.sha256
    assert config["tta"] in ("none", "flip") and "publictest_ferplus_acc_zoom_tta" not in config["metrics"]


def last_bias(weights: Path) -> list[float]:
    from emobatch.faces.emotion.weights import load_weights
    from training.adjust import last_linear

    return last_linear(load_weights(weights).model).bias.tolist()


def test_limit_keeps_a_quick_run_quick(fer_csv, tmp_path):
    """Item 26: --limit limited only the training images; PublicTest (3,589 faces) was
    still scored every epoch and with each TTA mode. It now limits PublicTest too."""
    from training import fit

    args = fit.get_args_parser().parse_args(["--data", str(fer_csv[0]), "--out",
                                             str(tmp_path), "--limit", "10"])
    train, val, targets, _ = fit.load_splits(args)
    assert len(train) == 10 and len(val) == 10 and len(targets) == 10
    args.limit = 0
    assert len(fit.load_splits(args)[1]) == CSV_COUNTS["PublicTest"]


def test_an_epoch_and_its_scoring_show_progress(fer_folder, tmp_path, monkeypatch, caplog):
    """Item 26: nothing was said within an epoch, nor while PublicTest was scored (16 TTA
    views at the end). Without a terminal (a log file under nohup) a line comes at most every
    LOG_EVERY_S; here every batch."""
    import logging
    from training import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    argv = ["--data", str(fer_folder), "--out", str(tmp_path / "w"), "--ckpt-dir",
            str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
            "--threads", "1"]
    with caplog.at_level(logging.INFO, logger="training.progress"):
        fit_main(argv)
    lines = [r.getMessage() for r in caplog.records if r.name == "training.progress"]
    assert any(s.startswith("epoch 1/1: 1/") and " batches, " in s for s in lines), lines
    assert any(s.startswith("PublicTest (EMA): ") and " faces, " in s for s in lines), lines
    assert any(s.startswith("PublicTest, zoom TTA: ") for s in lines), lines


def test_predict_probs_reports_each_batch():
    from emobatch.faces.emotion.classifier import predict_probs
    from emobatch.faces.emotion.models import build_model

    seen: list[int] = []
    crops = np.zeros((5, 48, 48), np.uint8)
    predict_probs(build_model("tiny"), crops, torch.device("cpu"), None, batch_size=2,
                  tta="flip", on_batch=seen.append)
    assert seen == [2, 2, 1]


# ----------------------------------------------------------------------------- input side


def test_a_network_of_another_input_side_trains_ships_and_runs_at_it(fer_votes, posed_folder,
                                                                      tmp_path, monkeypatch):
    """--input-size 64: FER2013's 48-pixel faces are resized to 64 (the same helper inference
    uses), posed photos are aligned at 64, the weights say so, int8 calibrates at 64, and the
    product aligns its crops at 64 for these weights (48-pixel crops given to the classifier
    are resized, so 48-pixel datasets still score it)."""
    import emobatch
    from emobatch.faces.emotion.classifier import Classifier
    from emobatch.faces.emotion.preprocess import resize_crops
    from emobatch.faces.emotion.weights import load_weights
    from emobatch.pipeline import FacePipeline
    from emobatch.config import Settings
    from emobatch.media.sources import read_image
    from training.quantize import get_args_parser, main

    import training.fit as fit

    seen_shapes: list[tuple[int, ...]] = []
    real = fit.to_tensor

    def spy(x, *a):
        seen_shapes.append(tuple(x.shape))
        return real(x, *a)

    monkeypatch.setattr(fit, "to_tensor", spy)
    fit_main(["--data", str(fer_votes / "fer2013"), "--out", str(tmp_path / "w.pt"),
              "--ckpt-dir", str(tmp_path / "ck"), "--arch", "tiny", "--epochs", "1",
              "--batch-size", "16", "--threads", "1", "--input-size", "64", "--tta", "flip",
              "--posed", str(posed_folder), "--posed-copies", "2", "--posed-folds", "2",
              "--posed-holdout", "1"])
    assert seen_shapes and all(s[1:] == (64, 64) for s in seen_shapes)
    main(get_args_parser().parse_args(["--data", str(fer_votes / "fer2013"), "--weights",
                                       str(tmp_path / "w.pt"), "--faces", "20"]))
    loaded = load_weights(tmp_path / "w.pt")
    assert loaded.config["input_size"] == [64, 64] and loaded.weights_config.input_size == 64

    clf = Classifier(tmp_path / "w.pt", device="cpu", backend="int8")
    assert clf.backend == "int8" and clf.input_size == 64
    small = load_fer(fer_votes / "fer2013")["PublicTest"].images[:5]
    np.testing.assert_array_equal(clf.predict(small), clf.predict(resize_crops(small, 64)))

    pipe = FacePipeline(Settings(weights=str(tmp_path / "w.pt"), device="cpu"))
    faces = pipe.process(read_image(ROOT / "examples" / "sample" / "astronaut.jpg"))
    assert len(faces) and faces.crops.shape[1:] == (64, 64)
    df = emobatch.run([str(ROOT / "examples" / "sample" / "astronaut.jpg")],
                      weights=str(tmp_path / "w.pt"))
    assert df["emotion"].notna().all() and len(df) == len(faces)


def test_resize_crops_keeps_crops_that_fit_and_resizes_others():
    from emobatch.faces.emotion.preprocess import resize_crops

    crops = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    assert resize_crops(crops, 48) is crops and resize_crops(crops, None) is crops
    up = resize_crops(crops, 64)
    assert up.shape == (3, 64, 64) and up.dtype == np.uint8
    np.testing.assert_array_equal(up[1], cv2.resize(crops[1], (64, 64),
                                                    interpolation=cv2.INTER_LINEAR))
    assert resize_crops(up, 32).shape == (3, 32, 32)
    assert resize_crops(np.zeros((0, 48, 48), np.uint8), 64).shape == (0, 64, 64)
