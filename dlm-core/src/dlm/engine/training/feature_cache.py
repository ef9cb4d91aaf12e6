"""Frozen vision features, computed once per image and reused.

While LoRA adapts only the language model, the vision tower and projector
are constants: an image's features are the same every epoch and every
retrain. A run keeps them in memory (:class:`VisionFeatures`), and the
document's store keeps them on disk across runs (:class:`FeatureStore`,
``<store>/cache/features/<settings digest>/<blob sha>.safetensors``).

What may never happen is a hit that serves features computed under other
settings. The settings digest covers everything that changes the features:
the base (key, revision, family), the image geometry, how image bytes
become pixels (``store.images.PREPARATION_VERSION``), the processor's
saved image settings, the dtype of the vision weights and the run's
precision, the device type, and the torch and transformers versions. Any
change lands in another directory: a miss. Beyond the key, the first
micro-batch of every run is computed live and compared with what the cache
holds for its images; a disagreement (weights changed under the same
revision, a corrupted file) drops the cache for those settings.

Reuse is refused when a trainable parameter or active dropout sits in the
vision tower or projector (LoRA on the vision tower, a fully trained
projector): the features would no longer be constants.

The disk cache is bounded (``DLM_FEATURE_CACHE_MB``, default 4096 MiB per
store; 0 turns the disk cache off), evicting the least recently used
entries; ``dlm cache`` shows it and ``dlm cache clear`` empties it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dlm.store.atomic import TEMP_PREFIX, atomic_write_text, temp_name

if TYPE_CHECKING:
    from dlm.family import Family
    from dlm.records import BaseSpec
    from dlm.store.paths import StorePaths

ENV_MAX_MB = "DLM_FEATURE_CACHE_MB"
DEFAULT_MAX_MB = 4096
#: Features a run keeps in RAM; beyond this they are read back from disk.
MEMORY_BYTES = 2 * 2**30
SETTINGS_FILE = "settings.json"
SUFFIX = ".safetensors"
# Relative error (Frobenius) allowed between cached and live features: the
# same image in another batch differs in the last bits, stale features by O(1).
_TOLERANCE = {"float32": 1e-4, "float64": 1e-8}
_HALF_TOLERANCE = 2e-2


def features_dir(paths: StorePaths) -> Path:
    return paths.root / "cache" / "features"


def max_bytes_from_env() -> int:
    """The disk bound in bytes, from ``DLM_FEATURE_CACHE_MB`` (default 4096 MiB)."""
    raw = os.environ.get(ENV_MAX_MB, "").strip()
    if not raw:
        return DEFAULT_MAX_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        from dlm.errors import UsageError

        raise UsageError(
            f"{ENV_MAX_MB}={raw!r} is not a number of MiB",
            hint=f"set {ENV_MAX_MB} to e.g. 4096, or 0 to keep no features on disk",
        ) from None
    return max(0, int(mb * 2**20))


def feature_settings(
    base: BaseSpec,
    image_settings: dict[str, Any],
    *,
    vision_dtype: str,
    precision: str,
    device_type: str,
) -> dict[str, Any]:
    """Everything that changes an image's features, as plain JSON values."""
    from importlib import metadata

    from dlm.store.images import PREPARATION_VERSION

    versions: dict[str, str | None] = {}
    for dist in ("torch", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "base": base.key,
        "revision": base.revision,
        "family": base.family,
        "geometry": attrs.asdict(base.image),
        # how blob bytes become pixels (EXIF orientation, depth, alpha): the
        # blob sha names the bytes, not the pixels
        "image_preparation": PREPARATION_VERSION,
        "image_settings": image_settings,
        "vision_dtype": vision_dtype,
        "precision": precision,
        "device": device_type,
        "versions": versions,
    }


