import pytest
import torch

from torch import nn

from emobatch.faces.emotion.models import ARCHITECTURES, build_model, fold_batchnorm


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architectures_forward(name):
    m = build_model(name).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_unknown_architecture():
    with pytest.raises(KeyError, match="unknown architecture"):
        build_model("nope")


def test_fold_batchnorm_keeps_outputs_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_model("vgg_s").eval()
    for m in model.modules():  # trained-looking statistics, not the identity ones
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
