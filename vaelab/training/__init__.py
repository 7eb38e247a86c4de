"""Training: the loop, checkpoints, learning-rate schedules and ``vaelab.train``."""
from .run import run_split, train, train_config
from .trainer import TrainConfig, TrainingInterrupted, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "fit", "run_split", "train", "train_config"]
