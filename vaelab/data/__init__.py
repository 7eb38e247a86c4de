"""Data: named datasets, image folders and arrays as in-memory tensors in [0, 1], and data
derived from them (labelled subsets, quadrant masks, a trained model's codes)."""

from vaelab.data.derive import encoded, fingerprint, labelled_subset, quadrant_mask, quadrant_target_mask
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

__all__ = ["DATASETS", "Dataset", "binarize_static", "encoded", "fingerprint", "has_test_split", "labelled_subset",
           "load_dataset", "quadrant_mask", "quadrant_target_mask", "read_idx", "resolve_data_dir", "split_test",
           "split_validation"]
