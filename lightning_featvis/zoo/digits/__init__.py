"""The digits zoo: networks, shipped checkpoints, training data and training configs of the
models this project trains on scikit-learn's digits."""

from lightning_featvis.zoo.digits.models import (
    DigitsCNN,
    DigitsGPT2,
    DigitsMixer,
    DigitsViT,
)
from lightning_featvis.zoo.digits.sae import DigitsSAE

__all__ = ["DigitsCNN", "DigitsGPT2", "DigitsMixer", "DigitsSAE", "DigitsViT"]
