"""Training: the step, the trainer, run directories, checkpoints and wandb."""
