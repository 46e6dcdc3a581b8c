"""Pattern-based binary ICL classification (Li, Wang, Lu, Cui, Chen, ICML 2024).

Spec: /work/shared/spec/toy-pattern-classification.md. Modules:

    config.py     `PatternsConfig` (dataclass, `validate()`)
    data.py       orthogonal relevant / irrelevant patterns, tasks, prompt sampler, OOD patterns
    model.py      one-layer softmax attention + ReLU MLP as a TransformerLens `HookedRootModule`
    metrics.py    error, margin, correct attention; magnitude vs random pruning of MLP neurons
    ood.py        out-of-domain sweep over S1 and the test context length
    baselines.py  ICL against logistic regression, SVMs and k-NN fit on each prompt's contexts
    figures.py    the PNG figures (each with a JSON of its numbers)
    train.py      hinge loss + SGD training loop, run directory, `load`
    setting.py    `SETTING` for `toy.api` (name "patterns")
"""
from .config import PatternsConfig

__all__ = ["PatternsConfig"]
