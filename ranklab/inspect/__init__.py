"""Introspection: exact spectra of ΔW from factors, rank measures, subspace similarity,
router probes, task embeddings and rank dynamics, for ranklab and PEFT LoRA/AdaLoRA adapters."""
from .adapter_files import read_adapter
from .audit import AdapterAudit, audit_adapter
from .dynamics import RankDynamics
from .embeddings import (
    last_layer_names,
    project_2d,
    task_embedding_layers,
    last_layer_tables,
    task_embedding_points,
    task_embeddings,
)
from .factors import (
    adapted_modules,
    adapter_param_count,
    base_weight,
    default_selectors,
    is_adapted,
    is_peft_lora,
    layer_index,
    method_name,
    model_factors,
    module_factors,
    short_module_name,
)
from .probes import RouterProbe, router_layers, router_summary
from .ranks import (
    effective_rank,
    energy_rank,
    frobenius_norm,
    numerical_rank,
    rank_measures,
    spectral_entropy,
    stable_rank,
)
from .report import model_report, module_row, rank_table
from .similarity import (
    module_similarity,
    row_space_basis,
    similarity_grid,
    singular_basis,
    subspace_similarity,
)
from .spectra import (
    FactoredSVD,
    check_against_dense,
    dense_spectrum,
    factored_svd,
    model_spectra,
    module_spectrum,
    module_svd,
    spectrum_from_factors,
    spectrum_gap,
)

__all__ = [
    "read_adapter", "AdapterAudit", "audit_adapter", "RankDynamics", "last_layer_names", "last_layer_tables", "project_2d", "task_embedding_layers", "task_embedding_points",
    "task_embeddings", "adapted_modules", "adapter_param_count", "base_weight", "default_selectors", "is_adapted",
    "is_peft_lora", "layer_index", "method_name", "model_factors", "module_factors",
    "short_module_name", "RouterProbe", "router_layers", "router_summary", "effective_rank",
    "energy_rank", "frobenius_norm", "numerical_rank", "rank_measures", "spectral_entropy",
    "stable_rank", "model_report", "module_row", "rank_table", "module_similarity",
    "row_space_basis", "similarity_grid", "singular_basis", "subspace_similarity", "FactoredSVD",
    "dense_spectrum", "factored_svd", "model_spectra", "module_spectrum", "module_svd",
    "spectrum_from_factors", "spectrum_gap", "check_against_dense",
]