def settings_digest(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@attrs.frozen
class CacheUsage:
    """What one store's feature cache holds."""

    entries: int
    bytes: int
    settings: tuple[dict[str, Any], ...]  # one per digest: {digest, entries, bytes, base, ...}


class FeatureStore:
    """One store's on-disk features: a bounded, least-recently-used file cache."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
        self._total: int | None = None

    @classmethod
    def for_paths(cls, paths: StorePaths, max_bytes: int | None = None) -> FeatureStore:
        return cls(features_dir(paths), max_bytes_from_env() if max_bytes is None else max_bytes)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _file(self, digest: str, key: str) -> Path:
        if not key.isalnum() or not digest.isalnum():
            raise ValueError(f"feature cache keys are hex digests, got {digest!r}/{key!r}")
        return self.root / digest / f"{key}{SUFFIX}"

    def load(self, digest: str, key: str) -> Any | None:
        if not self.enabled:
            return None
        path = self._file(digest, key)
        try:
            from safetensors.torch import load_file

            tensor = load_file(str(path))["features"]
        except FileNotFoundError:
            return None
        except Exception:  # a torn or foreign file is a miss, and goes
            self.drop(digest, key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return tensor

    def save(self, digest: str, key: str, tensor: Any, settings: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from safetensors.torch import save_file

        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > self.max_bytes:
            return
        folder = self.root / digest
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / SETTINGS_FILE
        if not marker.exists():
            atomic_write_text(marker, json.dumps(settings, indent=2, sort_keys=True, default=str))
        target = self._file(digest, key)
        previous = target.stat().st_size if target.exists() else 0
        tmp = folder / temp_name(target.name)
        save_file({"features": tensor.detach().contiguous().cpu()}, str(tmp))
        os.replace(tmp, target)  # readers see the old file or the new one, never half
        self._total = self.total_bytes() - previous + target.stat().st_size
        if self._total > self.max_bytes:
            self._evict(keep=target)

    def drop(self, digest: str, key: str) -> None:
        with contextlib.suppress(OSError):
            self._file(digest, key).unlink()
        self._total = None

    def drop_settings(self, digest: str) -> None:
        import shutil

        shutil.rmtree(self.root / digest, ignore_errors=True)
        self._total = None

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        out: list[tuple[Path, os.stat_result]] = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.suffix == SUFFIX and not path.name.startswith(TEMP_PREFIX):
                    with contextlib.suppress(OSError):
                        out.append((path, path.stat()))
        return out

    def total_bytes(self) -> int:
        if self._total is None:
            self._total = sum(st.st_size for _, st in self._entries())
        return self._total

    def _evict(self, keep: Path) -> None:
        entries = sorted(self._entries(), key=lambda e: (e[1].st_mtime_ns, e[0].name))
        total = sum(st.st_size for _, st in entries)
        for path, st in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= st.st_size
        self._total = total

    def usage(self) -> CacheUsage:
        by_digest: dict[str, dict[str, Any]] = {}
        for path, st in self._entries():
            row = by_digest.setdefault(path.parent.name, {"entries": 0, "bytes": 0})
            row["entries"] += 1
            row["bytes"] += st.st_size
        settings = []
        for digest, row in sorted(by_digest.items()):
            described: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                described = json.loads((self.root / digest / SETTINGS_FILE).read_text())
            settings.append(
                {
                    "digest": digest,
                    "entries": row["entries"],
                    "bytes": row["bytes"],
                    "base": described.get("base"),
                    "revision": described.get("revision"),
                    "precision": described.get("precision"),
                    "device": described.get("device"),
                }
            )
        return CacheUsage(
            entries=sum(s["entries"] for s in settings),
            bytes=sum(s["bytes"] for s in settings),
            settings=tuple(settings),
        )

    def clear(self) -> CacheUsage:
        """Delete every entry; returns what was there."""
        import shutil

        before = self.usage()
        shutil.rmtree(self.root, ignore_errors=True)
        self._total = 0
        return before


# ----------------------------------------------------------------- the model side


def unwrap(model: Any) -> Any:
    """The transformers model under DDP / compile / PEFT wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and not hasattr(model, "get_image_features"):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            break
    return model


def encoder_host(model: Any) -> Any | None:
    """The module whose forward calls ``get_image_features`` (``model.model`` in transformers 5)."""
    top = unwrap(model)
    for _name, module in top.named_modules():
        host = module is not top and hasattr(module, "language_model")
        if host and hasattr(module, "get_image_features"):
            return module
    return None


def _vision_modules(host: Any) -> list[tuple[str, Any]]:
    return [(n, m) for n, m in host.named_children() if n != "language_model"]


def _stochastic(config: Any) -> list[str]:
    found = []
    for name, value in vars(config).items() if config is not None else ():
        lowered = name.lower()
        stochastic = "dropout" in lowered or "drop_path" in lowered
        if stochastic and isinstance(value, float) and value > 0:
            found.append(f"{name}={value}")
    return found


def why_not_reusable(model: Any) -> str | None:
    """None when vision features are constants of this model; else the reason."""
    import torch.nn as nn

    host = encoder_host(model)
    if host is None:
        return "the model exposes no get_image_features"
    modules = _vision_modules(host)
    if not modules:
        return "no vision modules found beside the language model"
    for name, module in modules:
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        if trainable:
            return f"{name} has trainable parameters ({trainable[0]}…)"
        for sub_name, sub in module.named_modules():
            if isinstance(sub, nn.Dropout) and sub.p > 0 and sub.training:
                return f"{name}.{sub_name} applies dropout in training"
    config = getattr(unwrap(model), "config", None)
    vision_config = getattr(config, "vision_config", None)
    stochastic = _stochastic(vision_config)
    if stochastic and host.training:
        return f"the vision config is stochastic in training ({', '.join(stochastic)})"
    return None


def vision_dtype(model: Any) -> str:
    host = encoder_host(model)
    for _name, module in _vision_modules(host) if host is not None else ():
        for param in module.parameters():
            return str(param.dtype).removeprefix("torch.")
    return "unknown"


def _relative_error(cached: Any, live: Any) -> float:
    import torch

    a = cached.to(live.device, torch.float32)
    b = live.detach().to(torch.float32)
    if a.shape != b.shape:
        return float("inf")
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12))


