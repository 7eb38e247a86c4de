import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.evaluation.clustering import cluster_error, cluster_labels, clusters_used


def one_hot(idx, c):
    return torch.nn.functional.one_hot(torch.tensor(idx), c).float()


def test_most_confident_takes_the_label_of_the_most_confident_image():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    labels = torch.tensor([3, 5, 5, 1])
    assert cluster_labels(probs, labels, "most-confident").tolist() == [3, 5, 1]


def test_majority_votes_and_an_empty_cluster_falls_back_to_its_most_confident_image():
    probs = one_hot([0, 0, 0, 1], 3) * 0.8 + 0.1
    probs[3, 2] = 0.15  # cluster 2 is nobody's argmax
    labels = torch.tensor([4, 4, 7, 2])
    names = cluster_labels(probs, labels, "majority")
    assert names[0] == 4 and names[1] == 2 and names[2] == 2


def test_error_counts_images_whose_cluster_is_named_otherwise():
    probs = one_hot([0, 1, 1, 2], 3)
    names = torch.tensor([0, 1, 1])
    assert cluster_error(probs, torch.tensor([0, 1, 2, 1]), names) == pytest.approx(0.25)
    assert clusters_used(probs) == 3 and clusters_used(one_hot([1, 1], 3)) == 1


def test_bad_input_is_one_clear_line():
    with pytest.raises(VaelabError, match="unknown cluster mapping"):
        cluster_labels(torch.rand(4, 3), torch.zeros(4), "hungarian")
    with pytest.raises(VaelabError, match="one label per image"):
        cluster_labels(torch.rand(4, 3), torch.zeros(3))
    with pytest.raises(VaelabError, match="2 cluster labels for 3 clusters"):
        cluster_error(torch.rand(4, 3), torch.zeros(4), torch.zeros(2, dtype=torch.long))
