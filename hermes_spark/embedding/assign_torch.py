"""LST + RVQ assignment in torch, on the device the model's vectors are already on.

Executor side. Same arithmetic, in the same order and precision (float32), as
``Codebook.assign`` (numpy), so codes agree except on exact float ties; used when the
model runs on a GPU so vectors never make a round trip to the host for assignment.
Per-parent (tree) codebooks are searched among each row's own parent's codewords, as
``nearest_in_parent`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: rows per chunk: bounds the (rows × K) score block on the device
CHUNK_ROWS = 65_536
#: rows per chunk with per-parent books: bounds the gathered (rows × K × r) codewords
TREE_CHUNK_ROWS = 4_096


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
        self.sizes = tuple(int(k) for k in rvq.levels)
        self.depths = tuple(int(d) for d in rvq.parent_depths)
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
        chunk = TREE_CHUNK_ROWS if any(self.depths) else CHUNK_ROWS
        with torch.inference_mode():
            for start in range(0, n, chunk):
                residual = self.transform(x[start : start + chunk])
                c_parts: list[Any] = []
                q_parts = []
                for k in range(levels):
                    best = self._nearest(residual, k, c_parts)
                    book = self.books[k]
                    if self.depths[k]:
                        best_row = self._parent(c_parts, k) * self.sizes[k] + best
                    else:
                        best_row = best
                    residual = residual - book.index_select(0, best_row)
                    c_parts.append(best)
                    q_parts.append((residual * residual).sum(dim=1))
                stop = start + residual.shape[0]
                codes[start:stop] = torch.stack(c_parts, 1).cpu().numpy()
                qerr[start:stop] = torch.stack(q_parts, 1).cpu().numpy()
        return codes, qerr

    def _parent(self, codes: list[Any], k: int) -> Any:
        """Packed prefix of the first ``depths[k]`` stages' codes (int64 tensor)."""
        import torch

        out = torch.zeros_like(codes[0])
        for j in range(self.depths[k]):
            out = out * self.sizes[j] + codes[j]
        return out

    def _nearest(self, residual: Any, k: int, codes: list[Any]) -> Any:
        """Index in ``[0, K_k)`` of each row's nearest stage-``k`` codeword (its parent's)."""
        import torch

        book, sq = self.books[k], self.book_sq[k]
        if not self.depths[k]:
            scores = residual @ book.T
            return torch.argmin(scores * -2.0 + sq, dim=1)
        size = self.sizes[k]
        parent = self._parent(codes, k)
        blocks = book.reshape(-1, size, book.shape[1]).index_select(0, parent)
        scores = torch.einsum("nr,nkr->nk", residual, blocks)
        return torch.argmin(scores * -2.0 + sq.reshape(-1, size).index_select(0, parent), dim=1)