@attrs.define
class FeatureStats:
    hits: int = 0  # images served from the cache
    computed: int = 0  # images whose features a forward computed
    verified: int = 0  # cached images checked against a live computation
    stale: int = 0  # of those, found different (cache dropped)
    loaded: int = 0  # images read from disk


class VisionFeatures:
    """One run's frozen vision features: RAM first, then the store's disk cache.

    Use :meth:`attach` around a forward: when every image of the batch is
    known, the batch goes in with ``mm_encoder_outputs`` instead of
    ``pixel_values`` and the vision tower does not run; otherwise the
    forward runs as usual and what its ``get_image_features`` returned is
    kept, per image, for the next time.
    """

    def __init__(
        self,
        family: Family,
        base: BaseSpec,
        settings: dict[str, Any],
        store: FeatureStore | None = None,
        memory_bytes: int = MEMORY_BYTES,
        image_token_id: int = -1,
    ):
        self.family = family
        self.image_token_id = image_token_id
        self.base = base
        self.settings = settings
        self.digest = settings_digest(settings)
        self.store = store if store is not None and store.enabled else None
        self.memory_bytes = memory_bytes
        self.stats = FeatureStats()
        self.disabled: str | None = None
        self._memory: dict[str, Any] = {}
        self._memory_used = 0
        self._as_tuple: bool | None = None  # the pooler_output form, seen live once per run
        self._tolerance = _TOLERANCE.get(settings.get("vision_dtype", ""), _HALF_TOLERANCE)

    @classmethod
    def for_run(
        cls,
        model: Any,
        family: Family,
        base: BaseSpec,
        image_settings: dict[str, Any],
        *,
        precision: str,
        device_type: str,
        paths: StorePaths | None,
    ) -> tuple[VisionFeatures | None, str | None]:
        """``(features, None)`` when reuse is safe for ``model``, else ``(None, reason)``."""
        reason = why_not_reusable(model)
        if reason is not None:
            return None, reason
        settings = feature_settings(
            base,
            image_settings,
            vision_dtype=vision_dtype(model),
            precision=precision,
            device_type=device_type,
        )
        store = FeatureStore.for_paths(paths) if paths is not None else None
        config = getattr(unwrap(model), "config", None)
        token = getattr(config, "image_token_id", None)
        if token is None:
            token = getattr(config, "image_token_index", None)
        image_token_id = int(token) if token is not None else -1
        return cls(family, base, settings, store, image_token_id=image_token_id), None

    # ------------------------------------------------------------- lookups

    def _lookup(self, key: str) -> Any | None:
        if key in self._memory:
            return self._memory[key]
        if self.store is None:
            return None
        tensor = self.store.load(self.digest, key)
        if tensor is not None:
            self.stats.loaded += 1
            self._remember(key, tensor)
        return tensor

    def _remember(self, key: str, tensor: Any) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if key in self._memory or self._memory_used + nbytes > self.memory_bytes:
            return
        self._memory[key] = tensor
        self._memory_used += nbytes

    def _keep(self, key: str, tensor: Any) -> None:
        cpu = tensor.detach().to("cpu", copy=True).contiguous()
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_used -= old.numel() * old.element_size()
        self._remember(key, cpu)
        if self.store is not None:
            self.store.save(self.digest, key, cpu, self.settings)

    # ------------------------------------------------------------- the forward

    @contextlib.contextmanager
    def attach(
        self, model: Any, batch: dict[str, Any], keys: list[str]
    ) -> Iterator[dict[str, Any]]:
        """Yield the inputs for ``model(**inputs)``; learn this batch's features if new."""
        if self.disabled is not None or not keys or "pixel_values" not in batch:
            yield batch
            return
        if self._as_tuple is not None:
            parts = [self._lookup(k) for k in keys]
            if all(p is not None for p in parts):
                yield self._cached_inputs(batch, parts)
                self.stats.hits += len(keys)
                return
        host = encoder_host(model)
        if host is None:
            self.disabled = "the model exposes no get_image_features"
            yield batch
            return
        captured: list[Any] = []
        original = host.get_image_features
        shadowed = "get_image_features" in vars(host)

        def capture(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            captured.append(out)
            return out

        host.get_image_features = capture
        try:
            yield batch
        finally:
            if shadowed:
                host.get_image_features = original
            else:
                del host.get_image_features
        if len(captured) == 1:
            self._learn(batch, keys, captured[0].pooler_output)

    def _cached_inputs(self, batch: dict[str, Any], parts: list[Any]) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        device = batch["input_ids"].device
        pooled = join_image_features(
            [p.to(device, non_blocking=True) for p in parts], bool(self._as_tuple)
        )
        inputs = {k: v for k, v in batch.items() if k != "pixel_values"}
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=pooled)}
        return inputs

    def _learn(self, batch: dict[str, Any], keys: list[str], pooled: Any) -> None:
        parts = split_image_features(pooled, batch["input_ids"], self.image_token_id, len(keys))
        if parts is None or len(parts) != len(keys):
            self.disabled = f"family {self.family.name} cannot split image features per image"
            return
        self._as_tuple = isinstance(pooled, tuple | list)
        self.stats.computed += len(keys)
        stale = False
        for key, part in zip(keys, parts, strict=True):
            cached = self._lookup(key)
            if cached is None:
                self._keep(key, part)
                continue
            self.stats.verified += 1
            if _relative_error(cached, part) > self._tolerance:
                stale = True
                self.stats.stale += 1
        if stale:
            # same key, other numbers: nothing under these settings can be trusted
            self._memory.clear()
            self._memory_used = 0
            if self.store is not None:
                self.store.drop_settings(self.digest)
            for key, part in zip(keys, parts, strict=True):
                self._keep(key, part)

    def note(self) -> str:
        s = self.stats
        where = "RAM + store cache" if self.store is not None else "RAM"
        text = (
            f"vision features: {s.computed} computed, {s.hits} reused ({s.loaded} from disk), "
            f"{where}"
        )
        if s.stale:
            text += f"; {s.stale} stale cached features replaced"
        if self.disabled:
            text += f"; reuse stopped: {self.disabled}"
        return text


