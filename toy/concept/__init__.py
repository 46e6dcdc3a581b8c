"""Concept-based sparse-coding ICL toy (Bu et al., NeurIPS 2024). Spec: toy-concept-icl.md.

    from toy.concept import ConceptConfig, train
    run = train(ConceptConfig(d=64, K=4), out_dir="runs/c0")
"""
from .config import ConceptConfig
from .data import Dictionary, Prompts, bayes_error, make_dictionary, make_tasks, sample_prompts
from .model import ConceptTransformer, build_model
from .train import load, train

__all__ = ["ConceptConfig", "Dictionary", "Prompts", "bayes_error", "make_dictionary", "make_tasks",
           "sample_prompts", "ConceptTransformer", "build_model", "load", "train"]
