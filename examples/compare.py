"""
Title: Comparing attention mechanisms on one budget
Author: keras_attention contributors
Description: Train the same small CNN with each attention mechanism (and without any)
on the same data, seed and epochs, and tabulate accuracy, parameters and speed.

## Introduction

Every mechanism is dropped after each of the three stages of `AttentionCNN`
and trained by `train_classifier.py` with identical settings; the table is
printed and saved as `compare.md` and `compare.csv` in `--output-dir`:

    python examples/compare.py --epochs 5

Two registered mechanisms are left out by default because the comparison would
say nothing about them:

- `stn` warps its input geometrically. Its place is in front of a network, on
  the image, not after each stage of a CNN; `spatial_transformer.py` measures it
  on distorted digits.
- `residual`, the Residual Attention module, is a block with its own trunk of
  residual units: after each stage it nearly doubles the network, so a
  difference would not be the attention's. `train_classifier.py --model ran56`
  trains the network it was designed for.

Name them in `--attention` to include them anyway. Each run keeps its model in
`<output-dir>/<mechanism>/`: a killed comparison resumes where it stopped, and
finished runs are reused unless `--overwrite` is given. Times are wall-clock seconds per
epoch, validation included, the median after the first (compiling) epoch: on a
shared machine they are rough.
"""

## Setup

import csv
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras

import keras_attention

import cli
import run_folder
import train_classifier

# Left out of the default list: STN and residual attention change the network
# rather than gate it; AttentionGate takes two inputs; BoT and axial attention
# need the feature size as an argument, and halo attention maps whose sides its
# block size divides; SGE and shuffle attention's default 64 groups need more
# than the 32 channels of AttentionCNN's first stage. Name them in --attention
# with a model (or widths) that fits them.
EXCLUDED = ("stn", "residual", "attention_gate", "bot", "axial", "halo", "sge", "shuffle")


def default_mechanisms():
    return ["none"] + [name for name in keras_attention.available() if name not in EXCLUDED]


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--attention",
        default=",".join(default_mechanisms()),
        help="Comma-separated mechanisms to compare (short names of "
        "keras_attention.available(), and 'none'). Default: all but "
        f"{', '.join(EXCLUDED)} (see EXCLUDED in the script).",
    )
    parser.add_argument("--dataset", default="digits", help="As in train_classifier.py.")
    parser.add_argument("--epochs", type=int, default=5, help="Training epochs of every run.")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size of every run.")
    cli.add_precision_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="The seed shared by every run.")
    parser.add_argument(
        "--limit", type=int, default=None, help="Use only this many train and test digits."
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join("runs", "compare"),
        help="Where the runs and tables go.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Train every mechanism again; without it, finished runs in --output-dir "
        "are reused and killed ones resume.",
    )
    args = parser.parse_args(argv)
    args.attention = [name.strip() for name in args.attention.split(",") if name.strip()]
    known = set(train_classifier.attention_choices())
    unknown = [name for name in args.attention if name not in known]
    if unknown:
        parser.error(
            f"unknown --attention {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    return args


## Training each mechanism


def epoch_seconds(summary):
    """The median epoch time, leaving out the first epoch (it compiles) when there are more."""
    seconds = summary["epoch_seconds"]
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def run(args, mechanism):
    argv = [
        "--attention", mechanism,
        "--dataset", args.dataset,
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--precision", args.precision,
        "--seed", str(args.seed),
        "--output-dir", os.path.join(args.output_dir, mechanism),
        "--verbose", "0",
    ]  # fmt: skip
    if args.limit:
        argv += ["--limit", str(args.limit)]
    if args.overwrite:
        argv.append("--overwrite")
    # Each run starts from a fresh Keras state, as it would in a process of its own.
    keras.backend.clear_session()
    return train_classifier.main(argv)


## The table


def rows_of(summaries):
    base = summaries.get("none", {}).get("parameters")
    rows = []
    for mechanism, summary in summaries.items():
        added = summary["parameters"] - base if base is not None else ""
        rows.append(
            {
                "mechanism": mechanism,
                "test_accuracy": f"{summary['test_accuracy']:.4f}",
                "parameters": summary["parameters"],
                "added_parameters": added,
                "seconds_per_epoch": f"{epoch_seconds(summary):.1f}",
            }
        )
    return rows


def markdown(rows):
    header = "| mechanism | test accuracy | parameters | added | s/epoch |"
    lines = [header, "|---|---:|---:|---:|---:|"]
    for row in rows:
        added = f"{row['added_parameters']:+,}" if row["added_parameters"] != "" else ""
        lines.append(
            f"| {row['mechanism']} | {row['test_accuracy']} | {row['parameters']:,} | "
            f"{added} | {row['seconds_per_epoch']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Trains every mechanism, writes compare.md and compare.csv; returns the rows."""
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    summaries = {}
    for mechanism in args.attention:
        print(f"\n## {mechanism}")
        summaries[mechanism] = run(args, mechanism)
    rows = rows_of(summaries)
    table = markdown(rows)
    run_folder.write_text(
        os.path.join(args.output_dir, "compare.md"),
        f"AttentionCNN on {args.dataset}, {args.epochs} epochs, batch {args.batch_size}, "
        f"seed {args.seed}, {summaries[args.attention[0]]['precision']}\n\n{table}\n",
    )
    csv_path = os.path.join(args.output_dir, "compare.csv")
    with run_folder.atomic_path(csv_path) as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n" + table)
    return rows


if __name__ == "__main__":
    try:
        main()
    except train_classifier.data.DataError as error:  # one line: the data cannot be had
        raise SystemExit(f"error: {error}") from None
