"""Cross-domain data: datasets and derived domains, relatedness."""

from .domains import check_enough_items, materialize, resolve_domain, validate_spec
from .relatedness import kl_relatedness, user_counts

__all__ = ["check_enough_items", "materialize", "resolve_domain", "validate_spec", "kl_relatedness", "user_counts"]
