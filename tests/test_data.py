"""Data loading: strict IDX parsing, real MNIST, folders, arrays, splits, downloads."""

import gzip
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import (DATASETS, Dataset, binarize_static, has_test_split, load_dataset, read_idx, resolve_data_dir,
                         split_test, split_validation)
from vaelab.data.download import fetch, sha256_file
from vaelab.data.idx import write_idx
from vaelab.errors import VaelabError, VaelabWarning

from conftest import SHARED_DATA


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data {path} not present on this machine")


# --- IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(5, dtype=np.uint8))
    (tmp_path / "a.gz").rename(tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), np.arange(5))


def test_idx_wrong_magic(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(VaelabError, match=r"not an IDX file \(bad magic"):
        read_idx(tmp_path / "x")


def test_idx_unknown_type_code(tmp_path):
    (tmp_path / "x").write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]))
    with pytest.raises(VaelabError, match="unknown type code 0x07"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize("name", ["t.idx", "t.idx.gz"])
def test_idx_truncated(tmp_path, name):
    data = bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(10)
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(VaelabError, match=r"t\.idx.* 12 payload bytes but the file holds only 10"):
        read_idx(tmp_path / name)


@pytest.mark.parametrize("name", ["t.idx", "t.idx.gz"])
def test_idx_trailing_bytes(tmp_path, name):
    data = bytes([0, 0, 8, 1, 0, 0, 0, 3]) + bytes(5)
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(VaelabError, match=r"3 payload bytes but the file holds (5|more)"):
        read_idx(tmp_path / name)


def test_idx_huge_header_refused_before_allocating(tmp_path):
    (tmp_path / "huge").write_bytes(bytes([0, 0, 8, 2]) + np.array([10**6, 10**6], ">u4").tobytes())
    start = time.perf_counter()
    with pytest.raises(VaelabError, match=r"declares shape \(1000000, 1000000\).*over the"):
        read_idx(tmp_path / "huge")
    assert time.perf_counter() - start < 1


def test_idx_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 1, 0]) + bytes(range(256))))
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "c.gz").write_bytes(bytes(blob))
    with pytest.raises(VaelabError, match=r"corrupt gzip stream in IDX file .*c\.gz"):
        read_idx(tmp_path / "c.gz")


def test_idx_missing_file(tmp_path):
    with pytest.raises(VaelabError, match="cannot open IDX file"):
        read_idx(tmp_path / "nope")


# --- named datasets -------------------------------------------------------------------


@needs(SHARED_DATA / "mnist")
def test_mnist_from_shared_data():
    train = load_dataset("mnist", "train", data_dir=SHARED_DATA, download=False)
    test = load_dataset("mnist", "test", data_dir=SHARED_DATA, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.shape == test.shape == (1, 28, 28)
    assert train.x.dtype == torch.float32 and 0 <= train.x.min() and train.x.max() == 1
    assert set(train.y.unique().tolist()) == set(range(10)) and train.y.dtype == torch.int64
    assert train.y[0] == 5 and train.classes == tuple("0123456789")


def test_mnist_missing_offline_names_path(tmp_path):
    expected = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(VaelabError, match=re.escape(str(expected)) + " is missing"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_idx_dataset_checks_content(tmp_path):
    root = tmp_path / "kmnist"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))  # uncompressed names work
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3], np.uint8))
    ds = load_dataset("kmnist", "test", data_dir=tmp_path, download=False)
    assert len(ds) == 3 and ds.classes[1] == "ki"
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2], np.uint8))
    with pytest.raises(VaelabError, match="has 3 images but .* has 2 labels"):
        load_dataset("kmnist", "test", data_dir=tmp_path, download=False)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 10], np.uint8))
    with pytest.raises(VaelabError, match="not labels 0..9"):
        load_dataset("kmnist", "test", data_dir=tmp_path, download=False)


def test_digits_fixed_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1500, 297) and train.shape == (1, 8, 8)
    assert 0 <= train.x.min() and train.x.max() == 1
    assert torch.equal(load_dataset("digits", "test").x, test.x)


