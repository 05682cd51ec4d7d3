"""Long-term memory of a channel, recalled by meaning: see `agent.recall.recall.Recall`."""

from agent.recall.embeddings import Embedder, EmbeddingSettings
from agent.recall.recall import Recall, RecallLimits, Recollection, memory_item
from agent.recall.table import MemoryItem, memory_key

__all__ = [
    "Embedder",
    "EmbeddingSettings",
    "MemoryItem",
    "Recall",
    "RecallLimits",
    "Recollection",
    "memory_item",
    "memory_key",
]
