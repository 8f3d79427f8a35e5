"""Readable views of a bench result: terminal tables and the markdown tables of the docs'
performance pages (``docs/performance/``).

Everything is rendered from the result document alone (:mod:`tastemap.bench.schema`), so the
published figures come from a real run and can be regenerated with ``tastemap bench report``.
"""

from __future__ import annotations

from tastemap.runtime.interests.clustering import CLUSTERING_BACKENDS

BACKEND_ORDER = ("st-torch-fp32", "st-onnx-fp32", "st-onnx-int8", "tastemap-fp32", "tastemap-int8", "tastemap-fp16")
WORKLOAD_ORDER = ("queries", "items", "long")


def encoder_rows(doc: dict, model: str, workload: str) -> list[list[str]]:
    """One row per backend: texts/s, tokens/s, x vs st-torch-fp32, quality, p50 at 1 text, roofline."""
    figures = doc["figures"]
    prefix = f"encoder/{model}/{workload}"
    reference = doc["suites"]["encoder"]["context"]["models"][model]["quality_reference"]
    baseline = figures.get(f"{prefix}/st-torch-fp32/texts_per_s")
    rows = []
    for backend in BACKEND_ORDER:
        speed = figures.get(f"{prefix}/{backend}/texts_per_s")
        if speed is None:
            continue
        quality = figures.get(f"{prefix}/{backend}/quality/mean_cosine")
        spearman = figures.get(f"{prefix}/{backend}/quality/spearman")
        latency = figures.get(f"encoder/{model}/latency/{backend}/bs1/p50")
        fraction = figures.get(f"roofline/{model}/{workload}/{backend}/fraction_of_ceiling")
        rows.append([
            backend,
            f"{speed['value']:,.0f}",
            f"{figures[f'{prefix}/{backend}/tokens_per_s']['value']:,.0f}",
            f"{speed['value'] / baseline['value']:.2f}x" if baseline else "-",
            "reference" if backend == reference else (f"{quality['value']:.4f}" if quality else "-"),
            "reference" if backend == reference else (f"{spearman['value']:.4f}" if spearman else "-"),
            f"{latency['value']:.1f}" if latency else "-",
            f"{fraction['value']:.1%}" if fraction else "-",
        ])
    return rows


def ratio_rows(doc: dict, model: str) -> list[list[str]]:
    """One row per (workload, ratio): wall-clock and CPU-time speed ratios measured in the run."""
    figures = doc["figures"]
    rows = []
    workloads = doc["suites"]["encoder"]["context"]["models"][model]["workloads"]
    for workload in _ordered(workloads):
        for name, item in figures.items():
            prefix = f"encoder/{model}/{workload}/speedup/"
            if name.startswith(prefix):
                pair = name[len(prefix):]
                cpu = figures.get(f"encoder/{model}/{workload}/cpu_speedup/{pair}")
                rows.append([workload, pair.replace("_vs_", " / "), f"{item['value']:.2f}x",
                             f"{cpu['value']:.2f}x" if cpu else "-"])
    return rows


ENCODER_COLUMNS = ["backend", "texts/s", "tokens/s", "vs st-torch-fp32", "mean cos", "Spearman",
                   "p50 ms (1 item text)", "of ceiling"]


def gated_rows(doc: dict) -> list[list[str]]:
    """Every gated figure: suite, model, figure (the rest of its name), value, unit."""
    rows = []
    for name, item in sorted(doc["figures"].items()):
        if item["gated"]:
            suite, model, rest = (name.split("/", 2) + ["", ""])[:3]
            rest = rest.replace("cpu_speedup/", "cpu x ").replace("speedup/", "x ")
            rows.append([suite, model, rest.replace("/", " "), _number(item["value"]),
                         item["unit"]])
    return rows


