import numpy as np
import pytest

from emobatch.faces.align import Aligner
from emobatch.faces.emotion.classifier import Classifier
from emobatch.types import EMOTIONS, FaceBatch


@pytest.fixture(scope="module")
def clf():
    return Classifier(device="cpu")


def test_probabilities_shape_and_sum(clf):
    crops = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    p = clf.predict(crops)
    assert p.shape == (5, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)
    assert clf.labels == list(EMOTIONS)


def test_batching_does_not_change_results(clf):
    crops = np.random.default_rng(1).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    one = np.concatenate([clf.predict(crops[i:i + 1]) for i in range(9)])
    np.testing.assert_allclose(one, clf.predict(crops), atol=2e-2)  # bf16 batch effects only


def test_empty_batch(clf):
    out = clf.classify(FaceBatch.empty().with_(crops=np.zeros((0, 48, 48), np.uint8)))
    assert out.probs.shape == (0, 7)


def test_empty_batch_has_the_models_class_count():
    import torch

    from emobatch.faces.emotion.runtimes import inference_model
    from emobatch.faces.emotion.classifier import predict_probs
    from emobatch.faces.emotion.models import build_model

    model = inference_model(build_model("tiny", num_classes=5).eval())
    crops = np.zeros((0, 48, 48), np.uint8)
    assert predict_probs(model, crops, torch.device("cpu"), None).shape == (0, 5)


@pytest.mark.parametrize("tta", ["flip", "zoom", "tencrop"])
def test_tta_is_mirror_symmetric(tta):
    """Each mode's views of a mirrored face are the mirrored views of the face."""
    clf = Classifier(device="cpu", tta=tta, amp="off", backend="torch")
    crops = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(clf.predict(crops), clf.predict(crops[:, :, ::-1].copy()), atol=1e-5)


def test_tta_views_count_and_geometry():
    import torch

    from emobatch.faces.emotion.classifier import tta_views

    x = torch.arange(48.0).repeat(2, 1, 48, 1)  # column index as the pixel value
    assert [len(tta_views(x, m)) for m in ("none", "flip", "zoom", "tencrop")] == [1, 2, 4, 10]
    top_left, centre = tta_views(x, "tencrop")[0], tta_views(x, "zoom")[1]
    assert all(v.shape == x.shape for v in tta_views(x, "tencrop"))
    assert top_left[0, 0, 0, -1] < 44 and top_left[0, 0, 0, 0] < 0.5  # columns 0..43 scaled
    torch.testing.assert_close(centre[0, 0, 0, 24] + centre[0, 0, 0, 23], torch.tensor(47.0))


def test_tta_agrees_however_views_are_batched(monkeypatch):
    import emobatch.faces.emotion.classifier as c

    clf = Classifier(device="cpu", tta="tencrop", amp="off", backend="torch")
    crops = np.random.default_rng(4).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    together = clf.predict(crops)
    monkeypatch.setattr(c, "MAX_FORWARD", 1)  # one view per forward pass
    np.testing.assert_allclose(clf.predict(crops), together, atol=1e-5)


def test_bad_tta_rejected(clf):
    from emobatch.faces.emotion.classifier import predict_probs

    with pytest.raises(ValueError):
        predict_probs(clf.model, np.zeros((1, 48, 48), np.uint8), clf.device, None, tta="ten")


def test_needs_crops(clf):
    with pytest.raises(ValueError, match="crops"):
        clf.classify(FaceBatch.empty())


def test_real_face_end_to_end(clf, detector, astronaut_rgb):
    faces = clf.classify(Aligner().align(astronaut_rgb, detector.detect(astronaut_rgb)))
    assert faces.probs.shape == (len(faces), 7) and len(faces) >= 1


def test_per_call_tta_overrides_the_default():
    clf = Classifier(device="cpu", tta="flip", amp="off", backend="torch")
    crops = np.random.default_rng(3).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    mirrored = crops[:, :, ::-1].copy()
    plain, flipped = clf.predict(crops, "none"), clf.predict(mirrored, "none")
    np.testing.assert_allclose(clf.predict(crops), (plain + flipped) / 2, atol=1e-5)
    assert not np.allclose(plain, flipped, atol=1e-3)


