"""Template regression (Yang, Huang, Liang, Chi, NeurIPS 2024): in-context learning with representations.

A fixed dictionary of K unit tokens v_k with random representations f(v_k) in R^m; a task lambda;
noisy labels y_k = lambda^T (f(v_k) + eps_k). Every prompt shows the first N tokens with their labels
and the model predicts the labels of all K tokens. The one-layer multi-head softmax attention model
(only Q_h and w_h trained, w starting at zero) trained on the closed-form population loss converges
linearly, and at convergence predicts like ridge regression in the representation space with penalty
m*tau (not the optimal N*tau). Spec: /work/shared/spec/toy-template-regression.md.

Modules: `config` (TemplatesConfig), `data` (dictionary, prompts, closed forms, ridge baselines),
`model` (one-layer and deep HookedRootModules), `train` (training loops), `metrics`, `figures`,
`setting` (the `toy.api.Setting` named "templates").
"""
