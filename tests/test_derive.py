"""Derived data: class-balanced labelled subsets, quadrant masks, a model's cached codes."""
from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.data import (Dataset, encoded, fingerprint, labelled_subset, load_dataset, quadrant_mask,
                         quadrant_target_mask)
from vaelab.data.samplers import SemiSupervisedSampler
from vaelab.errors import VaelabError
from vaelab.files import atomic_write_bytes, read_safetensors, serialize


def _ids(counts: list[int]) -> Dataset:
    """Feature vectors whose single value is the row's index; class c has counts[c] rows."""
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    return Dataset("ids", torch.arange(len(y), dtype=torch.float32)[:, None], y, tuple("abcdefghij"[:len(counts)]))


# --- labelled_subset --------------------------------------------------------------------


def test_labelled_subset_is_balanced_per_class(mnist_small):
    ds = mnist_small.train  # real MNIST's classes are unequal, so balance must be drawn
    semi = labelled_subset(ds, 10, seed=0)
    assert len(semi) == len(ds) and torch.equal(semi.x, ds.x)  # every row, in its order
    assert semi.n_labelled == 100
    assert torch.bincount(semi.y[semi.labelled], minlength=10).tolist() == [10] * 10
    assert torch.equal(semi.y[semi.labelled], ds.y[semi.labelled])  # the true labels where labelled
    assert (semi.y[~semi.labelled] == -1).all()  # hidden labels are not kept
    assert semi.n_classes == 10 and semi.classes == ds.classes


def test_labelled_subset_kingma_protocol_on_50k(data_dir):
    train = load_dataset("mnist", "train", data_dir=data_dir, download=False).subset(slice(0, 50000))
    labelled, unlabelled = labelled_subset(train, 100 // 10, seed=0).split_labelled()
    assert (len(labelled), len(unlabelled)) == (100, 49900)
    assert torch.bincount(labelled.y, minlength=10).tolist() == [10] * 10
    assert unlabelled.y is None and unlabelled.n_labelled == 0


def test_labelled_subset_feeds_the_semi_supervised_sampler():
    ds = _ids([30, 30, 30])
    labelled, unlabelled = labelled_subset(ds, 4, seed=3).split_labelled()
    sampler = SemiSupervisedSampler(labelled.batch(), unlabelled.batch(), 5, 20, seed=0)
    steps = list(sampler.epoch())
    assert len(steps) == 4  # the 78 unlabelled rows define the epoch
    ids_l = set(labelled.x[:, 0].tolist())
    for step in steps:
        rows = step.x[:, 0]
        assert set(rows[step.labelled].tolist()) <= ids_l and ids_l.isdisjoint(rows[~step.labelled].tolist())
        assert torch.equal(step.y[step.labelled], ds.y[rows[step.labelled].long()])


def test_labelled_subset_deterministic_by_seed_and_differs_across_seeds():
    ds = _ids([30, 40, 50])
    a, b, c = labelled_subset(ds, 5, seed=7), labelled_subset(ds, 5, seed=7), labelled_subset(ds, 5, seed=8)
    assert torch.equal(a.labelled, b.labelled) and torch.equal(a.y, b.y)
    assert not torch.equal(a.labelled, c.labelled)
    assert a.name == "ids (5 labelled per class, seed 7)"


def test_labelled_and_unlabelled_parts_are_disjoint_and_cover_the_data():
    ds = _ids([20, 25, 30])
    labelled, unlabelled = labelled_subset(ds, 6, seed=1).split_labelled()
    ids_l, ids_u = set(labelled.x[:, 0].tolist()), set(unlabelled.x[:, 0].tolist())
    assert len(ids_l) == 18 and len(ids_u) == 57
    assert ids_l.isdisjoint(ids_u) and ids_l | ids_u == set(range(75))
    assert torch.equal(labelled.y, ds.y[labelled.x[:, 0].long()])  # each labelled row keeps its own label


def test_labelled_subset_draws_only_rows_already_labelled():
    ds = _ids([10, 10])
    first = labelled_subset(ds, 6, seed=0)
    second = labelled_subset(first, 3, seed=0)
    assert second.n_labelled == 6 and not (second.labelled & ~first.labelled).any()
    with pytest.raises(VaelabError, match=r"class 'a' has only 6 labelled examples"):
        labelled_subset(first, 7, seed=0)


def test_labelled_subset_bad_input_one_line_each():
    ds = _ids([12, 5, 9])
    with pytest.raises(VaelabError, match=r"^class 'b' has only 5 labelled examples in ids, fewer than per_class=6; "
                                          r"choose per_class ≤ 5 \(its smallest class\)$"):
        labelled_subset(ds, 6, seed=0)
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(VaelabError, match=r"^per_class must be a whole number of labelled examples per class, "
                                              r"at least 1; got "):
            labelled_subset(ds, bad, seed=0)
    with pytest.raises(VaelabError, match=r"^labelled_subset needs class labels .* dataset faces has no y; "
                                          r"load a labelled dataset$"):
        labelled_subset(Dataset("faces", torch.rand(4, 1, 2, 2)), 1, seed=0)
    with pytest.raises(VaelabError, match=r"dataset attrs has y of torch.float32 \(4, 3\)"):
        labelled_subset(Dataset("attrs", torch.rand(4, 2), torch.rand(4, 3)), 1, seed=0)
    with pytest.raises(VaelabError, match=r"^seed must be a whole number, got 1.5$"):
        labelled_subset(ds, 2, seed=1.5)
    none = Dataset("none", torch.rand(3, 2), torch.zeros(3, dtype=torch.int64), labelled=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(VaelabError, match="has no labelled rows to draw from"):
        labelled_subset(none, 1, seed=0)


# --- quadrant_mask ----------------------------------------------------------------------

# (pixel, given for visible = 1, 2, 3): the corners of an H×W image
_CORNERS = {"bottom-left": (True, True, True), "top-left": (False, True, True),
            "top-right": (False, False, True), "bottom-right": (False, False, False)}


@pytest.mark.parametrize("visible,hidden_fraction", [(1, 3 / 4), (2, 1 / 2), (3, 1 / 4)])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 4, 6)])
def test_quadrant_geometry(visible, hidden_fraction, shape):
    c, h, w = shape
    images = torch.rand(5, c, h, w) * 0.9 + 0.05
    out = quadrant_mask(Dataset("img", images, torch.arange(5)), visible)
    target = out.extras["target_mask"]
    assert target.shape == images.shape and target.dtype == torch.bool
    assert target.float().mean().item() == pytest.approx(hidden_fraction)
    assert (out.x[target] == -1).all() and torch.equal(out.x[~target], images[~target])
    assert torch.equal(out.y, images) and not out.has_class_labels
    pixel = {"bottom-left": (h - 1, 0), "top-left": (0, 0), "top-right": (0, w - 1), "bottom-right": (h - 1, w - 1)}
    for corner, given in _CORNERS.items():
        assert bool(target[0, 0][pixel[corner]]) != given[visible - 1], corner
    half_h, half_w = h // 2, w // 2  # quadrants are equal: the boundary sits at H/2, W/2
    assert not target[0, 0, half_h, half_w - 1].item()  # bottom-left quadrant, always given
    assert target[0, 0, half_h - 1, half_w - 1].item() == (visible == 1)  # top-left quadrant
    assert target[0, 0, half_h, half_w].item()  # bottom-right quadrant, always hidden
    assert target[0, 0, half_h - 1, half_w].item() == (visible != 3)


