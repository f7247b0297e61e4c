"""The floor of ``common``: helpers every other package may use and that use no other package of ``common``.

- :mod:`common.utils.io`: atomic writes of text, strict JSON, bytes and NIfTI files (temporary name, then rename);
- :mod:`common.utils.hashing`: SHA-256 of files;
- :mod:`common.utils.checkpoints`: checkpoint file names, the newest checkpoint of a folder, and atomic, reproducible
  weights files;
- :mod:`common.utils.cpu`: the CPU's model name and identity (model, vector ISA, threads);
- :mod:`common.utils.dist`: rank and world size through ``ignite.distributed``;
- :mod:`common.utils.errors`: errors about the user's input, printed last by the bundle runner;
- :mod:`common.utils.paths`: the root folder of the bundle whose config is being parsed.
- :mod:`common.utils.rng`: capture and restore of every random state (global and object-owned generators);
- :mod:`common.utils.state_dict`: a state dict of tensors read from a local weights file (``weights_only=True``).
"""

from common.utils.checkpoints import CHECKPOINT_PREFIX, latest_checkpoint, save_atomic
from common.utils.dist import get_rank, get_world_size, is_rank0
from common.utils.errors import UserInputError, find_user_error, install_excepthook
from common.utils.hashing import sha256_file
from common.utils.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    save_nifti,
    split_ext,
    strict_json,
)
from common.utils.paths import bundle_root
from common.utils.rng import object_rng_states, rng_state, set_object_rng_states, set_rng_state
from common.utils.state_dict import read_state_dict_file

__all__ = [
    "CHECKPOINT_PREFIX",
    "UserInputError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "bundle_root",
    "find_user_error",
    "get_rank",
    "get_world_size",
    "install_excepthook",
    "is_rank0",
    "latest_checkpoint",
    "save_atomic",
    "object_rng_states",
    "read_state_dict_file",
    "remove_stale_temporaries",
    "rng_state",
    "save_nifti",
    "set_object_rng_states",
    "set_rng_state",
    "sha256_file",
    "split_ext",
    "strict_json",
]
