"""Cross-domain data: datasets and derived domains, relatedness."""

from .domains import check_enough_items, materialize, resolve_domain, validate_spec
from .relatedness import id_tokens, kl_relatedness, user_counts

__all__ = ["check_enough_items", "materialize", "resolve_domain", "validate_spec", "id_tokens", "kl_relatedness", "user_counts"]
