"""scikit-learn estimators trained with fastopt: :class:`MLPClassifier`, :class:`MLPRegressor`."""
from fastopt.estimators._mlp import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
