"""Data: the dataset registry; finding, verifying, reading, splitting and downloading datasets;
a person's pictures turned into MNIST's input."""
