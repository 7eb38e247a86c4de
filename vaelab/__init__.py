"""vaelab: the autoencoder family on real images.

    model = vaelab.build("vae", latent_dim=20)
    result = vaelab.train("vae", "mnist", "runs/vae", config={"epochs": 10})
    model = vaelab.load("runs/vae")
    vaelab.evaluate(model, vaelab.load_dataset("mnist", "test").x, nll_samples=5000,
                    binarize="dynamic")
    vaelab.export_codes("runs/vae", "mnist", "codes.npz")   # posterior means, log-variances, labels
"""
from .version import __version__  # noqa: F401  (one home, low enough for every layer)
from .codes import encode_images, export_codes  # noqa: E402
from .data import Dataset, load_dataset  # noqa: E402
from .errors import VaelabError  # noqa: E402
from .evaluation import evaluate, log_likelihood  # noqa: E402
from .io import load, save  # noqa: E402
from .data.batch import Batch  # noqa: E402
from .models import Loss, Model, build, names as model_names  # noqa: E402
from .models.base import Phase  # noqa: E402
from .models.pipeline import Stage  # noqa: E402
from .training import TrainConfig, train  # noqa: E402
from .training.stages import train_stages  # noqa: E402

__all__ = ["Batch", "Dataset", "Loss", "Model", "Phase", "Stage", "TrainConfig", "VaelabError", "build", "encode_images",
           "evaluate", "export_codes", "load", "load_dataset", "log_likelihood", "model_names", "save", "train",
           "train_stages"]
