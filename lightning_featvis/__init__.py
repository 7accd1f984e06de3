"""lightning_featvis: feature visualization for vision transformers, MLP-Mixers and
language-model stacks, as PyTorch Lightning modules whose only parameter is the image (or a
text model's input embeddings)."""

from lightning_featvis.algebra import UnitSum, interpolate, unit
from lightning_featvis.callbacks import (
    AttributionMap,
    AugmentationEnsemble,
    CompileNetwork,
    GaussianBlur,
    GaussianPrior,
    ImageLogger,
    ImageWriter,
    PixelNorm,
    PositionalJitter,
    ReconstructionReport,
    TextReport,
    TotalVariation,
)
from lightning_featvis.data import SentenceTargets, TargetDataModule
from lightning_featvis.dictionaries import OvercompleteSAE, WithDictionaries
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models import AnyModule, HuggingFaceVision, Layout, ModelAdapter
from lightning_featvis.objectives import (
    AccentuationObjective,
    ClassLogitObjective,
    DeepDreamObjective,
    NeuronObjective,
    ReconstructionObjective,
    TextReconstructionObjective,
    VisualizationObjective,
)
from lightning_featvis.params import (
    DataImage,
    DecorrelatedImage,
    EmbeddingSequence,
    FourierImage,
    GrayscaleImage,
    ImageParam,
    MacoImage,
    PhotoImage,
    PixelImage,
)
from lightning_featvis.rendering import Rendering, layers, render
from lightning_featvis.schedule import Octave
from lightning_featvis.targets import Target, parse_targets

__all__ = [
    "AccentuationObjective",
    "AnyModule",
    "AttributionMap",
    "AugmentationEnsemble",
    "ClassLogitObjective",
    "CompileNetwork",
    "DataImage",
    "DecorrelatedImage",
    "DeepDreamObjective",
    "EmbeddingSequence",
    "FeatvisError",
    "FourierImage",
    "GaussianBlur",
    "GaussianPrior",
    "GrayscaleImage",
    "HuggingFaceVision",
    "ImageLogger",
    "ImageParam",
    "ImageWriter",
    "Layout",
    "MacoImage",
    "ModelAdapter",
    "NeuronObjective",
    "Octave",
    "OvercompleteSAE",
    "PhotoImage",
    "PixelImage",
    "PixelNorm",
    "PositionalJitter",
    "ReconstructionObjective",
    "ReconstructionReport",
    "Rendering",
    "SentenceTargets",
    "Target",
    "TargetDataModule",
    "TextReconstructionObjective",
    "TextReport",
    "TotalVariation",
    "UnitSum",
    "VisualizationObjective",
    "WithDictionaries",
    "interpolate",
    "layers",
    "parse_targets",
    "render",
    "unit",
]