def cluster_rows(doc: dict) -> list[list[str]]:
    """Seconds (and peak MiB) per algorithm and size, one column per backend."""
    table: dict[tuple[str, int], dict[str, str]] = {}
    for name, item in doc["figures"].items():
        parts = name.split("/")
        if parts[0] == "cluster" and len(parts) == 5 and parts[4] == "seconds":
            peak = doc["figures"].get("/".join(parts[:4] + ["peak_mib"]))
            cell = f"{item['value']:.2f} s" + (f" ({peak['value']:,.0f} MiB)" if peak else "")
            table.setdefault((parts[1], int(parts[3][1:])), {})[parts[2]] = cell
    notes = " ".join(note for note in doc["notes"] if note.startswith("cluster:"))
    missing = {spec.name: "not available" if f"{spec.name} not available" in notes else "-"
               for spec in CLUSTERING_BACKENDS}
    return [[algorithm, f"{n:,}", *(cells.get(spec.name, missing[spec.name]) for spec in CLUSTERING_BACKENDS)]
            for (algorithm, n), cells in sorted(table.items())]


def pipeline_rows(doc: dict) -> list[list[str]]:
    """Seconds and peak memory per stage of the MovieLens pipeline and each synthetic size."""
    rows = []
    for name, item in doc["figures"].items():
        parts = name.split("/")
        if parts[0] == "pipeline" and parts[-1] == "seconds" and len(parts) >= 4:
            peak = doc["figures"].get("/".join(parts[:-1] + ["peak_rss_mib"]))
            rows.append([parts[1] + ("" if len(parts) == 4 else f" {parts[2]}"), parts[-2],
                         f"{item['value']:.2f}", f"{peak['value']:,.0f}" if peak else "-"])
    return rows


def print_summary(doc: dict) -> None:
    """Tables of the main figures on stdout."""
    from tastemap.console import print_table

    threads = doc["config"]["threads"]
    for model, context in doc["suites"].get("encoder", {}).get("context", {}).get("models", {}).items():
        for workload in _ordered(context["workloads"]):
            info = context["workloads"][workload]
            rows = [row[:2] + row[3:] for row in encoder_rows(doc, model, workload)]  # tokens/s: in the JSON
            print_table(f"{model}, {workload} ({info['n_texts']} texts, mean {info['mean_tokens']:.0f} tokens), "
                        f"{threads} threads", ["backend", "texts/s", "x torch", "cos", "rho", "p50 ms", "roof"], rows)
    rows = gated_rows(doc)
    if rows:
        print_table("Gated in-run figures (tastemap bench compare)", ["suite", "model", "figure", "value", "unit"],
                    [[row[0], row[1][:16], *row[2:]] for row in rows])
    if "cluster" in doc["suites"]:
        print_table(f"Clustering, {threads} threads", ["algorithm", "n", *(spec.name for spec in CLUSTERING_BACKENDS)],
                    cluster_rows(doc))
    if "pipeline" in doc["suites"]:
        print_table("Pipeline stages", ["pipeline", "stage", "seconds", "peak MiB"], pipeline_rows(doc))
    if doc["notes"]:
        print_table("Notes", ["note"], [[note] for note in doc["notes"]])