def test_quadrant_mask_fill_subset_and_one_mask_in_memory(synthetic_small):
    ds = synthetic_small.test.subset(slice(0, 50))
    out = quadrant_mask(ds, 2, fill=0.5)
    assert out.extras["target_mask"].stride()[0] == 0  # one H×W pattern, not N copies
    assert (out.x[:, :, :, 14:] == 0.5).all() and torch.equal(out.x[:, :, :, :14], ds.x[:, :, :, :14])
    part = out.subset(torch.tensor([3, 7]))
    assert torch.equal(part.y, ds.x[[3, 7]]) and torch.equal(part.extras["target_mask"][0], out.extras["target_mask"][0])
    assert out.name == f"{ds.name} (2 quadrants visible)"
    assert torch.equal(quadrant_target_mask(2, 28, 28), out.extras["target_mask"][0, 0])


def test_quadrant_mask_bad_input_one_line_each():
    with pytest.raises(VaelabError, match=r"^quadrants need an even height and width, got 5×6 images; crop or pad"):
        quadrant_mask(Dataset("odd", torch.rand(2, 1, 5, 6)), 1)
    with pytest.raises(VaelabError, match=r"got 4×7 images"):
        quadrant_mask(Dataset("odd", torch.rand(2, 1, 4, 7)), 2)
    for bad in (0, 4, True, "2"):
        with pytest.raises(VaelabError, match=r"^visible must be 1, 2 or 3 quadrants \(1 = bottom-left given"):
            quadrant_mask(Dataset("img", torch.rand(2, 1, 4, 4)), bad)
    with pytest.raises(VaelabError, match=r"^quadrant_mask needs images .* dataset feats holds torch.float32 \(2, 16\)"):
        quadrant_mask(Dataset("feats", torch.rand(2, 16)), 1)


# --- encoded ----------------------------------------------------------------------------


def _counting(model):
    """``model`` whose encode calls are counted (in ``model.calls``)."""
    model.calls = 0
    encode = model.encode

    def counted(x):
        model.calls += 1
        return encode(x)
    model.encode = counted
    return model


@pytest.fixture
def tiny_vae():
    torch.manual_seed(0)
    return _counting(vaelab.build("vae", input_shape=[1, 28, 28], hidden=[16], latent_dim=3))