@needs(SHARED_DATA / "frey-faces")
def test_frey_faces():
    train = load_dataset("frey-faces", data_dir=SHARED_DATA)
    test = load_dataset("frey-faces", "test", data_dir=SHARED_DATA)
    assert (len(train), len(test)) == (1765, 200) and train.shape == (1, 28, 20)
    assert train.y is None and 0 <= train.x.min() and train.x.max() <= 1


def test_frey_missing_says_where(tmp_path):
    with pytest.raises(VaelabError, match=re.escape(str(tmp_path / "frey-faces")) + ".*no verified download source"):
        load_dataset("frey-faces", data_dir=tmp_path)


@pytest.mark.parametrize("spec", ["../x", "data/mnist", "..", "a\\b"])
def test_paths_are_not_dataset_names(spec):
    with pytest.raises(VaelabError, match="not a dataset name.*folder:PATH"):
        load_dataset(spec)


def test_unknown_name_and_split():
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'.*mnist, fashion-mnist, kmnist, digits, frey-faces"):
        load_dataset("cifar")
    with pytest.raises(VaelabError, match="unknown split 'valid'.*train, test"):
        load_dataset("digits", "valid")
    assert "mnist" in DATASETS


def test_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "other") == tmp_path / "other"
    with pytest.raises(VaelabError, match=re.escape(str(tmp_path / "fashion-mnist" / "train-images"))):
        load_dataset("fashion-mnist", download=False)
    monkeypatch.delenv("VAELAB_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "vaelab" / "data"


# --- folder: --------------------------------------------------------------------------


def _png(path: Path, size=(4, 3), mode="L", value=128):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_folder_with_classes(tmp_path):
    for cls, n in (("cat", 2), ("ant", 3)):
        for i in range(n):
            _png(tmp_path / cls / f"{i}.png", value=255)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.classes == ("ant", "cat") and ds.y.tolist() == [0, 0, 0, 1, 1]
    assert ds.shape == (1, 3, 4) and ds.x.max() == 1


def test_folder_unlabelled_rgb_and_splits(tmp_path):
    _png(tmp_path / "train" / "a.png", mode="RGBA", value=(255, 0, 0, 10))
    _png(tmp_path / "train" / "b.jpg")
    _png(tmp_path / "test" / "c.png")
    train = load_dataset(f"folder:{tmp_path}", "train")
    assert train.y is None and train.shape == (3, 3, 4)
    assert train.x[0, :, 0, 0].tolist() == [1, 0, 0]
    assert len(load_dataset(f"folder:{tmp_path}", "test")) == 1


def test_folder_mixed_sizes(tmp_path):
    _png(tmp_path / "a.png", size=(4, 3))
    _png(tmp_path / "b.png", size=(5, 3))
    with pytest.raises(VaelabError, match=r"a\.png is 4×3 but .*b\.png is 5×3.*resize"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_unreadable_and_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="no images .* found in"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _png(tmp_path / "bad" / "a.png")
    (tmp_path / "bad" / "b.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(VaelabError, match=r"cannot read image .*b\.png"):
        load_dataset(f"folder:{tmp_path / 'bad'}")
    with pytest.raises(VaelabError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_folder_of_0_1_images_is_read_as_black_and_white(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray((np.arange(12).reshape(3, 4) % 2 == i % 2).astype(np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.warns(VaelabWarning, match=r"folder:.*hold only the values 0 and 1.*black-and-white"):
        ds = load_dataset(f"folder:{tmp_path}")
    assert ds.x.max() == 1 and set(ds.x.unique().tolist()) == {0.0, 1.0}  # not 1/255


def test_folder_without_test_part_has_no_test_split(tmp_path):
    _png(tmp_path / "all" / "a.png")
    _png(tmp_path / "held" / "b.png", value=255)
    spec = f"folder:{tmp_path / 'all'}"
    assert not has_test_split(spec) and has_test_split(f"{spec},test={tmp_path / 'held'}")
    with pytest.raises(VaelabError, match=r"no held-out test split.*train/ and test/ sub-folders.*--test-fraction"):
        load_dataset(spec, "test")
    assert load_dataset(f"{spec},test={tmp_path / 'held'}", "test").x.max() == 1


# --- npy: -----------------------------------------------------------------------------


def test_npy_uint8_and_layouts(tmp_path):
    np.save(tmp_path / "hw.npy", np.full((2, 5, 6), 255, np.uint8))
    ds = load_dataset(f"npy:{tmp_path / 'hw.npy'}", "train")
    assert ds.shape == (1, 5, 6) and len(ds) == 2 and ds.x.max() == 1
    np.save(tmp_path / "hwc.npy", np.zeros((2, 5, 6, 3), np.uint8))
    assert load_dataset(f"npy:{tmp_path / 'hwc.npy'}").shape == (3, 5, 6)


def test_npy_float_range_and_npz_labels(tmp_path):
    x = np.random.default_rng(0).random((4, 1, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 2, 1, 2]))
    ds = load_dataset(f"npy:{tmp_path / 'd.npz'}")
    assert torch.equal(ds.x, torch.from_numpy(x)) and ds.y.tolist() == [0, 2, 1, 2] and ds.classes == ("0", "1", "2")
    np.save(tmp_path / "big.npy", x * 255)
    with pytest.raises(VaelabError, match=r"must lie in \[0, 1\]"):
        load_dataset(f"npy:{tmp_path / 'big.npy'}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_npy_0_1_integers_are_read_as_black_and_white(tmp_path, dtype):
    x = (np.random.default_rng(0).random((4, 5, 5)) > 0.5).astype(dtype)
    np.save(tmp_path / "mask.npy", x)
    with pytest.warns(VaelabWarning, match=rf"mask\.npy: the {np.dtype(dtype)} pixels hold only the values 0 and 1"):
        ds = load_dataset(f"npy:{tmp_path / 'mask.npy'}")
    assert torch.equal(ds.x[:, 0], torch.from_numpy(x).float())  # 0/1, not 0 and 1/255
    np.save(tmp_path / "wide.npy", x * 7)  # other integers: uint8 stays 0..255 (no notice), int64 is refused
    if dtype == np.uint8:
        with warnings.catch_warnings():
            warnings.simplefilter("error", VaelabWarning)
            assert load_dataset(f"npy:{tmp_path / 'wide.npy'}").x.max() == pytest.approx(7 / 255)
    else:
        with pytest.raises(VaelabError, match="has dtype int64; save images as uint8"):
            load_dataset(f"npy:{tmp_path / 'wide.npy'}")


def test_npy_nan_and_inf_are_named_and_counted(tmp_path):
    x = np.full((5, 3, 3), 0.5, np.float32)
    x[0, 0, 0] = x[0, 1, 1] = np.nan
    x[3, 2, 2] = np.inf
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(VaelabError, match=r"nan\.npy: the images hold 2 NaN and 1 inf values \(in 2 of 5 images\); "
                                          r"replace them"):
        load_dataset(f"npy:{tmp_path / 'nan.npy'}")


def test_npy_test_split_only_when_named(tmp_path):
    np.save(tmp_path / "train.npy", np.zeros((6, 4, 4), np.uint8))
    np.save(tmp_path / "test.npy", np.full((2, 4, 4), 255, np.uint8))
    spec = f"npy:{tmp_path / 'train.npy'}"
    with pytest.raises(VaelabError, match=r"has no held-out test split .*npy:.*train\.npy,test=TEST\.npy.*"
                                          r"--test-fraction X.*--split train"):
        load_dataset(spec, "test")
    both = f"{spec},test={tmp_path / 'test.npy'}"
    assert has_test_split(both) and not has_test_split(spec) and has_test_split("mnist")
    assert len(load_dataset(both, "train")) == 6 and load_dataset(both, "train").x.max() == 0
    assert len(load_dataset(both, "test")) == 2 and load_dataset(both, "test").x.min() == 1
    with pytest.raises(VaelabError, match="names no test path after test="):
        load_dataset(f"{spec},test=", "test")


def test_npy_object_array_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(VaelabError, match=r"o\.npy holds Python objects"):
        load_dataset(f"npy:{tmp_path / 'o.npy'}")


# --- splits, binarization, Dataset ----------------------------------------------------


def _toy(n=10):
    return Dataset("toy", torch.rand(n, 1, 2, 2), torch.arange(n), None)


def test_split_validation_sizes_disjoint_deterministic():
    ds = _toy(10)
    train, val = split_validation(ds, 0.3, seed=1)
    assert (len(train), len(val)) == (7, 3)
    assert set(train.y.tolist()).isdisjoint(val.y.tolist()) and len(set(train.y.tolist()) | set(val.y.tolist())) == 10
    again, _ = split_validation(ds, 3, seed=1)
    assert torch.equal(again.y, train.y)
    with pytest.raises(VaelabError, match="fewer than 10"):
        split_validation(ds, 10, seed=0)
    with pytest.raises(VaelabError, match="count .* or a fraction"):
        split_validation(ds, 1.5, seed=0)


def test_split_test_is_fixed_and_disjoint():
    ds = _toy(20)
    train, test = split_test(ds, 0.25)
    assert (len(train), len(test)) == (15, 5) and set(train.y.tolist()).isdisjoint(test.y.tolist())
    assert torch.equal(split_test(ds, 0.25)[1].y, test.y)  # the same images every time
    assert test.y.tolist() == sorted(test.y.tolist())
    with pytest.raises(VaelabError, match="test fraction 0.01 of 20 images gives 0 test images"):
        split_test(ds, 0.01)


def test_binarize_static_seeded():
    x = torch.rand(50, 1, 4, 4)
    a, b = binarize_static(x, 3), binarize_static(x, 3)
    assert torch.equal(a, b) and a.dtype == torch.float32 and set(a.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(VaelabError, match=r"values in \[0, 1\]"):
        binarize_static(x * 2, 0)


def test_dataset_rejects_bad_tensors():
    with pytest.raises(VaelabError, match=r"x must be a tensor with one row per example, got ndarray"):
        Dataset("bad", np.zeros((3, 4)))
    with pytest.raises(VaelabError, match=r"y must be a tensor with 3 rows \(one per x\), got torch.int64 \(4,\)"):
        Dataset("bad", torch.zeros(3, 4), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(VaelabError, match=r"class labels y must be int64, got torch.int32; convert them with y.long\(\)"):
        Dataset("bad", torch.zeros(3, 4), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(VaelabError, match=r"labelled must be a bool tensor of shape \(3,\), got torch.int64 \(3,\)"):
        Dataset("bad", torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64), labelled=torch.ones(3, dtype=torch.int64))
    with pytest.raises(VaelabError, match="2 rows are marked labelled but y is None"):
        Dataset("bad", torch.zeros(3, 4), labelled=torch.tensor([True, False, True]))
    with pytest.raises(VaelabError, match="labelled rows hold the class index -1; class indices start at 0"):
        Dataset("bad", torch.zeros(3, 4), torch.tensor([0, -1, 2]))
    with pytest.raises(VaelabError, match="the class index 2 but only 2 classes are named"):
        Dataset("bad", torch.zeros(3, 4), torch.tensor([0, 1, 2]), ("a", "b"))
    with pytest.raises(VaelabError, match=r"extras\['mask'\] must be a tensor with 3 rows"):
        Dataset("bad", torch.zeros(3, 4), extras={"mask": torch.zeros(2, 4)})


def test_dataset_holds_feature_vectors():
    ds = Dataset("features", torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2]), ("a", "b", "c"))
    assert ds.shape == (5,) and not ds.is_image and ds.has_class_labels and ds.n_classes == 3
    part = ds.subset(torch.tensor([1, 4]))
    assert part.shape == (5,) and part.y.tolist() == [1, 1] and part.classes == ("a", "b", "c")
    with pytest.raises(VaelabError, match=r"training needs images \(float32 N×C×H×W\) but dataset features "
                                          r"holds torch.float32 \(6, 5\)"):
        ds.require_images("training")


def test_dataset_holds_integer_code_maps_and_target_tensors():
    codes = torch.randint(0, 512, (4, 7, 7))
    ds = Dataset("codes", codes, extras={"pos": torch.arange(4)})
    assert ds.shape == (7, 7) and ds.x.dtype == torch.int64 and not ds.is_image
    assert not ds.has_class_labels and ds.n_classes is None and ds.n_labelled == 0
    assert torch.equal(ds.subset(slice(1, 3)).x, codes[1:3]) and ds.subset(slice(1, 3)).extras["pos"].tolist() == [1, 2]
    targets = Dataset("completion", torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2))
    assert targets.is_image and not targets.has_class_labels and targets.n_labelled == 4
    attributes = Dataset("attrs", torch.rand(4, 3), torch.rand(4, 40) > 0.5)
    assert attributes.y.shape == (4, 40) and attributes.n_classes is None


def test_dataset_unlabelled_rows_by_mask_not_sentinel():
    y = torch.tensor([3, -1, 0, -1])  # what unlabelled rows hold does not matter
    ds = Dataset("semi", torch.rand(4, 1, 2, 2), y, tuple("0123"), labelled=torch.tensor([True, False, True, False]))
    assert ds.n_labelled == 2 and ds.n_classes == 4
    labelled, unlabelled = ds.split_labelled()
    assert labelled.y.tolist() == [3, 0] and labelled.labelled is None and labelled.n_labelled == 2
    assert unlabelled.y is None and len(unlabelled) == 2 and unlabelled.n_labelled == 0
    assert torch.equal(unlabelled.x, ds.x[[1, 3]])
    assert ds.subset(torch.tensor([1, 2])).labelled.tolist() == [False, True]
    batch = ds.batch()
    assert batch.x is ds.x and batch.y is ds.y and batch.labelled_rows().tolist() == [True, False, True, False]
    nothing = Dataset("none", torch.rand(3, 2), labelled=torch.zeros(3, dtype=torch.bool))
    assert nothing.n_labelled == 0 and nothing.labelled_mask.tolist() == [False] * 3


def test_loaded_images_still_checked_as_images(data_dir):
    ds = load_dataset("mnist", "test", data_dir=data_dir, download=False)
    assert ds.is_image and ds.shape == (1, 28, 28) and ds.n_classes == 10 and ds.n_labelled == 10000
    assert ds.require_images() is ds


# --- download -------------------------------------------------------------------------


def test_fetch_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = sha256_file(src)
    dest = fetch(["file:///nonexistent/src.bin", src.as_uri()], tmp_path / "out" / "dest.bin", good)
    assert dest.read_bytes() == b"payload"
    with pytest.raises(VaelabError, match=r"checksum mismatch.*Place the file at .*bad\.bin"):
        fetch([src.as_uri()], tmp_path / "out" / "bad.bin", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dest.bin"]  # no temp files left


def test_fetch_offline_names_urls_and_destination(tmp_path):
    with pytest.raises(VaelabError, match=r"missing and could not be downloaded; tried file:///nonexistent/x\.gz .*Place the file at"):
        fetch(["file:///nonexistent/x.gz"], tmp_path / "x.gz", "0" * 64)


def test_cifar10_reads_the_jpeg_copy_in_class_order(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    test = load_dataset("cifar10", "test", data_dir=data_dir)
    assert tuple(test.x.shape) == (10000, 3, 32, 32) and test.x.dtype == torch.float32
    assert test.classes[0] == "airplane" and test.y[:1000].eq(0).all() and test.y[-1000:].eq(9).all()
    # the copy's decoded channel means (the data README's check), not the canonical ones
    assert torch.allclose(test.x.mean((0, 2, 3)), torch.tensor([0.4941, 0.4851, 0.4504]), atol=1e-3)
    cached = list((tmp_path / "cache" / "vaelab" / "decoded").glob("cifar10-*.npy"))
    assert len(cached) == 1
    assert torch.equal(load_dataset("cifar10", "test", data_dir=data_dir).x, test.x)  # the second load reads the cache


def test_cifar10_damaged_cache_is_decoded_again_and_a_wrong_archive_refused(tmp_path, monkeypatch, data_dir):
    from vaelab.data.cifar10 import ARCHIVES, _cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _cache_path(ARCHIVES["test"][2])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an array")
    assert len(load_dataset("cifar10", "test", data_dir=data_dir)) == 10000
    folder = tmp_path / "data" / "cifar10-test-jpeg"
    folder.mkdir(parents=True)
    with pytest.raises(VaelabError, match="CIFAR-10 archive .* is missing"):
        load_dataset("cifar10", "train", data_dir=tmp_path / "data")
    (folder / "cifar10-test-jpeg.tar.gz").write_bytes(b"something else")
    with pytest.raises(VaelabError, match="not the expected archive"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "data")
