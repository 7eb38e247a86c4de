"""Training: the loop, checkpoints, learning-rate schedules and ``vaelab.train``."""
from .run import train, train_config
from .trainer import TrainConfig, TrainingInterrupted, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "fit", "train", "train_config"]
