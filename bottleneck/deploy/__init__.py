"""Stage 3: a fitted head and its base as one deployable model: export, predict, finetune."""
