"""Training: the configuration, optimizers, learning-rate schedules and the loop.

    config     TrainConfig (every default), resume_config
    optim      SGD, momentum, Adagrad, RMSprop, Adam; global-norm clipping
    schedule   constant, char-rnn's step decay, nanoGPT's cosine
    loop       train_step (the one training step), train, resume
    log        TrainLog: the JSON lines of <out>.log.jsonl; read_log
"""
from .config import TrainConfig, resume_config
from .loop import Interrupted, Reporter, TrainResult, resume, train, train_step

__all__ = ["TrainConfig", "resume_config", "Interrupted", "Reporter", "TrainResult", "resume", "train", "train_step"]
