"""LatentView: one way for every picture to encode, decode and rank dimensions of any model."""
from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.viz.latent import LatentView


def _model(name, **cfg):
    torch.manual_seed(0)
    return vaelab.build(name, input_shape=(1, 8, 8), hidden=[16], latent_dim=3, **cfg)


def test_vae_codes_are_posterior_means_and_images_lie_in_the_unit_interval():
    model = _model("vae")
    view = LatentView(model)
    x = torch.rand(5, 1, 8, 8)
    assert torch.allclose(view.encode(x), model.posterior_params(x)[0])
    images = view.decode(torch.randn(4, 3))
    assert images.shape == (4, 1, 8, 8) and 0 <= float(images.min()) and float(images.max()) <= 1


def test_dimensions_rank_by_mean_kl_for_a_vae_and_by_code_variance_for_an_autoencoder():
    model = _model("vae")
    x = torch.rand(50, 1, 8, 8)
    order = LatentView(model).dimension_order(x)
    kl = model.kl_per_dim(x).mean(0)
    assert order.order == torch.argsort(kl, descending=True).tolist()
    assert order.scores == pytest.approx(kl.tolist(), rel=1e-5) and "KL" in order.measure
    ae = _model("ae")
    codes = ae.code(x)
    ranked = LatentView(ae).dimension_order(x)
    assert ranked.order == torch.argsort(codes.var(0), descending=True).tolist() and "variance" in ranked.measure


def test_a_conditional_model_needs_a_label_to_decode_and_a_plain_one_refuses_it():
    cvae = _model("cvae", num_classes=10)
    view = LatentView(cvae)
    z = torch.randn(3, 3)
    assert view.conditional and view.num_classes == 10
    assert not torch.equal(view.decode(z, 1), view.decode(z, 7))
    with pytest.raises(VaelabError, match="choose one from 0 to 9"):
        view.decode(z)
    with pytest.raises(VaelabError, match="outside this model's classes"):
        view.decode(z, 10)
    with pytest.raises(VaelabError, match="labelled images"):
        view.encode(torch.rand(2, 1, 8, 8))
    assert view.encode(Batch(torch.rand(2, 1, 8, 8), torch.tensor([1, 2]))).shape == (2, 3)
    with pytest.raises(VaelabError, match="decodes without labels"):
        LatentView(_model("vae")).decode(z, 1)


def test_codes_of_the_wrong_width_or_not_finite_are_refused_in_one_line():
    view = LatentView(_model("vae"))
    with pytest.raises(VaelabError, match=r"N×3 for this model"):
        view.decode(torch.zeros(2, 4))
    with pytest.raises(VaelabError, match="NaN or infinite"):
        view.decode(torch.tensor([[0.0, float("nan"), 0.0]]))