def test_encoded_posterior_means_with_labels_carried(tiny_vae, synthetic_small, tmp_path):
    ds = labelled_subset(synthetic_small.train.subset(slice(0, 300)), 5, seed=0)
    out = encoded(tiny_vae, ds, tmp_path / "codes.safetensors", batch_size=64)
    assert tiny_vae.calls == 5  # ceil(300 / 64) batches
    with torch.no_grad():
        expected = tiny_vae.posterior_params(ds.x)[0]
    assert out.x.shape == (300, 3) and out.x.dtype == torch.float32
    torch.testing.assert_close(out.x, expected)
    assert torch.equal(out.y, ds.y) and torch.equal(out.labelled, ds.labelled) and out.classes == ds.classes
    assert out.shape == (3,) and not out.is_image
    torch.nn.Linear(3, 2)(out.x).sum().backward()  # the codes can feed a second stage's training
    assert tiny_vae.training  # the caller's mode is restored


def test_encoded_cache_hit_and_miss(tiny_vae, synthetic_small, tmp_path):
    ds, path = synthetic_small.train.subset(slice(0, 200)), tmp_path / "run" / "features.safetensors"
    first = encoded(tiny_vae, ds, path, batch_size=100)
    assert tiny_vae.calls == 2 and path.is_file()
    _, meta = read_safetensors(path)
    assert meta["fingerprint"] == fingerprint(tiny_vae, ds.x) and meta["vaelab"] == "encoded"
    again = encoded(tiny_vae, ds, path, batch_size=50)  # hit: nothing encoded, same codes bit for bit
    assert tiny_vae.calls == 2 and torch.equal(again.x, first.x)
    relabelled = encoded(tiny_vae, labelled_subset(ds, 3, seed=1), path)  # labels are not part of the key
    assert tiny_vae.calls == 2 and relabelled.n_labelled == 30
    with torch.no_grad():
        next(tiny_vae.parameters()).add_(0.05)  # changed weights: the cache is stale
    changed = encoded(tiny_vae, ds, path, batch_size=100)
    assert tiny_vae.calls == 4 and not torch.equal(changed.x, first.x)
    assert read_safetensors(path)[1]["fingerprint"] == fingerprint(tiny_vae, ds.x) != meta["fingerprint"]
    other = encoded(tiny_vae, synthetic_small.train.subset(slice(200, 400)), path, batch_size=100)  # changed data
    assert tiny_vae.calls == 6 and not torch.equal(other.x, changed.x)


def test_encoded_autoencoder_codes(synthetic_small, tmp_path):
    torch.manual_seed(0)
    ae = vaelab.build("ae", input_shape=[1, 28, 28], hidden=[16], latent_dim=2)
    ds = synthetic_small.test.subset(slice(0, 40))
    out = encoded(ae, ds, tmp_path / "ae.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(out.x, ae.encode(ds.x).mean)


def test_encoded_refuses_what_it_must_not_overwrite(tiny_vae, synthetic_small, tmp_path):
    ds = synthetic_small.train.subset(slice(0, 20))
    foreign = tmp_path / "weights.safetensors"
    atomic_write_bytes(foreign, serialize({"w": torch.zeros(2)}, {"model": "vae"}))
    before = foreign.read_bytes()
    with pytest.raises(VaelabError, match=r"weights\.safetensors is a safetensors file that vaelab.data.encoded did "
                                          r"not write; choose another path \(it is left as it is\)$"):
        encoded(tiny_vae, ds, foreign)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("my notes\n")
    with pytest.raises(VaelabError, match=r"notes\.txt is not a valid safetensors file .*; delete it to recompute"):
        encoded(tiny_vae, ds, garbage)
    assert foreign.read_bytes() == before and garbage.read_text() == "my notes\n" and tiny_vae.calls == 0


def test_encoded_bad_input_one_line_each(tiny_vae, tmp_path):
    with pytest.raises(VaelabError, match=r"^the model encodes inputs of shape \[1, 28, 28\] but dataset small has "
                                          r"\[1, 8, 8\]; encode the data the model was trained on$"):
        encoded(tiny_vae, Dataset("small", torch.rand(3, 1, 8, 8)), tmp_path / "c.safetensors")
    with pytest.raises(VaelabError, match=r"^batch_size must be a whole number of rows per batch, at least 1; got 0$"):
        encoded(tiny_vae, Dataset("img", torch.rand(3, 1, 28, 28)), tmp_path / "c.safetensors", batch_size=0)
    with pytest.raises(VaelabError, match="no rows to encode"):
        encoded(tiny_vae, Dataset("empty", torch.rand(0, 1, 28, 28)), tmp_path / "c.safetensors")
    with pytest.raises(VaelabError, match=r"encoded needs a model with an encoder \(encode\(x\)\); Linear has none"):
        encoded(torch.nn.Linear(2, 2), Dataset("v", torch.rand(3, 2)), tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()