def test_int8_backend_is_the_default_on_cpu_and_exact_across_batches_and_threads():
    """The shipped weights carry an int8 calibration, so a CPU runs int8 unless asked
    otherwise; integer arithmetic gives the same probabilities whatever the batch or thread
    count (bf16 does not), and they stay close to fp32's."""
    import torch

    clf = Classifier(device="cpu")
    assert clf.backend == "int8" and clf.dtype is None
    fp32 = Classifier(device="cpu", backend="torch", amp="off")
    assert fp32.backend == "torch-fp32"
    crops = np.random.default_rng(5).integers(0, 256, (40, 48, 48), dtype=np.uint8)
    together = clf.predict(crops)
    np.testing.assert_array_equal(np.concatenate([clf.predict(crops[i:i + 7]) for i in range(0, 40, 7)]),
                                  together)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        np.testing.assert_array_equal(clf.predict(crops), together)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(together - fp32.predict(crops)).max() < 0.15


def test_fp32_torch_backend_does_not_depend_on_the_thread_count():
    """`--backend torch --amp off` under `--workers` (fewer threads a process) gives one
    process's probabilities: torch's own linear layers round differently with 1 and 2
    threads on some CPUs (emobatch.faces.invariant_layers)."""
    from conftest import at_thread_counts

    fp32 = Classifier(device="cpu", backend="torch", amp="off")
    rng = np.random.default_rng(6)
    for n, tta in ((1, "zoom"), (5, "none"), (8, "none"), (64, "flip")):
        crops = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        outs = at_thread_counts(lambda: fp32.predict(crops, tta=tta))
        for other in outs[1:]:
            np.testing.assert_array_equal(other, outs[0], err_msg=f"{n} crops, tta {tta}")


def test_bf16_autocast_still_runs_in_bf16():
    """The thread-invariant layers leave autocast alone: bf16 stays bf16."""
    import torch

    from emobatch.faces.emotion.runtimes import inference_model
    from emobatch.faces.emotion.weights import load_weights

    model = inference_model(load_weights(None, device="cpu").model)
    x = torch.zeros(2, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
    with torch.inference_mode():
        assert model(x).dtype == torch.float32


def test_unknown_or_unavailable_backend_is_a_clear_error():
    import pytest as _pytest

    from emobatch.config import Settings

    with _pytest.raises(ValueError, match="backend must be one of"):
        Settings(backend="tensorrt")


def test_fingerprinted_runtime_names_are_the_ones_that_run(monkeypatch):
    """A run's resume fingerprint names the classifier and detector runtimes without building
    them; the names must be those the built stages report, for every backend choice."""
    import pytest as _pytest
    import torch

    from emobatch.faces.emotion.runtimes import int8_backend

    from emobatch.errors import BackendUnavailable
    from emobatch.config import Settings
    from emobatch.faces.detection.detector import Detector
    from emobatch.faces.detection.runtimes import resolve_net_backend
    from emobatch.pipeline import FacePipeline
    from emobatch.faces.emotion.weights import load_weights
    from emobatch.plan import resolve_plan

    cpu = torch.device("cpu")
    for backend, amp in (("auto", "auto"), ("torch", "off"), ("torch", "auto"), ("int8", "auto")):
        plan = resolve_plan(Settings(device="cpu", backend=backend, amp=amp))
        assert Classifier(device="cpu", backend=backend, amp=amp).backend == \
            plan.classifier_runtime
    for backend in ("auto", "torch"):
        for amp in ("auto", "off"):
            plan = resolve_plan(Settings(device="cpu", detector_backend=backend, amp=amp))
            assert Detector(backend=backend, amp=amp).backend == plan.detector.name
            pipe = FacePipeline(plan)
            assert (pipe.detector.backend, pipe.still_detector.backend) == (
                plan.detector.name, plan.detector_stills.name)
            # one set of networks where photos and videos run the same ones
            assert (pipe.still_detector is pipe.detector) == (
                pipe.still_detector.backend == pipe.detector.backend)
    with _pytest.raises(BackendUnavailable, match="x86 CPUs only"):
        int8_backend(load_weights(None), torch.device("cuda"), "off")
    with _pytest.raises(ValueError, match="runs on the CPU"):
        _pytest.importorskip("openvino")
        resolve_net_backend("openvino", torch.device("cuda"))
    monkeypatch.setattr("emobatch.config.openvino_available", lambda: False)  # validation
    monkeypatch.setattr("emobatch.faces.detection.runtimes.openvino_available", lambda: False)
    with _pytest.raises(ValueError, match="needs the openvino package"):
        Settings(detector_backend="openvino")
    resolve_net_backend.cache_clear()  # resolved above, where openvino may be installed
    try:
        assert resolve_net_backend("auto", cpu) == "torch"
    finally:
        resolve_net_backend.cache_clear()  # later tests see the real answer again
