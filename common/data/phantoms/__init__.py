"""Deterministic synthetic phantom data sets for tests, tutorials and smoke runs of the bundles.

Every set is generated from a single integer seed, written as NIfTI files (``.nii.gz``) with a diagonal affine
giving the voxel spacing, and described by a Decathlon-style datalist JSON whose paths are relative to the JSON
file (readable by :py:func:`monai.data.load_decathlon_datalist`). Sets are split by patient into ``training``,
``validation`` and ``test``; splits are stratified by the patient class where there is one.

Generation is atomic: a set is written into a hidden sibling directory of ``output_dir`` and renamed into place
at the end, so an interrupted generation never leaves a half-written data set behind.

Array axes follow the NIfTI files as nibabel loads them (``nib.load(f).get_fdata()``): axis 0 is ``x``
(left-right), axis 1 is ``y`` (anterior-posterior) and axis 2 is ``z`` (inferior-superior). Boxes are given in
voxel index coordinates of these axes, in corner format (``"xyxy"`` / ``"xyzxyz"``), start inclusive and end
exclusive, so ``0 <= x1 < x2 <= shape[0]``.

Kinds of sets, one module per family:

- :py:func:`make_brain_mr` (:py:mod:`.brain_mr`): four-channel (T1, T1c, T2, FLAIR) brain MR slices (2D) or
  volumes (3D) with glioma-like tumours (necrotic core, enhancing rim, oedema) on positive patients.
- :py:func:`make_chest_ct` (:py:mod:`.chest_ct`): chest CT volumes in Hounsfield units with lung nodules of three
  sizes and three attenuations, with bounding boxes.
- :py:func:`make_brain_metastases` (:py:mod:`.brain_metastases`): single-channel T1c-like 2D brain slices with
  several small ring-enhancing lesions on positive patients, with bounding boxes.
- :py:class:`BrainMRDifficulty` and :py:data:`BRAIN_MR_PRESETS` (:py:mod:`.difficulty`): difficulty knobs of
  :py:func:`make_brain_mr` (lesion contrast and size, texture, noise, anatomical variability) and the
  calibrated presets of the 2D benchmark tasks.
- :py:class:`ChestCTDifficulty`, :py:class:`BrainMetastasesDifficulty` and their presets
  (:py:mod:`.detection_difficulty`): difficulty knobs of :py:func:`make_chest_ct` and
  :py:func:`make_brain_metastases` and the calibrated presets of the detection tasks.
- :py:func:`prepare_phantom` (:py:mod:`.prepare`): generate a set once into a directory and return its
  ``datalist.json`` path.
- :py:func:`add_training_patients` (:py:mod:`.more_patients`): a set's datalist with more training patients of the
  same phantom, for the upper bound of an experiment on few patients.

The two brain families share the head anatomy of :py:mod:`.brain_anatomy`; :py:mod:`.base` holds the argument
checks, patient splits, geometry helpers and the atomic writing of a set.
"""

from common.data.phantoms.base import DATALIST_NAME, DEFAULT_SPLIT_FRACTIONS, SPLIT_NAMES
from common.data.phantoms.brain_anatomy import BRAIN_MR_CHANNELS
from common.data.phantoms.brain_metastases import make_brain_metastases
from common.data.phantoms.brain_mr import BRAIN_TUMOUR_LABELS, make_brain_mr
from common.data.phantoms.chest_ct import NODULE_ATTENUATIONS, NODULE_SIZES, make_chest_ct
from common.data.phantoms.detection_difficulty import (
    BRAIN_METASTASES_PRESETS,
    CHEST_CT_PRESETS,
    BrainMetastasesDifficulty,
    ChestCTDifficulty,
)
from common.data.phantoms.difficulty import BRAIN_MR_PRESETS, BrainMRDifficulty
from common.data.phantoms.more_patients import add_training_patients
from common.data.phantoms.prepare import NO_PHANTOM, PHANTOM_KINDS, prepare_phantom

__all__ = [
    "BRAIN_METASTASES_PRESETS",
    "BRAIN_MR_CHANNELS",
    "BRAIN_MR_PRESETS",
    "BRAIN_TUMOUR_LABELS",
    "BrainMRDifficulty",
    "BrainMetastasesDifficulty",
    "CHEST_CT_PRESETS",
    "ChestCTDifficulty",
    "DATALIST_NAME",
    "DEFAULT_SPLIT_FRACTIONS",
    "NODULE_ATTENUATIONS",
    "NODULE_SIZES",
    "NO_PHANTOM",
    "PHANTOM_KINDS",
    "SPLIT_NAMES",
    "add_training_patients",
    "make_brain_metastases",
    "make_brain_mr",
    "make_chest_ct",
    "prepare_phantom",
]
