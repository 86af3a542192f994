"""What the Models view says about a registry, in plain Python: one row per model and one per
model folder that failed (its problems are its check, in the words `inferdeck models check`
uses), and the details of one row as HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Literal

from engine.models.manifest import FieldSpec, Manifest
from engine.models.registry import ModelRegistry, is_builtin

Source = Literal["built-in", "user"]
NONE = "—"


@dataclass(frozen=True)
class ModelRow:
    """One model (or failed model folder) as the Models table shows it."""

    name: str
    folder: Path
    source: Source
    check: str  # "ok", "loading…", or what is wrong (without the folder)
    ok: bool
    manifest: Manifest | None
    problems: tuple[str, ...] = ()  # what is wrong with a folder that failed, a line each

    @property
    def task(self) -> str:
        return self.manifest.task if self.manifest else NONE

    @property
    def version(self) -> str:
        return self.manifest.version if self.manifest else NONE

    @property
    def inputs(self) -> str:
        return ", ".join(s.name for s in self.manifest.inputs) if self.manifest else NONE

    @property
    def outputs(self) -> str:
        """A classifier's labels, a regression's outputs with their units."""
        if self.manifest is None:
            return NONE
        if self.manifest.is_classifier:
            return ", ".join(self.manifest.labels)
        return ", ".join(
            f"{o.name} ({o.unit})" if o.unit else o.name for o in self.manifest.outputs
        )

    @property
    def score(self) -> str:
        return score_text(self.manifest.metrics) if self.manifest else ""

    @property
    def removable(self) -> bool:
        """A user's model, or a user's folder that failed, can be removed; a built-in stays."""
        return self.source == "user"


def source_of(folder: Path) -> Source:
    return "built-in" if is_builtin(folder) else "user"


def score_text(metrics: dict[str, float]) -> str:
    """The held-out figures a manifest records, short: "accuracy 0.956" (rows not counted)."""
    parts = [
        f"{key.removeprefix('heldout_').replace('_', ' ')} {value:.3g}"
        for key, value in metrics.items()
        if key.startswith("heldout_") and key != "heldout_rows"
    ]
    return ", ".join(parts)


def _first_of(problems: list[str]) -> str:
    """A failed folder's check in its table cell: its first problem, and how many more."""
    first = " ".join(problems[0].split()) if problems else "cannot be used"
    return first + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")


def model_rows(registry: ModelRegistry) -> list[ModelRow]:
    """Every model of `registry` and every folder it could not use (`registry.broken`, with
    what of its manifest could be read): built-ins first, then the user's, the broken last."""
    rows = [
        ModelRow(
            name=model.name,
            folder=model.folder,
            source=source_of(model.folder),
            check="ok" if model.loaded else "loading…",
            ok=True,
            manifest=model.manifest,
        )
        for model in registry.models.values()
    ]
    rows += [
        ModelRow(
            name=check.name,
            folder=check.folder,
            source=source_of(check.folder),
            check=_first_of(check.problems),
            ok=False,
            manifest=check.manifest,
            problems=tuple(" ".join(p.split()) for p in check.problems),
        )
        for check in registry.broken
    ]
    return sorted(rows, key=lambda r: (r.source != "built-in", not r.ok, r.name.lower()))


def _field_kind(spec: FieldSpec) -> str:
    """A field's type with what bounds it: "float, 0 – 30 cm", "text, ≤ 200 characters"."""
    parts: list[str] = [spec.type]
    if spec.type == "image" and spec.shape:
        parts.append(f"{spec.shape[0]}×{spec.shape[1]} pixels")
    if spec.type == "text":
        parts.append(f"≤ {spec.text_length:,} characters")
    if spec.choices:
        parts.append(" / ".join(spec.choices))
    low, high = spec.minimum, spec.maximum
    if spec.type in ("float", "int") and (low is not None or high is not None):
        if low is not None and high is not None:
            parts.append(f"{low:g} – {high:g}")
        elif low is not None:
            parts.append(f"≥ {low:g}")
        else:
            parts.append(f"≤ {high:g}")
    if spec.unit:
        parts.append(spec.unit)
    if spec.default is not None:
        parts.append(f"default {spec.default}")
    return ", ".join(parts)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th align=left>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table cellspacing=0 cellpadding=3><tr>{head}</tr>{body}</table>"


def details_html(row: ModelRow) -> str:
    """The selected model's details: what it is, its inputs with their types, units and
    ranges, its labels or outputs, its held-out figures and where it lives."""
    parts = [f"<h3>{escape(row.name)}</h3>"]
    manifest = row.manifest
    if not row.ok:
        listed = "".join(f"<li>{escape(p)}</li>" for p in row.problems)
        parts.append(f"<p><b>Cannot be used:</b></p><ul>{listed}</ul>")
    if manifest is None:
        parts.append(f"<p>Folder: {escape(str(row.folder))}</p>")
        return "".join(parts)
    parts.append(
        f"<p>{escape(manifest.task)} · version {escape(manifest.version)} · {row.source}</p>"
    )
    if manifest.description:
        parts.append(f"<p>{escape(manifest.description)}</p>")
    parts.append("<p><b>Inputs</b></p>")
    parts.append(
        _table(
            ("name", "type", "description"),
            [(s.name, _field_kind(s), s.description) for s in manifest.inputs],
        )
    )
    if manifest.is_classifier:
        parts.append(f"<p><b>Labels</b> ({len(manifest.labels)}): ")
        parts.append(f"{escape(', '.join(manifest.labels))}</p>")
    else:
        parts.append("<p><b>Outputs</b></p>")
        parts.append(
            _table(
                ("name", "unit", "description"),
                [(o.name, o.unit or "", o.description) for o in manifest.outputs],
            )
        )
    if manifest.metrics:
        figures = ", ".join(f"{k} {v:g}" for k, v in manifest.metrics.items())
        parts.append(f"<p><b>Metrics:</b> {escape(figures)}</p>")
    parts.append(f"<p>Folder: {escape(str(row.folder))}</p>")
    return "".join(parts)
