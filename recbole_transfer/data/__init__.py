"""Cross-domain data: datasets and derived domains, relatedness."""

from .domains import check_domain, check_enough_items, materialize, resolve_domain, validate_spec
from .protocol import Protocol, data_seed_of
from .pairs import Overlap, overlap
from .relatedness import id_tokens, kl_relatedness, user_counts

__all__ = ["Overlap", "overlap", "Protocol", "data_seed_of", "check_domain", "check_enough_items", "materialize", "resolve_domain", "validate_spec", "id_tokens", "kl_relatedness", "user_counts"]
