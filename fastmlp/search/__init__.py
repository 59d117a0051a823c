"""The hyperparameter search: the space (no Optuna), the study and its storage, the workers and
their objective, and the dashboard."""
