"""Loss functions (InfoNCE, NT-Xent, multi-positive, LTCL, shuffle-degree prediction)."""
from .shuffle import edit_distance, sample_shuffle  # noqa: E402,F401  (CACL shuffle-degree prediction)
from .multipositive import multi_positive_infonce, multi_positive_infonce_embeddings  # noqa: E402,F401
from .ltcl import local_loss, ltcl_loss, temporal_loss  # noqa: E402,F401  (CVTCL LTCL)
from .infonce import info_nce  # noqa: E402,F401
from .ntxent import nt_xent  # noqa: E402,F401
