"""Fine-tuning: schedule, best-on-dev checkpoints, resume."""
