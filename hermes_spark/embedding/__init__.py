"""The embedding model on executors: loading, device, backends, tokenizing and batching.

Importing this package costs nothing on the driver: torch, sentence-transformers and
onnxruntime are imported inside the functions that need them.
"""

from hermes_spark.embedding.device import choose_device, task_cpus
from hermes_spark.embedding.models import (
    CHARS_PER_TOKEN_CAP,
    DEFAULT_MODEL_ALIASES,
    count_tokens,
    embed_texts,
    embedding_dim,
    load_model,
    resolve_model_path,
)
from hermes_spark.embedding.vectors import decode_f16, encode_f16

__all__ = [
    "CHARS_PER_TOKEN_CAP",
    "DEFAULT_MODEL_ALIASES",
    "choose_device",
    "count_tokens",
    "decode_f16",
    "embed_texts",
    "embedding_dim",
    "encode_f16",
    "load_model",
    "resolve_model_path",
    "task_cpus",
]
