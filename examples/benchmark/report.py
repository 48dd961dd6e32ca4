"""The Markdown report: one function per table, from the measured rows."""

from .calls import KERAS_BN
from .models import TIMM_MODEL
from .segmentation import CLASSES as SEG_CLASSES
from .segmentation import OUTPUT_STRIDE as SEG_STRIDE
from .segmentation import WARMUP as SEG_WARMUP
from .settings import BASELINE
from .settings import IDENTITY
from .settings import MIB
from .settings import TIMM_NON_LOCAL
from .targets import growth_exponent
from .targets import volume_growth_exponent
from .targets import volume_growth_sides


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _kwargs_text(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def render(
    env, args, layer_rows, targets, model_rows, volumes=None, volume_targets=None, seg_rows=None
):
    lines = ["# keras_attention benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += [
        (
            f"- timing: {args.warmup} warm-up calls, median of {args.repeats} interleaved "
            f"rounds (models: {args.model_repeats}"
            + (f"; segmentation: {SEG_WARMUP} and {args.seg_repeats}" if seg_rows else "")
            + "); ratios are medians of per-round ratios"
        ),
        "",
    ]
    if layer_rows:
        lines += [
            "## Layers",
            "",
            (
                f"Baseline: `{BASELINE}` = `Conv2D(C, 1, use_bias=False)` on the same input. "
                f"`{IDENTITY}` returns its input: the cost of the measuring harness alone "
                "(the call, and for fwd+bwd the float32 loss and its gradient). "
                "Peak memory: bytes in use at the call's peak above those in use before it."
            ),
            "",
            (
                "| layer | kwargs | input | fwd ms | fwd x base | fwd+bwd ms | fwd+bwd x base "
                "| peak fwd MiB | x base | peak fwd+bwd MiB | x base |"
            ),
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in layer_rows:
            lines.append(
                f"| {r['layer']} | {_kwargs_text(r['kwargs'])} | {'x'.join(map(str, r['shape']))} "
                f"| {_fmt(r['forward_ms'], '.1f')} | {_fmt(r['forward_ratio'], '.2f')} "
                f"| {_fmt(r['train_ms'], '.1f')} | {_fmt(r['train_ratio'], '.2f')} "
                f"| {_fmt(r['forward_mib'], '.1f')} | {_fmt(r['forward_mib_ratio'], '.2f')} "
                f"| {_fmt(r['train_mib'], '.1f')} | {_fmt(r['train_mib_ratio'], '.2f')} |"
            )
        lines.append("")
    timm_rows = [r for r in layer_rows or [] if "timm" in r]
    if timm_rows:
        lines += _render_vs_timm(timm_rows)
    twins = [r for r in layer_rows or [] if "fused_vs_keras_bn_train" in r]
    if twins:
        lines += _render_fused_batch_norm(twins)
    if targets:
        lines += _render_targets(targets)
    if volumes:
        lines += _render_volumes(volumes)
    if volume_targets:
        lines += _render_volume_growth(volume_targets)
    if model_rows:
        lines += [
            "## ResNet-50 with attention",
            "",
            (
                f"Training step: `train_on_batch` on {args.model_batch}x{args.model_size}x"
                f"{args.model_size}x3, SGD with momentum. Inference: `predict_on_batch` on "
                "one image. Ratios are to plain ResNet-50 (`none`) in the same rounds."
            ),
            "",
            (
                "| attention | trainable params | train step ms | x ResNet-50 "
                "| inference ms (batch 1) | x ResNet-50 |"
            ),
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in model_rows:
            if r.get("in_resnet_table", True):
                lines.append(
                    f"| {r['attention']} | {r['params']:,} | {r['train_ms']:.0f} "
                    f"| {r['train_ratio']:.3f} | {r['infer_ms']:.1f} | {r['infer_ratio']:.3f} |"
                )
        lines.append("")
        lines += _render_models_vs_timm(args, [r for r in model_rows if "vs_timm_train" in r])
        twins = [r for r in model_rows if "fused_vs_keras_bn_train" in r]
        if twins:
            lines += [
                "Training step of each model over its twin with Keras's BatchNormalization "
                "(same rounds): "
                + ", ".join(
                    f"{r['attention'].removesuffix(KERAS_BN)} {r['fused_vs_keras_bn_train']:.3f}"
                    for r in twins
                ),
                "",
            ]
    if seg_rows:
        lines += _render_segmentation(args, seg_rows)
    return "\n".join(lines)


def _render_segmentation(args, rows):
    size, backbone = args.seg_size, args.seg_backbone
    lines = [
        f"## DANet and CCNet on {backbone}",
        "",
        (
            f"One training step (`train_on_batch`, SGD with momentum, random weights) on "
            f"{args.seg_batch}x{size}x{size}x3 with {SEG_CLASSES} classes: "
            f"`DANet`/`CCNet(backbone={backbone!r}, output_stride={SEG_STRIDE}, "
            "outputs=\"all\")` with the released losses (DANet's three outputs, CCNet's main "
            f"and 0.4 x auxiliary), and `backbone` = `from_timm({backbone!r}, "
            f"features_only=True, output_stride={SEG_STRIDE})` alone (loss: the mean of its "
            f"last map), in {args.seg_repeats} interleaved rounds. Heads' share = 1 - backbone "
            "/ network per round (median). Peak: bytes in use at the step's peak above those "
            "before it (fresh process); the heads' = the network's minus the backbone's."
        ),
        "",
        (
            "| network | trainable params | train step ms | x backbone | heads' share of the "
            "step | peak MiB | heads' peak MiB |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['params']:,} | {r['train_ms']:.0f} "
            f"| {r['x_backbone']:.3f} | {_fmt(r['heads_share'], '.1%')} "
            f"| {_fmt(r['peak_mib'], '.0f')} | {_fmt(r['heads_peak_mib'], '.0f')} |"
        )
    return lines + [""]


def _render_models_vs_timm(args, rows):
    if not rows:
        return []
    lines = [
        f"## Training step beside timm's {TIMM_MODEL[0]}",
        "",
        (
            f"The same training step (SGD with momentum, cross-entropy on logits, "
            f"{args.model_batch}x{args.model_size}x{args.model_size}x3, random weights) of "
            f"`ResNet50(attention={TIMM_MODEL[1]!r})`, of `from_timm({TIMM_MODEL[0]!r})` "
            f"and of timm's own model (PyTorch, NCHW, eager), in the same interleaved rounds "
            "as the table above; ours/timm is the median of per-round ratios."
        ),
        "",
        "| model | trainable params | train step ms | ours/timm |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attention']} | {r['params']:,} | {r['train_ms']:.0f} "
            f"| {r['vs_timm_train']:.3f} |"
        )
    return lines + [""]


def _render_fused_batch_norm(rows):
    lines = [
        "## The fused BatchNormalization: before/after",
        "",
        (
            "Each layer holding BatchNormalization against itself built with Keras's "
            "`keras.layers.BatchNormalization` (`--keras-batch-norm`), in the same rounds: "
            "the median of per-round ratios fused / Keras (below 1: the fast path is faster)."
        ),
        "",
        "| layer | input | fused / Keras BN fwd | fused / Keras BN fwd+bwd |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer'].removesuffix(KERAS_BN)} | {'x'.join(map(str, r['shape']))} "
            f"| {r['fused_vs_keras_bn_forward']:.2f} | {r['fused_vs_keras_bn_train']:.2f} |"
        )
    return lines + [""]


def _render_vs_timm(rows):
    lines = [
        "## Against timm",
        "",
        (
            "timm's equivalent module on the same input (NCHW), in the same interleaved "
            "rounds; ours/timm is the median of per-round ratios (below 1: ours is faster)."
        ),
        "",
        (
            "| layer | input | timm module | timm settings | ours fwd ms | timm fwd ms "
            "| ours/timm fwd | ours fwd+bwd ms | timm fwd+bwd ms | ours/timm fwd+bwd |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        settings = r["timm_note"]
        lines.append(
            f"| {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['timm']} | {settings} "
            f"| {_fmt(r['forward_ms'], '.1f')} | {_fmt(r['timm_forward_ms'], '.1f')} "
            f"| {_fmt(r['vs_timm_forward'], '.2f')} | {_fmt(r['train_ms'], '.1f')} "
            f"| {_fmt(r['timm_train_ms'], '.1f')} | {_fmt(r['vs_timm_train'], '.2f')} |"
        )
    return lines + [""]


def _render_targets(targets):
    peaks, size, channels = targets["peaks"], targets["target_size"], targets["channels"]
    lines = ["## CCNet vs non-local: peak memory", ""] if "ccnet" in peaks else []
    nl, cc = peaks.get("non_local", {}).get(size), peaks.get("ccnet", {}).get(size)
    for mode, label in (("forward", "forward"), ("train", "forward+backward")):
        if nl and cc:
            ratio = f"{nl[mode] / cc[mode]:.1f}x" if cc[mode] > 0 else "n/a"
            lines.append(
                f"- {label} at 1x{size}x{size}x{channels}: non_local {nl[mode] / MIB:.1f} MiB, "
                f"ccnet {cc[mode] / MIB:.1f} MiB: non_local / ccnet = **{ratio}** (paper: 11x)"
            )
    timm_peak = peaks.get(TIMM_NON_LOCAL, {}).get(size)
    for mode, label in (("forward", "forward"), ("train", "forward+backward")):
        if nl and timm_peak:
            lines.append(
                f"- {label} at 1x{size}x{size}x{channels}: non_local {nl[mode] / MIB:.1f} MiB, "
                f"timm's NonLocalAttn {timm_peak[mode] / MIB:.1f} MiB"
            )
    lines += _render_growth(targets)
    return lines


def _render_growth(targets):
    """One row per layer: peaks at each size and the growth exponents in H*W."""
    sizes, channels = targets["sizes"], targets["channels"]
    small, large = sizes[-2:]
    header = "".join(f" {s}² fwd MiB | {s}² fwd+bwd MiB |" for s in sizes)
    lines = [
        "",
        f"## Peak memory growth in H*W (batch 1, C={channels})",
        "",
        (
            f"Growth exponent: log(peak at {large}² / peak at {small}²) over "
            "log(ratio of the H*W measured); 1 is linear in H*W, 2 quadratic. Sizes "
            "measured: where a layer's blocks cannot tile the nominal size, the multiple "
            "of its block below it."
        ),
        "",
        "| layer | kwargs at the largest size | sizes measured |"
        + header
        + " growth fwd | growth fwd+bwd |",
        "|---|---|---|" + "---:|" * (2 * len(sizes) + 2),
    ]
    for name, by_size in targets["peaks"].items():
        cells = []
        for s in sizes:
            peak = by_size.get(s)
            cells += [_fmt(peak and peak[m] / MIB, ".1f") for m in ("forward", "train")]
        cells += [_fmt(growth_exponent(targets, name, m), ".2f") for m in ("forward", "train")]
        measured = targets.get("measured", {}).get(name, {})
        kwargs = _kwargs_text(targets.get("kwargs", {}).get(name, {}))
        lines.append(
            f"| {name} | {kwargs} | {', '.join(str(measured.get(s, s)) for s in sizes)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", _growth_exponents(targets), ""]
    return lines


def _growth_exponents(targets):
    """Forward growth of every layer between the two largest sizes, in one line."""
    parts = []
    for name in targets["peaks"]:
        slope = growth_exponent(targets, name, "forward")
        if slope is not None:
            parts.append(f"{name} ~ (H*W)^{slope:.2f}")
    return "Forward peak growth between the two largest sizes: " + (", ".join(parts) or "n/a")


def _shape_text(row):
    return f"{row['label']} {'x'.join(map(str, row['shape']))}"


def _render_volumes(volumes):
    """The 3-D forms against a 1x1x1 convolution, then beside the 3-D references."""
    rows, skipped = volumes["rows"], volumes["skipped"]
    lines = ["## Volumes and clips", ""]
    if rows:
        lines += [
            (
                f"Each layer's 3-D form on 5-D (batch, depth, height, width, channels) inputs. "
                f"Baseline: `{BASELINE}` = `Conv3D(C, 1, use_bias=False)` on the same input, "
                "in the same interleaved rounds; ratios are medians of per-round ratios."
            ),
            "",
            "| layer | kwargs | input | fwd ms | fwd x base | fwd+bwd ms | fwd+bwd x base |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            start = f"| {r['layer']} | {_kwargs_text(r['kwargs'])} | {_shape_text(r)} "
            if r.get("not_run"):
                lines.append(start + f"| {r['not_run']} | | | |")
                continue
            lines.append(
                start + f"| {r['forward_ms']:.1f} | {r['forward_ratio']:.2f} "
                f"| {r['train_ms']:.1f} | {r['train_ratio']:.2f} |"
            )
        lines.append("")
    references = [(r, ref) for r in rows for ref in r["references"]]
    if references:
        lines += [
            "### Beside the 3-D references",
            "",
            (
                "The reference module (PyTorch, NCDHW) built to do our layer's work, on the "
                "same input in the same rounds; ours/reference is the median of per-round "
                "ratios (below 1: ours is faster)."
            ),
            "",
            (
                "| layer | input | reference | settings | ours fwd ms | ref fwd ms "
                "| ours/ref fwd | ours fwd+bwd ms | ref fwd+bwd ms | ours/ref fwd+bwd |"
            ),
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r, ref in references:
            lines.append(
                f"| {r['layer']} | {_shape_text(r)} | {ref['library']} {ref['module']} "
                f"| {ref['note'] or ref['settings']} "
                f"| {r['forward_ms']:.1f} | {_fmt(ref['forward_ms'], '.1f')} "
                f"| {_fmt(ref['vs_forward'], '.2f')} | {r['train_ms']:.1f} "
                f"| {_fmt(ref['train_ms'], '.1f')} | {_fmt(ref['vs_train'], '.2f')} |"
            )
        lines.append("")
    by_reason = {}
    for name, reason in skipped.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        lines += [f"Skipped, no 3-D form ({reason}): {', '.join(names)}.", ""]
    return lines


def _render_volume_growth(targets):
    """Peak memory of the 3-D non-local and criss-cross forms over cubes of growing side."""
    sides, channels = targets["sides"], targets["channels"]
    lines = [f"## Peak memory growth in D*H*W (batch 1, C={channels}, D = H = W)", ""]
    if targets["peaks"]:
        header = "".join(f" {s}³ fwd MiB | {s}³ fwd+bwd MiB |" for s in sides)
        lines += [
            (
                "Growth exponent: log(peak at the larger / peak at the smaller of the two "
                "largest cubes measured) over log(ratio of D*H*W); 1 is linear in D*H*W, 2 "
                "quadratic (a non-local block's N x N matrix), 4/3 criss-cross attention's "
                "N x (D + H + W - 2). 'not run': the attention matrix alone would exceed "
                "--max-attention-gib."
            ),
            "",
            "| layer | kwargs |" + header + " growth fwd | growth fwd+bwd | sides of the growth |",
            "|---|---|" + "---:|" * (2 * len(sides) + 2) + "---|",
        ]
        for name, by_side in targets["peaks"].items():
            cells = []
            for s in sides:
                if s in targets.get("not_run", {}).get(name, {}):
                    cells += ["not run", "not run"]
                    continue
                peak = by_side.get(s)
                cells += [_fmt(peak and peak[m] / MIB, ".1f") for m in ("forward", "train")]
            cells += [
                _fmt(volume_growth_exponent(targets, name, m), ".2f") for m in ("forward", "train")
            ]
            growth_sides = volume_growth_sides(targets, name)
            cells.append("³ to ".join(map(str, growth_sides)) + "³" if growth_sides else "n/a")
            kwargs = _kwargs_text(targets["kwargs"].get(name, {}))
            lines.append(f"| {name} | {kwargs} | " + " | ".join(cells) + " |")
        lines.append("")
        for name, by_side in targets.get("not_run", {}).items():
            for side, why in by_side.items():
                lines.append(f"- {name} at {side}³: {why}.")
        if targets.get("not_run"):
            lines.append("")
    notes = [
        f"- {n}: no 3-D form on this build ({why}); no row." for n, why in targets["notes"].items()
    ]
    return lines + notes + ([""] if notes else [])
