"""tokenroute: numpy bindings (ctypes) for the tokenroute C library, SIMD kernels for
dynamic token routing in transformer inference.

The shared library is found through ``TOKENROUTE_LIB``, next to this package, or in
the cargo target directory (see :func:`tokenroute._ffi.candidate_paths`); its ABI
version is checked at import. Each kernel family is one module (``score``, ...), whose
functions are re-exported here. Errors raise :class:`TokenrouteError`, carrying the C
status code and its name.
"""

from ._ffi import EXPECTED_ABI_VERSION, LIBRARY_PATH, TokenrouteError, lib
from .core import (
    ISA_IDS,
    abi_version,
    get_isa,
    get_isa_id,
    isa_name,
    release_thread_buffers,
    set_isa,
    status_string,
    supported_isas,
    version,
    version_number,
)
from .score import score, sigmoid
from .select import indices_to_mask, mask_to_indices, threshold, topk, topk_workspace_size
from .compact import compact_rows, gather_rows, kv_compact, scatter_add_rows, scatter_rows
from .route import Routed, route, route_workspace_size
from .softmax import softmax
from .threads import available_cores, get_num_threads, set_num_threads, set_thread_num_threads
from .attend import (
    AttentionResult,
    QuestBlocks,
    attention,
    attention_merge,
    key_block_bound,
    key_block_summary,
    quest_select_blocks,
)

__version__ = "0.1.0"

__all__ = [
    "AttentionResult",
    "QuestBlocks",
    "Routed",
    "attention",
    "attention_merge",
    "available_cores",
    "get_num_threads",
    "set_num_threads",
    "set_thread_num_threads",
    "compact_rows",
    "gather_rows",
    "key_block_bound",
    "key_block_summary",
    "kv_compact",
    "quest_select_blocks",
    "route",
    "route_workspace_size",
    "scatter_add_rows",
    "scatter_rows",
    "EXPECTED_ABI_VERSION",
    "ISA_IDS",
    "LIBRARY_PATH",
    "TokenrouteError",
    "abi_version",
    "get_isa",
    "get_isa_id",
    "indices_to_mask",
    "mask_to_indices",
    "isa_name",
    "lib",
    "release_thread_buffers",
    "score",
    "set_isa",
    "sigmoid",
    "softmax",
    "status_string",
    "supported_isas",
    "threshold",
    "topk",
    "topk_workspace_size",
    "version",
    "version_number",
]
