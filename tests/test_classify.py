import numpy as np
import pytest

from emobatch.align import Aligner
from emobatch.classify import Classifier
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


@pytest.mark.parametrize("tta", ["flip", "zoom", "tencrop"])
def test_tta_is_mirror_symmetric(tta):
    """Each mode's views of a mirrored face are the mirrored views of the face."""
    clf = Classifier(device="cpu", tta=tta, amp="off")
    crops = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(clf.predict(crops), clf.predict(crops[:, :, ::-1].copy()), atol=1e-5)


def test_tta_views_count_and_geometry():
    import torch

    from emobatch.classify import tta_views

    x = torch.arange(48.0).repeat(2, 1, 48, 1)  # column index as the pixel value
    assert [len(tta_views(x, m)) for m in ("none", "flip", "zoom", "tencrop")] == [1, 2, 4, 10]
    top_left, centre = tta_views(x, "tencrop")[0], tta_views(x, "zoom")[1]
    assert all(v.shape == x.shape for v in tta_views(x, "tencrop"))
    assert top_left[0, 0, 0, -1] < 44 and top_left[0, 0, 0, 0] < 0.5  # columns 0..43 scaled
    torch.testing.assert_close(centre[0, 0, 0, 24] + centre[0, 0, 0, 23], torch.tensor(47.0))


def test_tta_agrees_however_views_are_batched(monkeypatch):
    import emobatch.classify as c

    clf = Classifier(device="cpu", tta="tencrop", amp="off")
    crops = np.random.default_rng(4).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    together = clf.predict(crops)
    monkeypatch.setattr(c, "MAX_FORWARD", 1)  # one view per forward pass
    np.testing.assert_allclose(clf.predict(crops), together, atol=1e-5)


def test_bad_tta_rejected(clf):
    from emobatch.classify import predict_probs

    with pytest.raises(ValueError):
        predict_probs(clf.model, np.zeros((1, 48, 48), np.uint8), clf.device, None, tta="ten")


def test_needs_crops(clf):
    with pytest.raises(ValueError, match="crops"):
        clf.classify(FaceBatch.empty())


def test_real_face_end_to_end(clf, detector, astronaut_rgb):
    faces = clf.classify(Aligner().align(astronaut_rgb, detector.detect(astronaut_rgb)))
    assert faces.probs.shape == (len(faces), 7) and len(faces) >= 1


def test_per_call_tta_overrides_the_default():
    clf = Classifier(device="cpu", tta="flip", amp="off")
    crops = np.random.default_rng(3).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    mirrored = crops[:, :, ::-1].copy()
    plain, flipped = clf.predict(crops, "none"), clf.predict(mirrored, "none")
    np.testing.assert_allclose(clf.predict(crops), (plain + flipped) / 2, atol=1e-5)
    assert not np.allclose(plain, flipped, atol=1e-3)
