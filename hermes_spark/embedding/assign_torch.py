"""LST + RVQ assignment in torch, on the device the model's vectors are already on.

Executor side. Same arithmetic, in the same order and precision (float32), as
``Codebook.assign`` (numpy), so codes agree except on exact float ties; used when the
model runs on a GPU so vectors never make a round trip to the host for assignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: rows per chunk: bounds the (rows × K) score block on the device
CHUNK_ROWS = 65_536


class TorchAssigner:
    """A codebook's LST and RVQ arrays on a torch ``device``."""

    def __init__(self, codebook: Any, device: str):
        import torch

        lst, rvq = codebook.lst, codebook.rvq

        def put(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

        self.mean, self.components, self.scale = (
            put(lst.mean),
            put(lst.components),
            put(lst.scale),
        )
        self.renormalize = bool(lst.renormalize)
        self.books = [put(c) for c in rvq.codebooks]
        self.book_sq = [(b * b).sum(dim=1) for b in self.books]
        self.device = device

    def transform(self, x: Any) -> Any:
        """LST: centre, project, whiten, renormalise (float32 torch tensor)."""
        import torch

        out = (x.float() - self.mean) @ self.components
        out = out * self.scale
        if self.renormalize:
            norms = torch.linalg.vector_norm(out, dim=1, keepdim=True).clamp_min(1e-12)
            out = out / norms
        return out

    def assign(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Codes int32 ``(n, L)`` and qerr float32 ``(n, L)`` on the host."""
        import torch

        n, levels = int(x.shape[0]), len(self.books)
        codes = np.empty((n, levels), dtype=np.int32)
        qerr = np.empty((n, levels), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, n, CHUNK_ROWS):
                residual = self.transform(x[start : start + CHUNK_ROWS])
                c_parts, q_parts = [], []
                for book, sq in zip(self.books, self.book_sq, strict=True):
                    scores = residual @ book.T
                    scores = scores * -2.0 + sq
                    best = torch.argmin(scores, dim=1)
                    residual = residual - book.index_select(0, best)
                    c_parts.append(best)
                    q_parts.append((residual * residual).sum(dim=1))
                stop = start + residual.shape[0]
                codes[start:stop] = torch.stack(c_parts, 1).cpu().numpy()
                qerr[start:stop] = torch.stack(q_parts, 1).cpu().numpy()
        return codes, qerr
