"""Faces of the engine for other tools: scikit-learn's ``MLPClassifier`` and ``MLPRegressor``,
the model file as an estimator, ONNX export."""
