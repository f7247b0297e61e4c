from . import converters  # noqa: F401
from .enhancement import attach_difference_maps, mix_synthetic_pairs, pseudo_label_entries  # noqa: F401
from .images import draw_per_class, read_datalist_images  # noqa: F401
from .latent import conditional_latent_samples, latent_samples  # noqa: F401
from .loading import (  # noqa: F401
    PERSISTENT_AUTO,
    LoaderSettingError,
    cycle_loader,
    loader_options,
    make_dataloader,
    preprocess_once,
    seed_worker,
)
from .merging import NOISE_SOURCE, merge_datalists  # noqa: F401
from .pairs import SameClassPairDataset  # noqa: F401
from .phantoms import (  # noqa: F401
    add_training_patients,
    make_brain_metastases,
    make_brain_mr,
    make_chest_ct,
    prepare_phantom,
)
from .refinement import (  # noqa: F401
    REAL_DOMAIN,
    SYNTHETIC_DOMAIN,
    class_entries,
    refinement_entries,
    synthetic_entries,
)
from .sampling import (  # noqa: F401
    BALANCE_MODES,
    balance_classes,
    build_training_entries,
    load_synthetic_entries,
    mix_synthetic,
)
from .splits import (  # noqa: F401
    BRATS_S_FRACTION,
    IMBALANCED_NUM_NEGATIVE,
    IMBALANCED_NUM_POSITIVE,
    SPLIT_MODES,
    check_patient_disjoint,
    imbalanced_subset,
    make_split_datalist,
    patient_groups,
    subsample_patients,
)
from .unpaired import UnpairedDataset, split_by_class  # noqa: F401
from .validation import DatalistError, DatalistProblem, require_entries, validate_datalist  # noqa: F401
