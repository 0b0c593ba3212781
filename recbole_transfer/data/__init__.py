"""Cross-domain data: datasets and derived domains, relatedness."""

from .domains import check_domain, check_enough_items, materialize, resolve_domain, validate_spec
from .protocol import Protocol, data_seed_of
from .pairs import ColdStartSplit, Overlap, cold_start_split, overlap
from .relatedness import id_tokens, kl_relatedness, user_counts

__all__ = ["ColdStartSplit", "Overlap", "cold_start_split", "overlap", "Protocol", "data_seed_of", "check_domain", "check_enough_items", "materialize", "resolve_domain", "validate_spec", "id_tokens", "kl_relatedness", "user_counts"]
