"""Counting what a model serves into its reference profile's bins (kninfer.observability.drift).

Per answered request, every profiled feature's values are counted into the profile's bins
(`Feature.assign`: numpy searchsorted and bincount, no loop over rows) and exported as raw
counts, so they add up across `--workers` processes and across replicas:

- `kninfer_drift_bin_total{model,version,feature,bin}`: values per bin;
- `kninfer_drift_out_of_range_total{model,version,feature}`: numbers below the training minimum
  or above its maximum (they are also counted in the first or last bin);
- `kninfer_drift_unknown_category_total{model,version,feature}`: categories training never saw
  (also counted in the `__other__` bin);
- `kninfer_drift_missing_total{model,version,feature}`: missing values (NaN, None), in no bin;
- `kninfer_drift_reference_ratio{model,version,feature,bin}`: the profile's proportions, so PSI
  over any time range and any set of replicas can be computed in PromQL from the counters;
- `kninfer_drift_psi{model,version,feature}`: PSI of this process's recent window against the
  reference, exported once the window holds its minimum of rows.

PSI as Evidently computes it (evidently.calculations.stattests.psi and utils.get_binned_data):
sum over bins of (p_live - p_ref) * ln(p_live / p_ref), missing values left out, and an empty
bin's proportion (live or reference) replaced by EPSILON = 0.0001 before the division and the
log. (Evidently uses a smaller stand-in, the smallest proportion / 1e6, when that smallest
proportion is itself at most 0.0001; kninfer always uses 0.0001. NannyML has no PSI; its
univariate methods are Jensen-Shannon, Hellinger, Wasserstein, KS, chi2, L-infinity.)

The window is the last `rows` rows (1,000 by default) as `blocks` blocks of bin counts (10 of
100 rows): counts go into the current block; when it is full it replaces the oldest one in a
ring, the window's sums are updated by the difference, and PSI is recomputed, so the window
slides by one block at a time and no row is stored. Between two recomputations the gauge keeps
its value. Blocks are NannyML's size-based chunks (`chunk_size`) kept in a ring; the window over
the last N rows is alibi-detect's online detectors' `window_size`; Evidently compares whatever
current dataset it is given.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kninfer.observability.drift.profile import (
    EPSILON,
    PROFILE_FILE,
    Profile,
    ProfileError,
    column_of,
    read_profile,
)
from kninfer.observability.prometheus import before_scrape

logger = logging.getLogger("kninfer")

LABELS = ("model", "version", "feature")
# When pending requests are counted (DriftMonitor.observe): at this many rows, after this many
# seconds, or on a scrape of /metrics, whichever comes first.
FLUSH_ROWS = 4096
FLUSH_SECONDS = 0.25


def rows_of(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> int:
    """A request's rows: the first dimension of its first tensor."""
    for arrays in (inputs, outputs):
        for array in arrays.values():
            return len(array) if getattr(array, "ndim", 0) else 1
    return 0


@dataclass(frozen=True)
class DriftMetrics:
    bins: Any
    out_of_range: Any
    unknown: Any
    missing: Any
    reference: Any
    psi: Any


def drift_metrics() -> DriftMetrics:
    """The drift collectors, registered on first use (kninfer.observability.prometheus's
    made_on_first_use), so a server without a profile exports none of them."""
    from prometheus_client import Counter, Gauge

    from kninfer.observability.prometheus import made_on_first_use

    return DriftMetrics(
        bins=made_on_first_use(
            "kninfer_drift_bin",
            lambda: Counter(
                "kninfer_drift_bin",
                "Values served per reference-profile bin (drift_profile.json)",
                [*LABELS, "bin"],
            ),
        ),
        out_of_range=made_on_first_use(
            "kninfer_drift_out_of_range",
            lambda: Counter(
                "kninfer_drift_out_of_range",
                "Numeric values served below the training minimum or above its maximum",
                LABELS,
            ),
        ),
        unknown=made_on_first_use(
            "kninfer_drift_unknown_category",
            lambda: Counter(
                "kninfer_drift_unknown_category",
                "Categorical values served that the training data never held",
                LABELS,
            ),
        ),
        missing=made_on_first_use(
            "kninfer_drift_missing",
            lambda: Counter("kninfer_drift_missing", "Missing values served (NaN, None)", LABELS),
        ),
        reference=made_on_first_use(
            "kninfer_drift_reference_ratio",
            lambda: Gauge(
                "kninfer_drift_reference_ratio",
                "Share of the reference data's values in each bin (drift_profile.json)",
                [*LABELS, "bin"],
                multiprocess_mode="max",
            ),
        ),
        # Each worker process has its own window: the highest PSI among live workers.
        psi=made_on_first_use(
            "kninfer_drift_psi",
            lambda: Gauge(
                "kninfer_drift_psi",
                "Population stability index of the recent window against the reference profile",
                LABELS,
                multiprocess_mode="livemax",
            ),
        ),
    )


