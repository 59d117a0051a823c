"""Training: the ``Trainer`` that owns a run's state, Adam, the model and its file, the run's
folder, history and curves, and the thread policy."""
