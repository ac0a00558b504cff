"""How a model is trained: `config` (TrainingConfig), `runtime` (measured defaults: XLA,
precision), `fit` (compile, fit a stage, predict), `resume` (saved state), `features` (cached
features of a frozen extractor), `history`, `experiment` (`run_experiment`: check, plan, fit,
evaluate, write) and `utkface` (`train_on_utkface`: one model on the committed split)."""