class DriftMonitor:
    """One model's live counts against its profile. `observe` is called with each answered
    request's validated inputs and computed outputs (kninfer.predictors.base)."""

    def __init__(self, profile: Profile, model: str, version: str) -> None:
        self.profile = profile
        self.model = model
        self.version = version
        features = (*profile.features, *profile.outputs)
        self._features = features
        index = {f.name: i for i, f in enumerate(features)}
        # Where each feature's values come from: request tensor -> (feature, column).
        self._inputs: dict[str, list[tuple[int, int | None]]] = {}
        for i, feature in enumerate(profile.features):
            self._inputs.setdefault(feature.tensor, []).append((i, feature.column))
        if profile.matrix is not None and profile.matrix[0] not in self._inputs:
            tensor, names = profile.matrix
            self._inputs[tensor] = [(index[name], j) for j, name in enumerate(names)]
        self._outputs: dict[str, list[tuple[int, int | None]]] = {}
        for i, feature in enumerate(profile.outputs, start=len(profile.features)):
            self._outputs.setdefault(feature.tensor, []).append((i, feature.column))

        # The window's counts, all features side by side: each feature's bins, then one slot
        # for its missing values (counted, never part of PSI).
        self._widths = [f.bins + 1 for f in features]
        self._offsets = [int(o) for o in np.cumsum([0, *self._widths[:-1]])]
        total = sum(self._widths)
        window = profile.window
        self._block_rows = window.block_rows
        self._threshold = window.threshold
        self._ring = np.zeros((window.block_count, total), dtype=np.int64)
        self._block = np.zeros(total, dtype=np.int64)
        self._window = np.zeros(total, dtype=np.int64)
        self._fill = 0
        self._slot = 0
        self._full_blocks = 0
        self._in_bins = np.ones(total, dtype=bool)
        self._in_bins[[o + w - 1 for o, w in zip(self._offsets, self._widths, strict=True)]] = False
        self._bin_starts = np.cumsum([0, *[f.bins for f in features[:-1]]])
        self._bin_sizes = np.asarray([f.bins for f in features])
        reference = np.concatenate([f.proportions for f in features])
        self._reference = np.where(reference == 0, EPSILON, reference)
        self.last_psi: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopped = False

        metrics = drift_metrics()
        self._metrics = metrics
        # One counter child per slot of the window's layout: the bins, then the missing.
        self._children: list[Any] = []
        self._outside: list[Any] = []
        for feature in features:
            labels = (model, version, feature.name)
            self._children.extend(metrics.bins.labels(*labels, b) for b in feature.bin_labels())
            self._children.append(metrics.missing.labels(*labels))
            if feature.kind == "numeric":
                self._outside.append(metrics.out_of_range.labels(*labels))
            else:
                self._outside.append(
                    metrics.unknown.labels(*labels) if feature.unknown_counted else None
                )
            for label, share in zip(feature.bin_labels(), feature.proportions, strict=True):
                metrics.reference.labels(*labels, label).set(float(share))
        self._psi: dict[int, Any] = {}
        self._every_tensor = (*((0, t) for t in self._inputs), *((1, t) for t in self._outputs))
        self._pending: list[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]] = []
        self._pending_rows = 0
        before_scrape(self.flush)

    # ---- counting ------------------------------------------------------------------------

    def observe(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> bool:
        """Take one answered request's arrays for counting; False once counting has stopped
        (the caller then drops the monitor). Never raises.

        Counting is deferred and batched: the arrays wait, by reference, until FLUSH_ROWS rows
        are pending, FLUSH_SECONDS have passed (a timer on the running event loop) or
        `/metrics` is scraped, and every pending request is then counted in one pass per
        feature. Per request that leaves an append on the hot path; counted one by one, a
        request cost a searchsorted and a bincount per feature and a counter increment per bin
        touched, which bench/drift.py measured at 11 % of the iris model's throughput at batch
        1 and 25 % at batch 64. Outside an event loop a request is counted at once."""
        if self._stopped:
            return False
        with self._lock:
            self._pending.append((inputs, outputs))
            self._pending_rows += rows_of(inputs, outputs)
            due = self._pending_rows >= FLUSH_ROWS
            first = len(self._pending) == 1
        if due:
            return self.flush()
        if first:
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no running loop in this thread: count now
                return self.flush()
        return True

    def flush(self) -> bool:
        """Count every pending request (see `observe`); False once counting has stopped. On
        any error it logs once, stops counting for good and drops what was pending."""
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            if self._stopped:
                return False
            try:
                self._count(pending)
            except Exception as exc:
                self._stopped = True
                logger.error(
                    "model '%s': drift monitoring stopped: a request could not be "
                    "counted into the bins of %s (%s: %s); requests are answered as "
                    "before, and the drift metrics stay as they were",
                    self.model,
                    PROFILE_FILE,
                    type(exc).__name__,
                    exc,
                )
                return False
        return True

    def _count(
        self, pending: list[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]
    ) -> None:
        """Consecutive requests that carry the same profiled tensors (a V2 request may ask for
        some outputs only) are counted together: each tensor concatenated over the requests
        (as rows of a 2-D array, so [N] and [N, 1] forms of one input mix), then each feature
        binned once. Rows keep their arrival order, so the window holds what counting each
        request at once would have put there."""
        run_key: tuple[tuple[int, str], ...] = ()
        run: list[list[np.ndarray]] = []
        every = self._every_tensor
        input_names, output_names = self._inputs.keys(), self._outputs.keys()
        for request in pending:
            if request[0].keys() >= input_names and request[1].keys() >= output_names:
                key = every  # the usual request: all of them
            else:
                key = tuple((side, tensor) for side, tensor in every if tensor in request[side])
            if key != run_key:
                self._count_run(run_key, run)
                run_key, run = key, [[] for _ in key]
            for parts, (side, tensor) in zip(run, key, strict=True):
                array = request[side][tensor]
                parts.append(array if array.ndim == 2 else array.reshape(len(array), -1))
        self._count_run(run_key, run)

    def _count_run(self, key: tuple[tuple[int, str], ...], run: list[list[np.ndarray]]) -> None:
        if not key:
            return
        merged: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
        for (side, tensor), parts in zip(key, run, strict=True):
            merged[side][tensor] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._count_rows(self._found(*merged))

    def _found(
        self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> list[tuple[int, np.ndarray]]:
        """(feature, its 1-D values) for every profiled feature the request carries."""
        found: list[tuple[int, np.ndarray]] = []
        for source, where in ((inputs, self._inputs), (outputs, self._outputs)):
            for tensor, entries in where.items():
                array = source.get(tensor)
                if array is not None:
                    found.extend((i, column_of(array, column)) for i, column in entries)
        return found

    def _count_rows(self, found: list[tuple[int, np.ndarray]]) -> None:
        """Rows of features side by side, in arrival order: each row lands in the block that
        is current when its turn comes (the current one, then the next ones as they fill), so
        one bincount over (block, slot) gives every block's counts however many rows came."""
        rows = len(found[0][1])
        for i, values in found:
            if len(values) != rows:
                raise ValueError(
                    f"'{self._features[i].name}' has {len(values)} values for {rows} rows"
                )
        if not rows:
            return
        width = len(self._block)
        blocks = (self._fill + rows - 1) // self._block_rows + 1
        row_block = (np.arange(self._fill, self._fill + rows) // self._block_rows) * width
        slots = []
        outside = [0] * len(self._features)
        for i, values in found:
            index, outside[i] = self._features[i].assign(values)
            slots.append(row_block + (index + self._offsets[i]))
        per_block = np.bincount(np.concatenate(slots), minlength=blocks * width).reshape(
            blocks, width
        )
        closed = False
        first = 0
        ring = len(self._ring)
        if blocks - 1 > ring:
            # More blocks close than the ring holds: the earliest would only be overwritten by
            # the later ones, so they are skipped (their rows are still in the counters).
            first = blocks - 1 - ring
            rows -= self._block_rows - self._fill + (first - 1) * self._block_rows
            self._ring[:] = 0
            self._window[:] = 0
            self._block[:] = 0
            self._fill = 0
            self._slot = (self._slot + first) % ring
            self._full_blocks = min(self._full_blocks + first, ring)
        for b in range(first, blocks):
            self._block += per_block[b]
            take = min(self._block_rows - self._fill, rows)
            self._fill += take
            rows -= take
            if self._fill == self._block_rows:
                self._close_block()
                closed = True
        # PSI of the window as it now stands, once however many blocks these rows closed.
        if closed and self._full_blocks * self._block_rows >= self._threshold:
            self._publish()
        counts = per_block.sum(axis=0)
        children = self._children
        for j in np.flatnonzero(counts).tolist():
            children[j].inc(int(counts[j]))
        for i, beyond in enumerate(outside):
            if beyond and self._outside[i] is not None:
                self._outside[i].inc(beyond)

    def _close_block(self) -> None:
        slot = self._slot
        self._window += self._block - self._ring[slot]
        self._ring[slot] = self._block
        self._block[:] = 0
        self._fill = 0
        self._slot = (slot + 1) % len(self._ring)
        self._full_blocks = min(self._full_blocks + 1, len(self._ring))

    def _publish(self) -> None:
        """PSI of the window per feature, vectorised over all bins of all features."""
        counts = self._window[self._in_bins].astype(np.float64)
        totals = np.add.reduceat(counts, self._bin_starts)
        live = counts / np.repeat(np.maximum(totals, 1.0), self._bin_sizes)
        live[live == 0] = EPSILON
        terms = (live - self._reference) * np.log(live / self._reference)
        psi = np.add.reduceat(terms, self._bin_starts)
        for i in np.flatnonzero(totals > 0).tolist():
            gauge = self._psi.get(i)
            if gauge is None:
                gauge = self._psi[i] = self._metrics.psi.labels(
                    self.model, self.version, self._features[i].name
                )
            value = float(psi[i])
            gauge.set(value)
            self.last_psi[self._features[i].name] = value

    @property
    def window_rows(self) -> int:
        """Rows in the window PSI is computed over (full blocks only)."""
        return self._full_blocks * self._block_rows


def load_monitor(
    model_dir: Path,
    model: str,
    version: str,
    inputs: Collection[str] = (),
    outputs: Collection[str] = (),
) -> DriftMonitor | None:
    """The monitor for the profile beside the model (MODEL_DIR/drift_profile.json), or None
    when there is none. A profile that cannot be read or used is logged and the model served
    without drift monitoring: the profile is an aid to operators, never a reason not to
    serve. `inputs` and `outputs` (the model's tensor names, when known) only word a warning
    for a profile that names a tensor the model does not have (a profile of another model)."""
    path = model_dir / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        profile = read_profile(path)
        monitor = DriftMonitor(profile, model, version)
    except (OSError, ProfileError) as exc:
        logger.error(
            "model '%s': %s not used (%s); serving without drift monitoring", model, path, exc
        )
        return None
    stray = sorted(
        {f.tensor for f in profile.features if inputs and f.tensor not in inputs}
        | {f.tensor for f in profile.outputs if outputs and f.tensor not in outputs}
    )
    if stray:
        logger.warning(
            "model '%s': %s names %s, which the model does not declare (a "
            "profile of another model?); only requests carrying them are counted",
            model,
            PROFILE_FILE,
            ", ".join(stray),
        )
    window = profile.window
    logger.info(
        "model '%s': drift monitoring on (%s: %d features, %d output(s); PSI over the "
        "last %d rows, from %d rows)",
        model,
        PROFILE_FILE,
        len(profile.features),
        len(profile.outputs),
        window.size,
        window.threshold,
    )
    return monitor
