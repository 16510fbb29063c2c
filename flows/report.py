"""The pipeline report: `reports/report.md` and `reports/report.html` with their PNG renderings.

Sections: the steps (status, time, warning or error), every stage's metrics (the
`artifacts/*/metrics.json` files and the pipeline's own step summaries), the benchmark results
(`benchmarks/results/*.json`), the renderings (PNG files under `artifacts/`, copied next to
the report), the lineage of the latest version of each model in the store (with a hash
re-verification), and the promotion decisions of the `retrain` flow.

Both files are built from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from dh.config import ARTIFACTS, BENCH_RESULTS, REPORTS

logger = logging.getLogger(__name__)

MAX_ROWS = 40  # rows per metrics table; longer ones are cut with a note
MAX_LIST = 6  # list values longer than this are shown shortened


@dataclass
class Block:
    """One piece of the report: `kind` is h1, h2, h3, p, warn, table, img or pre."""

    kind: str
    text: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


# ------------------------------------------------------------------------ content


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """`(dotted key, short value text)` pairs of a nested JSON document."""
    if isinstance(doc, dict):
        out = []
        for k, v in doc.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
        out = []
        for i, v in enumerate(doc):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix, _fmt(doc))]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_fmt(v) for v in value[:MAX_LIST])
        more = f", ... ({len(value)} values)" if len(value) > MAX_LIST else ""
        return f"[{shown}{more}]"
    return str(value)


def metrics_table(title: str, doc: Any, source: str) -> list[Block]:
    """A heading and a key/value table for one metrics document."""
    pairs = flatten(doc)
    blocks = [Block("h3", title), Block("p", f"from `{source}`")]
    rows = tuple(pairs[:MAX_ROWS])
    blocks.append(Block("table", headers=("metric", "value"), rows=rows))
    if len(pairs) > MAX_ROWS:
        blocks.append(Block("p", f"({len(pairs) - MAX_ROWS} more values in the file)"))
    return blocks


def step_blocks(outcomes: list[Any]) -> list[Block]:
    """The steps table and one warning line per skipped or failed step."""
    rows, warnings = [], []
    for o in outcomes:
        o = asdict(o) if is_dataclass(o) else dict(o)
        rows.append((o["name"], o["status"], f"{o['seconds']:.1f}", o.get("detail", "")))
        if o["status"] in ("skipped", "failed"):
            warnings.append(Block("warn", f"step {o['name']} {o['status']}: {o.get('detail', '')}"))
        for w in (o.get("metrics") or {}).get("warnings", []):
            warnings.append(Block("warn", f"step {o['name']}: {w}"))
    total = sum(float(r[2]) for r in rows)
    return [
        Block("h2", "Steps"),
        Block("table", headers=("step", "status", "seconds", "detail"), rows=tuple(rows)),
        Block("p", f"Total step time: {total:.0f} s."),
        *warnings,
    ]


def metric_blocks(artifacts: Path, bench_dir: Path) -> list[Block]:
    """Metrics tables of every stage (artifacts/*/*.json) and of the benchmarks."""
    blocks = [Block("h2", "Metrics")]
    files = sorted(artifacts.glob("*/metrics.json"))
    files += [
        artifacts / "pipeline" / f"{n}.json"
        for n in ("ingest", "fit_demo", "simulate_demo", "serve")
    ]
    found = False
    for path in files:
        doc = _read(path)
        if doc is not None:
            found = True
            blocks += metrics_table(f"{path.parent.name}: {path.stem}", doc, _rel(path))
    if not found:
        blocks.append(Block("warn", f"no metrics files under {artifacts}"))
    bench = sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []
    blocks.append(Block("h2", "Benchmarks"))
    for path in bench:
        doc = _read(path)
        if isinstance(doc, dict):
            doc = {k: v for k, v in doc.items() if k != "machine"}
            machine = (_read(path) or {}).get("machine", {})
            blocks += metrics_table(f"benchmark {path.stem}", doc, _rel(path))
            blocks.append(
                Block("p", f"machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores")
            )
    if not bench:
        blocks.append(Block("p", "No benchmark results (run `make bench`)."))
    return blocks


def image_blocks(artifacts: Path, out_dir: Path) -> list[Block]:
    """Copy every PNG under `artifacts` next to the report; one image block each."""
    blocks = [Block("h2", "Renderings")]
    img_dir = out_dir / "img"
    pngs = sorted(artifacts.rglob("*.png"))
    if pngs:
        img_dir.mkdir(parents=True, exist_ok=True)
    for png in pngs:
        rel = png.relative_to(artifacts)
        name = "_".join(rel.parts)
        shutil.copyfile(png, img_dir / name)
        blocks.append(Block("img", f"img/{name}", rows=((str(rel),),)))
    if not pngs:
        blocks.append(Block("warn", f"no PNG renderings under {artifacts}"))
    return blocks


def lineage_blocks(
    verify: bool = True, store_dir: Path | None = None, log_file: Path | None = None
) -> list[Block]:
    """The latest version of each model in the store: its lineage and a hash re-check."""
    from models.registry import list_models, verify_model

    blocks = [Block("h2", "Model lineage")]
    latest: dict[str, Any] = {}
    versions = list_models(store_dir)
    for m in versions:
        latest[m.name] = m
    n_versions = len(versions)
    if not latest:
        return blocks + [Block("warn", "no model registered in the model store")]
    blocks.append(Block("p", f"{n_versions} model version(s) in the store; latest of each:"))
    for name, m in sorted(latest.items()):
        r = m.record
        status = ""
        if verify:
            rep = verify_model(m.tag, store_dir, log_file)
            status = "OK" if rep.ok else f"FAILED ({len(rep.mismatches)} mismatches)"
        rows = (
            ("version", m.tag),
            ("created", r.created_utc),
            ("data version", r.data_version),
            ("inputs", f"{len(r.inputs)} files, e.g. {r.inputs[0].path if r.inputs else '-'}"),
            ("git commit", f"{r.git_commit[:12] or '-'}{' (dirty)' if r.git_dirty else ''}"),
            ("flow run", r.flow_run_id or "-"),
            ("parent", r.parent or "-"),
            ("record sha256", r.record_sha256),
            ("validation", _fmt_json(r.validation)),
            ("metrics", _fmt_json(r.metrics)),
            *(
                (f"artefact {a.path}", f"sha256 {a.sha256[:16]}..., {a.size} B")
                for a in r.artefacts
            ),
            ("`dh verify`", status or "not run"),
        )
        blocks += [Block("h3", name), Block("table", headers=("field", "value"), rows=rows)]
    return blocks


def promotion_blocks(path: Path) -> list[Block]:
    """The retrain decisions (append-only `promotions.jsonl`), newest last."""
    blocks = [Block("h2", "Retraining decisions")]
    if not path.is_file():
        return blocks + [Block("p", f"No retraining decision yet ({_rel(path)} absent).")]
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[-20:]:
        d = json.loads(line)
        rows.append(
            (
                d.get("time", ""),
                d.get("model", ""),
                d.get("decision", ""),
                _fmt(d.get("champion_error")),
                _fmt(d.get("challenger_error")),
                d.get("metric", ""),
                d.get("challenger", "") or "-",
            )
        )
    head = ("time", "model", "decision", "champion", "challenger", "metric", "challenger version")
    return blocks + [Block("table", headers=head, rows=tuple(rows))]


# ------------------------------------------------------------------------ rendering


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(b.kind[1])} {b.text}\n")
        elif b.kind == "p":
            out.append(f"{b.text}\n")
        elif b.kind == "warn":
            out.append(f"> **WARNING** {b.text}\n")
        elif b.kind == "pre":
            out.append(f"```\n{b.text}\n```\n")
        elif b.kind == "img":
            out.append(f"![{b.rows[0][0]}]({b.text})\n")
        elif b.kind == "table":
            lines = ["| " + " | ".join(b.headers) + " |", "|" + " --- |" * len(b.headers)]
            lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    body = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{esc(b.text)}</p>")
        elif b.kind == "warn":
            body.append(f'<p class="warn"><b>WARNING</b> {esc(b.text)}</p>')
        elif b.kind == "pre":
            body.append(f"<pre>{esc(b.text)}</pre>")
        elif b.kind == "img":
            cap = esc(b.rows[0][0])
            body.append(
                f'<figure><img src="{esc(b.text)}" alt="{cap}" width="450">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
        elif b.kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in b.rows
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:13px;text-align:left}.warn{color:#a40}"
        "figure{display:inline-block;margin:4px}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    outcomes: list[Any] | None,
    out_dir: Path = REPORTS,
    artifacts: Path = ARTIFACTS,
    bench_dir: Path = BENCH_RESULTS,
    verify: bool = True,
    store_dir: Path | None = None,
    log_file: Path | None = None,
) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (and `img/*.png`) into `out_dir`.

    Args:
        outcomes: the pipeline's step outcomes; None reads `artifacts/pipeline/steps.json`.
        out_dir: the report folder.
        artifacts: where the stages wrote metrics and renderings.
        bench_dir: benchmark results folder.
        verify: re-verify each model's hashes (`dh verify`) for the lineage section.
        store_dir: model store (default: the BentoML store).
        log_file: lineage log (default: `artifacts/lineage/lineage.jsonl`).

    Returns:
        (markdown path, html path).
    """
    from dh.lineage import git_state

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if outcomes is None:
        outcomes = _read(artifacts / "pipeline" / "steps.json") or []
    commit, dirty = git_state()
    title = "Digital-human pipeline report"
    blocks = [
        Block("h1", title),
        Block(
            "p",
            f"Written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} from "
            f"commit {commit[:12] or '-'}{' (dirty working tree)' if dirty else ''}.",
        ),
    ]
    blocks += step_blocks(outcomes) if outcomes else [Block("warn", "no pipeline step outcomes")]
    blocks += metric_blocks(Path(artifacts), Path(bench_dir))
    blocks += image_blocks(Path(artifacts), out_dir)
    try:
        blocks += lineage_blocks(verify, store_dir, log_file)
    except Exception as exc:  # noqa: BLE001 - the report still says why lineage is absent
        blocks.append(Block("warn", f"lineage unavailable: {type(exc).__name__}: {exc}"))
    blocks += promotion_blocks(Path(artifacts) / "lineage" / "promotions.jsonl")

    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, title), encoding="utf-8")
    logger.info("report written to %s and %s", md, page)
    return md, page


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _fmt_json(doc: dict[str, Any], limit: int = 300) -> str:
    text = json.dumps(doc, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rel(path: Path) -> str:
    from dh.config import PROJECT_ROOT

    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
