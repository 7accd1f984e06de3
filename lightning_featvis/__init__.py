"""lightning_featvis: feature visualization for vision transformers, MLP-Mixers and
language-model stacks, as PyTorch Lightning modules whose only parameter is the image."""

from lightning_featvis.callbacks import (
    GaussianBlur,
    ImageLogger,
    ImageWriter,
    PositionalJitter,
    ReconstructionReport,
)
from lightning_featvis.data import Target, TargetDataModule, parse_targets
from lightning_featvis.errors import FeatvisError
from lightning_featvis.objectives import (
    ClassLogitObjective,
    DeepDreamObjective,
    NeuronObjective,
    ReconstructionObjective,
    VisualizationObjective,
)
from lightning_featvis.params import ImageParam, PhotoImage, PixelImage
from lightning_featvis.schedule import Octave

__all__ = [
    "ClassLogitObjective",
    "DeepDreamObjective",
    "FeatvisError",
    "GaussianBlur",
    "ImageLogger",
    "ImageParam",
    "ImageWriter",
    "NeuronObjective",
    "Octave",
    "PhotoImage",
    "PixelImage",
    "PositionalJitter",
    "ReconstructionObjective",
    "ReconstructionReport",
    "Target",
    "TargetDataModule",
    "VisualizationObjective",
    "parse_targets",
]
