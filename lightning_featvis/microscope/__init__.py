"""The microscope: a model's units beside the real images that drive them, and a static
gallery of whole layers.

- :func:`dataset_examples` (``featvis examples``): one pass over a dataset keeps every
  target's top-k and bottom-k images, their per-patch maps and the histogram of its
  activation (:class:`DatasetExamples`);
- the parts it is made of: :class:`~lightning_featvis.microscope.reader.UnitReader` (a
  target's activation on real images, as a render reads it),
  :class:`~lightning_featvis.microscope.extremes.RunningExtremes` and
  :class:`~lightning_featvis.microscope.histogram.RunningHistogram` (exact, mergeable running
  statistics), :func:`~lightning_featvis.image_sources.image_source` (digits, folders,
  Hugging Face datasets).
"""

from lightning_featvis.image_sources import image_source
from lightning_featvis.microscope.extremes import RunningExtremes
from lightning_featvis.microscope.histogram import RunningHistogram
from lightning_featvis.microscope.reader import UnitReader, find_examples
from lightning_featvis.microscope.runs import dataset_examples
from lightning_featvis.microscope.store import DatasetExamples

__all__ = ["DatasetExamples", "RunningExtremes", "RunningHistogram", "UnitReader", "dataset_examples", "find_examples",
           "image_source"]
