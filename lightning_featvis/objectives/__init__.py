"""Visualization objectives: LightningModules whose only trainable parameter is the input (an
image, or a text model's input embeddings)."""

from lightning_featvis.objectives.accentuation import AccentuationObjective
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.objectives.class_logit import ClassLogitObjective
from lightning_featvis.objectives.deep_dream import DeepDreamObjective
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.objectives.reconstruction import ReconstructionObjective
from lightning_featvis.objectives.text import TextReconstructionObjective
from lightning_featvis.results import GroupResult

__all__ = [
    "AccentuationObjective",
    "ClassLogitObjective",
    "DeepDreamObjective",
    "GroupResult",
    "NeuronObjective",
    "ReconstructionObjective",
    "TextReconstructionObjective",
    "VisualizationObjective",
]