def render_markdown(doc: dict, source: str = "RESULT.json") -> str:
    """The performance tables of ``doc`` (markdown, as in ``docs/performance/``)."""
    machine, config = doc["machine"], doc["config"]
    threads = config["threads"]
    flags = ", ".join(flag for flag in machine["cpu_flags"] if flag.startswith(("avx512_vnni", "avx2", "amx", "avx_vnni")))
    flags += f"; int8 ISA class {machine.get('cpu_isa', 'unknown')}"
    lines = [
        "## Performance",
        "",
        f"Measured by `{doc['command']}` on {doc['created'][:10]}: {machine['cpu_model']} ({flags}), "
        f"{threads} threads of {machine['cores_usable']} usable cores, GPU: {machine['gpu']}; "
        f"onnxruntime {machine['packages'].get('onnxruntime', '?')}, torch {machine['packages'].get('torch', '?')}, "
        f"sentence-transformers {machine['packages'].get('sentence-transformers', '?')}. "
        + _load_sentence(machine) +
        "Speeds are medians of interleaved rounds, each backend run side by side in the same process at the "
        "same thread count; ratios are what carries over to other machines, absolute figures do not.",
        "",
        "Reproduce:",
        "",
        "```bash",
        f"{doc['command']} --out {source}",
        f"tastemap bench report {source}",
        "```",
    ]
    encoder = doc["suites"].get("encoder", {}).get("context", {}).get("models", {})
    for model, context in encoder.items():
        for workload in _ordered(context["workloads"]):
            info = context["workloads"][workload]
            lines += ["", f"**{model}**, {workload}: {info['description']}; {info['n_texts']} texts, "
                          f"mean {info['mean_tokens']:.1f} tokens. Quality is measured against "
                          f"{context['quality_reference']}.", ""]
            lines += _markdown_table(ENCODER_COLUMNS, encoder_rows(doc, model, workload))
        lines += ["", f"**{model}**, speed ratios measured in the same run (wall clock, and process CPU time, "
                      "which does not count time spent waiting for a core):", ""]
        lines += _markdown_table(["workload", "ratio", "wall", "CPU time"], ratio_rows(doc, model))
    quantization = doc["suites"].get("encoder", {}).get("context", {}).get("quantization")
    if quantization:
        prefix = f"encoder/{quantization['model']}/quantization"
        figures = doc["figures"]
        lines += ["", f"int8 schemes on {quantization['model']} ({quantization['n_texts']} texts, batches of "
                      f"{quantization['batch_size']}; cosine to the fp32 ONNX model):", ""]
        lines += _markdown_table(["scheme", "MiB", "mean cos", "min cos", "texts/s", "texts/CPU-s"], [
            [scheme, f"{figures[f'{prefix}/{scheme}/size_mib']['value']:.1f}",
             f"{figures[f'{prefix}/{scheme}/mean_cosine']['value']:.5f}",
             f"{figures[f'{prefix}/{scheme}/min_cosine']['value']:.5f}",
             f"{figures[f'{prefix}/{scheme}/texts_per_s']['value']:,.0f}",
             f"{figures[f'{prefix}/{scheme}/texts_per_cpu_s']['value']:,.0f}"]
            for scheme in quantization["schemes"]])
    ceilings = doc["suites"].get("roofline", {}).get("context", {}).get("ceilings")
    if ceilings:
        lines += ["", f"Roofline ceilings at {threads} threads ({doc['suites']['roofline']['context']['method']}): "
                      f"float32 {ceilings['fp32']:.0f} GFLOP/s, int8 {ceilings['int8']:.0f} GOP/s. "
                      "\"of ceiling\" = the workload's model FLOPs (real tokens only) per second over the ceiling "
                      "of the backend's precision."]
    if "cluster" in doc["suites"]:
        context = doc["suites"]["cluster"]["context"]
        lines += ["", f"Clustering {context['dim']}-d unit vectors into k={context['k']} ({context['n_iter']} "
                      f"iterations, 1 init), seconds (peak memory above the data):", ""]
        lines += _markdown_table(["algorithm", "n", *(spec.library for spec in CLUSTERING_BACKENDS)], cluster_rows(doc))
    if "pipeline" in doc["suites"]:
        lines += ["", "Pipeline stages (seconds, peak resident MiB):", ""]
        lines += _markdown_table(["pipeline", "stage", "seconds", "peak MiB"], pipeline_rows(doc))
    if doc["notes"]:
        lines += ["", "Notes: " + "; ".join(doc["notes"]) + "."]
    return "\n".join(lines) + "\n"


def _load_sentence(machine: dict) -> str:
    if "load_average" not in machine:
        return ""
    start, end = machine["load_average"], machine.get("load_average_end", machine["load_average"])
    shared = " (other jobs shared the machine)" if max(start, end) > machine["cores_usable"] else ""
    return (f"1-minute load average {start:.1f} at the start and {end:.1f} at the end on "
            f"{machine['cores_usable']} cores{shared}. ")


def _markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    return [header, rule] + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _ordered(workloads) -> list[str]:
    return [name for name in WORKLOAD_ORDER if name in workloads] + [n for n in workloads if n not in WORKLOAD_ORDER]


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
