"""Data: named datasets, image folders and arrays as in-memory tensors in [0, 1]."""

from vaelab.data.idx import read_idx
from vaelab.data.sources import (
    DATASETS,
    Dataset,
    binarize_static,
    has_test_split,
    load_dataset,
    resolve_data_dir,
    split_test,
    split_validation,
)

__all__ = ["DATASETS", "Dataset", "binarize_static", "has_test_split", "load_dataset", "read_idx", "resolve_data_dir",
           "split_test", "split_validation"]
