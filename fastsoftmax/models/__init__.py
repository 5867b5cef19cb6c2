"""The scikit-learn face: SoftmaxRegression (estimator.py) and SoftmaxRegressionSweep (sweep.py), the
checks of their inputs once per fit (inputs.py), their weights on the host (weights.py), class labels
(labels.py), the standardisation of lr="auto" (standardize.py) and the hyper-parameters' one table
(hyperparameters.py)."""
