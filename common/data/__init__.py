from .latent import latent_samples  # noqa: F401
from .phantoms import make_brain_metastases, make_brain_mr, make_chest_ct, prepare_phantom  # noqa: F401
from .unpaired import UnpairedDataset, split_by_class  # noqa: F401
from .validation import DatalistError, DatalistProblem, validate_datalist  # noqa: F401
