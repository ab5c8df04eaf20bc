"""Stage 2: heads on cached features: registry, estimators, tuning, metrics, training,
compare, report."""
