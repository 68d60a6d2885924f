import pytest
import torch

from emobatch.models import ARCHITECTURES, build_model


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architectures_forward(name):
    m = build_model(name).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_unknown_architecture():
    with pytest.raises(KeyError, match="unknown architecture"):
        build_model("nope")
