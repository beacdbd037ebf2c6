"""Compression techniques: distillation, pruning, structured cuts, compact embeddings, QAT."""
