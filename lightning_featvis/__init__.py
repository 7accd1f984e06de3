"""lightning_featvis: feature visualization for vision transformers, MLP-Mixers and
language-model stacks, as PyTorch Lightning modules whose only parameter is the image."""

from lightning_featvis.callbacks import (
    AugmentationEnsemble,
    GaussianBlur,
    ImageLogger,
    ImageWriter,
    PixelNorm,
    PositionalJitter,
    ReconstructionReport,
    TotalVariation,
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
from lightning_featvis.params import (
    DecorrelatedImage,
    FourierImage,
    GrayscaleImage,
    ImageParam,
    MacoImage,
    PhotoImage,
    PixelImage,
)
from lightning_featvis.schedule import Octave

__all__ = [
    "AugmentationEnsemble",
    "ClassLogitObjective",
    "DecorrelatedImage",
    "DeepDreamObjective",
    "FeatvisError",
    "FourierImage",
    "GaussianBlur",
    "GrayscaleImage",
    "ImageLogger",
    "ImageParam",
    "ImageWriter",
    "MacoImage",
    "NeuronObjective",
    "Octave",
    "PhotoImage",
    "PixelImage",
    "PixelNorm",
    "PositionalJitter",
    "ReconstructionObjective",
    "ReconstructionReport",
    "Target",
    "TargetDataModule",
    "TotalVariation",
    "VisualizationObjective",
    "parse_targets",
]
