"""The codebook artifact: LST + RVQ + model description, stored as a directory (no pickle).

Layout of an artifact directory::

    metadata.json        format version, content version, model, LST params, levels,
                         quantizer options, fit info
    arrays.safetensors   lst.mean, lst.components, lst.scale, [lst.rotation], rvq.0 ... rvq.{L-1}

The content version (``cb-`` + 12 hex chars) is a SHA-256 over the arrays and the canonical
JSON of the model, LST parameters, levels and quantizer options (when recorded: artifacts
written before options existed hash as they always did); fit metrics and timestamps are
excluded, so the same fit always yields the same version and any tampering with the content
is detected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from hermes_spark.errors import ArtifactError, InvalidConfigError
from hermes_spark.quantize.lst import LST, as_float32_matrix
from hermes_spark.quantize.options import QuantizerOptions
from hermes_spark.quantize.rvq import RVQ, check_level_sizes, fit_rvq
from hermes_spark.quantize.tree import parent_depths
from hermes_spark.quantize.warm_start import (
    check_parent,
    renumbered,
    starting_codebooks,
    warm_start_record,
)

__all__ = ["ARRAYS_FILE", "FORMAT_VERSION", "METADATA_FILE", "Codebook", "fit_codebook"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAYS_FILE = "arrays.safetensors"
_LST_KEYS = ("mean", "components", "scale", "rotation")


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars and arrays for :func:`json.dumps`."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _plain_json(obj: Any, what: str) -> Any:
    """Deep copy of ``obj`` as plain JSON types; :class:`InvalidConfigError` if impossible."""
    try:
        return json.loads(json.dumps(obj, default=_json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise InvalidConfigError(f"codebook {what} is not JSON serialisable: {exc}") from exc


def _array_name(level_index: int) -> str:
    return f"rvq.{level_index}"


@dataclass(frozen=True, eq=False)
class Codebook:
    """A fitted LST + RVQ pair with the embedding model it belongs to and its fit report.

    ``quantizer`` holds the :class:`QuantizerOptions` the pair was fitted with (``None`` for
    artifacts written before options were recorded).
    """

    lst: LST
    rvq: RVQ
    model: dict[str, Any]
    fit: dict[str, Any]
    quantizer: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        model = _plain_json(self.model, "model")
        fit = _plain_json(self.fit, "fit info")
        if self.quantizer is not None:
            quantizer = _plain_json(self.quantizer, "quantizer options")
            if not isinstance(quantizer, dict):
                raise ArtifactError("codebook quantizer options must be a mapping")
            object.__setattr__(self, "quantizer", quantizer)
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise ArtifactError("codebook model must be a mapping with a string 'name'")
        if not isinstance(fit, dict):
            raise ArtifactError("codebook fit info must be a mapping")
        dim = model.get("dim")
        if not isinstance(dim, int) or dim != self.lst.in_dim:
            raise ArtifactError(
                f"codebook model dim {dim!r} does not match the LST input dim {self.lst.in_dim}"
            )
        if self.lst.out_dim != self.rvq.dim:
            raise ArtifactError(
                f"LST output dim {self.lst.out_dim} does not match RVQ dim {self.rvq.dim}"
            )
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "fit", fit)

    # ------------------------------------------------------------------ identity

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"lst.{k}": v for k, v in self.lst.to_arrays().items()}
        arrays.update({_array_name(i): c for i, c in enumerate(self.rvq.codebooks)})
        return arrays

    def _hashed_header(self) -> dict[str, Any]:
        header = {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "lst": self.lst.params(),
            "levels": list(self.levels),
        }
        if self.quantizer is not None:
            header["quantizer"] = self.quantizer
        return header

    @cached_property
    def version(self) -> str:
        """Content hash ``cb-<12 hex>`` over arrays, model, LST params and levels."""
        h = hashlib.sha256()
        h.update(_canonical(self._hashed_header()).encode())
        for name, arr in sorted(self._arrays().items()):
            le = np.ascontiguousarray(arr, dtype="<f4")
            h.update(f"\0{name}:{le.dtype.str}:{list(le.shape)}\0".encode())
            h.update(le.tobytes())
        return "cb-" + h.hexdigest()[:12]

    @property
    def levels(self) -> tuple[int, ...]:
        """Codebook sizes per stage."""
        return self.rvq.levels

    @property
    def dim(self) -> int:
        """Embedding dimension the codebook expects."""
        return self.lst.in_dim

    # ------------------------------------------------------------------ use

    def assign(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes int32 ``(n, L)`` and qerr float32 ``(n, L)`` for ``(n, dim)`` embeddings."""
        return self.rvq.encode(self.lst.transform(embeddings))

    # ------------------------------------------------------------------ persistence

    def metadata(self) -> dict[str, Any]:
        """The JSON document written to ``metadata.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "codebook_version": self.version,
            "model": self.model,
            "dim": self.dim,
            "max_seq_length": self.model.get("max_seq_length"),
            "normalization": "l2" if self.model.get("normalize", True) else "none",
            "lst": self.lst.params(),
            "levels": list(self.levels),
            "quantizer": self.quantizer,
            "sample_size": self.fit.get("sample_size"),
            "seed": self.fit.get("seed"),
            "fit": self.fit,
            "arrays": {k: list(v.shape) for k, v in sorted(self._arrays().items())},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact directory at ``path``, replacing an existing one.

        Files go to a sibling temporary directory first, which is then renamed into place.
        """
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise ArtifactError(f"cannot save codebook: {target} exists and is not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            save_file(self._arrays(), str(tmp / ARRAYS_FILE), metadata={"codebook": self.version})
            text = json.dumps(self.metadata(), indent=2, sort_keys=True, default=_json_default)
            with open(tmp / METADATA_FILE, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.replace(old, target)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
        log.info("saved codebook %s (levels %s) to %s", self.version, self.levels, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Codebook:
        """Read and verify an artifact directory; :class:`ArtifactError` if it is unusable."""
        root = Path(path)
        if not root.is_dir():
            raise ArtifactError(f"codebook artifact not found: {root} is not a directory")
        meta = _read_metadata(root)
        arrays = _read_arrays(root)

        dim, levels, lst_params = meta["dim"], meta["levels"], meta["lst"]
        out_dim = lst_params.get("out_dim")
        expected = {"lst.mean": [dim], "lst.components": [dim, out_dim], "lst.scale": [out_dim]}
        if lst_params.get("rotation") == "opq":
            expected["lst.rotation"] = [out_dim, out_dim]
        quantizer = meta.get("quantizer") or {}
        depths = parent_depths(str(quantizer.get("stage_books", "shared")), len(levels))
        expected.update(
            {
                _array_name(i): [math.prod(levels[:d]) * k, out_dim]
                for i, (k, d) in enumerate(zip(levels, depths, strict=True))
            }
        )
        if set(arrays) != set(expected):
            raise ArtifactError(
                f"codebook {root}: arrays {sorted(arrays)} do not match levels {levels} "
                f"(expected {sorted(expected)})"
            )
        for name, shape in expected.items():
            if list(arrays[name].shape) != shape:
                raise ArtifactError(
                    f"codebook {root}: array {name} has shape {list(arrays[name].shape)}, "
                    f"metadata implies {shape}"
                )
        try:
            lst = LST.from_arrays(
                {k: arrays[f"lst.{k}"] for k in _LST_KEYS if f"lst.{k}" in arrays},
                renormalize=bool(lst_params.get("renormalize", True)),
                eps=float(lst_params.get("eps", 1e-6)),
                power=float(lst_params.get("whiten_power", 0.5)),
                kind=str(lst_params.get("kind", "pca_whiten")),
            )
            rvq = RVQ(tuple(arrays[_array_name(i)] for i in range(len(levels))), depths)
            book = cls(
                lst=lst,
                rvq=rvq,
                model=meta["model"],
                fit=meta.get("fit") or {},
                quantizer=meta.get("quantizer"),
            )
        except (ArtifactError, InvalidConfigError, TypeError, ValueError) as exc:
            raise ArtifactError(f"codebook {root} is inconsistent: {exc}") from exc
        if book.lst.params() != lst_params:
            raise ArtifactError(
                f"codebook {root}: LST parameters {lst_params} do not match its arrays"
            )
        if book.version != meta["codebook_version"]:
            raise ArtifactError(
                f"codebook {root}: content hashes to {book.version} but metadata says "
                f"{meta['codebook_version']} (artifact modified or corrupt)"
            )
        log.info("loaded codebook %s from %s", book.version, root)
        return book


def _read_metadata(root: Path) -> dict[str, Any]:
    """Parse and shape-check ``metadata.json``."""
    meta_path = root / METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"codebook {root}: {METADATA_FILE} is missing") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"codebook {root}: {METADATA_FILE} is unreadable: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"codebook {root}: {METADATA_FILE} must hold a JSON object")
    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        raise ArtifactError(
            f"codebook {root}: format_version {fv!r} is not supported (expected {FORMAT_VERSION})"
        )
    problems = []
    if not isinstance(meta.get("codebook_version"), str):
        problems.append("codebook_version")
    if not isinstance(meta.get("model"), dict):
        problems.append("model")
    if not isinstance(meta.get("dim"), int) or meta["dim"] < 1:
        problems.append("dim")
    levels = meta.get("levels")
    if (
        not isinstance(levels, list)
        or not levels
        or not all(isinstance(k, int) and k >= 1 for k in levels)
    ):
        problems.append("levels")
    lst = meta.get("lst")
    if not isinstance(lst, dict) or not isinstance(lst.get("out_dim"), int):
        problems.append("lst")
    if problems:
        raise ArtifactError(
            f"codebook {root}: {METADATA_FILE} has missing or invalid {', '.join(problems)}"
        )
    if isinstance(meta["model"].get("dim"), int) and meta["model"]["dim"] != meta["dim"]:
        raise ArtifactError(
            f"codebook {root}: model dim {meta['model']['dim']} disagrees with dim {meta['dim']}"
        )
    return meta


def _read_arrays(root: Path) -> dict[str, np.ndarray]:
    """Load ``arrays.safetensors``; any read failure becomes :class:`ArtifactError`."""
    arrays_path = root / ARRAYS_FILE
    if not arrays_path.is_file():
        raise ArtifactError(f"codebook {root}: {ARRAYS_FILE} is missing")
    try:
        arrays = load_file(str(arrays_path))
    except Exception as exc:  # safetensors raises several unrelated types on corrupt input
        raise ArtifactError(f"codebook {root}: {ARRAYS_FILE} is corrupt: {exc}") from exc
    bad = [k for k, v in arrays.items() if v.dtype != np.float32]
    if bad:
        raise ArtifactError(f"codebook {root}: arrays {bad} are not float32")
    return arrays


def fit_codebook(
    embeddings: np.ndarray,
    levels: Sequence[int],
    *,
    seed: int,
    lst_dim: int | None,
    model: dict[str, Any],
    n_iter: int = 20,
    options: QuantizerOptions | None = None,
    parent: Codebook | None = None,
    parent_path: str | None = None,
) -> Codebook:
    """Fit the LST on ``embeddings``, then the RVQ on the transformed sample (driver, numpy).

    ``parent`` (an earlier codebook of the same model and levels, ``fit --init-from``)
    warm-starts every stage and keeps its code numbers (:mod:`.warm_start`); the artifact
    records it in ``fit["parent"]``.

    ``model`` describes the embedding model (``name``, ``revision``, ``dim``,
    ``max_seq_length``, ``batch_size``, ``normalize``); its ``dim`` must match the sample.
    ``options`` (default :class:`QuantizerOptions`) chooses the LST variant, the learned
    rotation, codebook refinement, balanced training and spherical k-means; they are
    recorded in the artifact. ``fit["metrics"]`` holds the RVQ fit report plus an ``lst``
    entry (and ``opq`` with the per-round error when a rotation is learned).
    """
    t0 = time.perf_counter()
    opts = options or QuantizerOptions()
    arr, model, sizes = _checked_sample(embeddings, levels, model)
    lst, explained = _fit_lst(arr, lst_dim, opts)
    lst_seconds = time.perf_counter() - t0
    rvq_kw: dict[str, Any] = {
        "stage_books": opts.books,
        "parent_min_rows": opts.parent_min_rows,
        "seed": seed,
        "spherical": opts.kmeans == "spherical",
        "balance": opts.balance,
        "refine_iters": opts.refine_iters,
    }
    z = lst.transform(arr)
    start = _warm_start(parent, arr, z, model, sizes, opts, seed)
    opq_history: list[float] | None = None
    if opts.rotation == "opq":
        rotation, init, opq_history = _learn_rotation(z, sizes, opts.opq_iters, n_iter, rvq_kw)
        lst = lst.with_rotation(rotation)
        z = lst.transform(arr)
        rvq, report = fit_rvq(z, sizes, n_iter=n_iter, init=init, **rvq_kw)
    else:
        rvq, report = fit_rvq(z, sizes, n_iter=n_iter, init=start, **rvq_kw)
    kept: list[float] = []
    if start is not None:
        rvq, kept = renumbered(rvq, start)
    metrics = dict(report)
    metrics["lst"] = {
        **lst.params(),
        "explained_variance": min(explained, 1.0),
        "fit_seconds": lst_seconds,
    }
    if opq_history is not None:
        metrics["opq"] = {"relative_mse": opq_history}
    fit = {
        "sample_size": int(arr.shape[0]),
        "seed": int(seed),
        "n_iter": int(n_iter),
        "lst_dim": lst_dim,
        "metrics": metrics,
        "fit_seconds": time.perf_counter() - t0,
    }
    if parent is not None:
        fit["parent"] = warm_start_record(parent, kept, parent_path)
    book = Codebook(lst=lst, rvq=rvq, model=model, fit=fit, quantizer=opts.params())
    log.info("fitted codebook %s on %d rows", book.version, arr.shape[0])
    return book


def _checked_sample(
    embeddings: np.ndarray, levels: Sequence[int], model: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any], tuple[int, ...]]:
    """The float32 sample, ``model`` with the sample's ``dim`` and the checked level sizes."""
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise InvalidConfigError("model must be a mapping with a string 'name'")
    arr = as_float32_matrix(embeddings, "embedding sample")
    dim = model.get("dim", arr.shape[1])
    if dim != arr.shape[1]:
        raise InvalidConfigError(
            f"model {model['name']!r} declares dim {dim} but the embeddings have dim {arr.shape[1]}"
        )
    sizes = check_level_sizes(levels)
    if arr.shape[0] < max(sizes):
        raise InvalidConfigError(
            f"level sizes {','.join(map(str, sizes))} need at least {max(sizes)} "
            f"training documents, got {arr.shape[0]}"
        )
    return arr, {**model, "dim": int(arr.shape[1])}, sizes


def _fit_lst(arr: np.ndarray, lst_dim: int | None, opts: QuantizerOptions) -> tuple[LST, float]:
    """The LST of ``opts`` fitted on ``arr`` and the fraction of variance it keeps."""
    if opts.lst == "none":
        lst = LST.identity(arr.shape[1])
    else:
        lst = LST.fit(arr, out_dim=lst_dim, power=opts.whiten_power)
    total_var = float(arr.astype(np.float64).var(axis=0, ddof=1).sum())
    kept_var = float(
        ((arr - lst.mean) @ lst.components).astype(np.float64).var(axis=0, ddof=1).sum()
    )
    return lst, kept_var / total_var if total_var > 0 else 1.0


def _warm_start(
    parent: Codebook | None,
    x: np.ndarray,
    z: np.ndarray,
    model: dict[str, Any],
    sizes: tuple[int, ...],
    opts: QuantizerOptions,
    seed: int,
) -> tuple[np.ndarray, ...] | None:
    """The parent's centroids carried into the new LST space (None without a parent)."""
    if parent is None:
        return None
    check_parent(parent, model, sizes)
    if opts.rotation == "opq":
        raise InvalidConfigError(
            "keeps code numbers through the LST; it does not combine with "
            "{fit.rotation} opq (the rotation is learned with fresh codebooks)",
            key="fit.init_from",
        )
    depths = parent_depths(opts.books, len(sizes))
    return starting_codebooks(parent, x, z, np.random.default_rng(seed), depths)


def _learn_rotation(
    z: np.ndarray,
    sizes: tuple[int, ...],
    rounds: int,
    n_iter: int,
    rvq_kw: dict[str, Any],
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None, list[float]]:
    """OPQ-style alternation
    : fit codebooks on ``z R``, then ``R`` by orthogonal Procrustes.

        ``R = U V^T`` from the SVD of ``z^T Q`` (``Q`` = decoded codes) minimises
        ``||z R - Q||``.
        Returns the rotation, the last codebooks (in the rotated space) and the full-depth
        relative MSE after each round. The codebooks stay fixed across a rotation update (they
        are the target of the Procrustes step) and warm-start the next round.
    """
    r = z.shape[1]
    rotation = np.eye(r, dtype=np.float64)
    z64 = z.astype(np.float64)
    total = float(np.square(z64 - z64.mean(axis=0)).sum()) or 1.0
    init: tuple[np.ndarray, ...] | None = None
    history: list[float] = []
    for _ in range(max(rounds, 1)):
        zr = (z64 @ rotation).astype(np.float32)
        rvq, _ = fit_rvq(zr, sizes, n_iter=max(2, n_iter // 2), init=init, **rvq_kw)
        codes, qerr = rvq.encode(zr)
        history.append(float(qerr[:, -1].sum(dtype=np.float64) / total))
        decoded = rvq.decode(codes).astype(np.float64)
        u, _, vt = np.linalg.svd(z64.T @ decoded)
        rotation = u @ vt  # z R now lies as close as possible to the decoded vectors
        init = rvq.codebooks
    return rotation.astype(np.float32), init, history
