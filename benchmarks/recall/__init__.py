"""Recall-quality benchmark for the channel memory.

A synthetic but realistic Slack channel history with planted facts and paraphrased questions
(`history`), two baselines the product must beat (`bm25`, dense retrieval through `embedding_server`),
and the recall metric (`metrics`). Run `python -m benchmarks.recall.baselines` for the baseline figures.
"""