__all__ = [
    "DEFAULT_MAX_MB",
    "ENV_MAX_MB",
    "CacheUsage",
    "FeatureStore",
    "VisionFeatures",
    "encoder_host",
    "feature_settings",
    "features_dir",
    "settings_digest",
    "why_not_reusable",
]


# ----------------------------------------------------------------- one tensor per image


def split_image_features(
    features: Any, input_ids: Any, image_token_id: int, n_images: int
) -> list[Any] | None:
    """One tensor per image from ``get_image_features(...).pooler_output``, or None.

    ``features`` is what the model's forward consumes: a tuple with one
    tensor per image (Qwen2-VL, Mistral 3), a tensor with one row per image
    (PaliGemma), or one row per tile (InternVL), whose rows are grouped by
    each image's run of ``image_token_id`` in ``input_ids``. None means
    "cannot split": features are then never reused for this model, which is
    always correct, only slower.
    """
    if isinstance(features, tuple | list):
        return list(features) if len(features) == n_images else None
    if not hasattr(features, "shape") or features.dim() < 2:
        return None
    rows = features.shape[0]
    if rows == n_images:
        return [features[i : i + 1] for i in range(n_images)]
    if features.dim() != 3:
        return None
    tokens_per_row = features.shape[1]
    runs = _token_runs(input_ids, image_token_id)
    if len(runs) != n_images or any(run % tokens_per_row for run in runs):
        return None
    sizes = [run // tokens_per_row for run in runs]
    if sum(sizes) != rows:
        return None
    return list(features.split(sizes, dim=0))


def join_image_features(parts: list[Any], as_tuple: bool) -> Any:
    """The inverse of :func:`split_image_features`: what ``mm_encoder_outputs`` carries."""
    if as_tuple:
        return tuple(parts)
    import torch

    return torch.cat(parts, dim=0)


def _token_runs(input_ids: Any, token_id: int) -> list[int]:
    """Lengths of the maximal runs of ``token_id``, row by row (one run per image)."""
    runs: list[int] = []
    for row in input_ids.tolist():
        length = 0
        for tid in row:
            if tid == token_id:
                length += 1
            elif length:
                runs.append(length)
                length = 0
        if length:
            runs.append(length)
    return runs
