"""The four models behind one interface (:class:`ml.models.base.Model`).

Importing this package is cheap: TensorFlow loads only when the forecaster trains or loads.
"""

from ml.models.anomaly_detector import AnomalyDetector
from ml.models.base import Model
from ml.models.efficiency_regressor import EfficiencyRegressor
from ml.models.lstm_forecaster import LSTMForecaster
from ml.models.pattern_classifier import PatternClassifier

MODELS: dict[str, type[Model]] = {
    m.name: m for m in (LSTMForecaster, PatternClassifier, AnomalyDetector, EfficiencyRegressor)
}

__all__ = ["MODELS", "AnomalyDetector", "EfficiencyRegressor", "LSTMForecaster", "Model", "PatternClassifier"]
