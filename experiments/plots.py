"""Tables and figures of experiments/hdd_vs_ddpm.py: markdown for docs/results.md, PNG plots."""
from __future__ import annotations

from experiments import study
from experiments.study import number


def _ratio(a, b) -> str:
  return f"{a / b:.2f}x" if a is not None and b else "-"


def _quality_cells(row: dict) -> str:
  """FID | Inception KID x1e3 | FCD | classifier KID x1e3 of a row."""
  return " | ".join(number(row.get(key)) for key in ("fid", "inception_kid_x1e3", "fcd",
                                                      "classifier_kid_x1e3"))


def results_markdown(results: dict, dataset: str, num_samples: int) -> str:
  """The DDPM-vs-HDD table and the two sweep tables."""
  ddpm, hdd, quality = results["ddpm"], results["hdd"], results["quality"]
  low, high = study.cascade_sizes(dataset)
  hdd_train, hdd_sample = sum(hdd["train_seconds"]), sum(hdd["sample_seconds"])
  quality_header = "FID | Inception KID x1e3 | FCD | classifier KID x1e3"
  lines = [
      f"Dataset: {dataset}; {num_samples} samples per row. FID and Inception KID against the "
      f"{quality.get('fid_reference', '- (not measured)')}; the classifier Fréchet distance "
      f"(FCD, not FID) and KID in its features against the {quality['classifier_reference']} "
      f"(classifier test accuracy {quality['classifier_test_accuracy']:.3f}). Lower is "
      "better.", "",
      f"| method | train s | sample s | network evals / image | {quality_header} |",
      "|---|---|---|---|---|---|---|---|",
      f"| DDPM {high}x{high} (T=1000) | {ddpm['train_seconds']:.0f} | "
      f"{ddpm['sample_seconds']:.1f} | "
      f"{ddpm['evaluations'][0]} | {_quality_cells(ddpm)} |",
      f"| HDD {low}x{low} + {high}x{high} (T=500 + 500) | {hdd['train_seconds'][0]:.0f} + "
      f"{hdd['train_seconds'][1]:.0f} | {hdd['sample_seconds'][0]:.1f} + "
      f"{hdd['sample_seconds'][1]:.1f} | {hdd['evaluations'][0]} + {hdd['evaluations'][1]} | "
      f"{_quality_cells(hdd)} |",
      f"| HDD / DDPM | {_ratio(hdd_train, ddpm['train_seconds'])} | "
      f"{_ratio(hdd_sample, ddpm['sample_seconds'])} | | "
      f"{_ratio(hdd.get('fid'), ddpm.get('fid'))} | | {_ratio(hdd['fcd'], ddpm['fcd'])} | |", ""]
  if "filter" in results:
    f = results["filter"]
    lines += [f"Low-resolution filter (threshold {f['threshold']}: {low}x{low} classifier "
              "confidence): "
              f"{f['initially_rejected']} of {num_samples} stage-1 samples rejected, "
              f"{f['redrawn']} re-drawn in {f['rounds']} round(s), {f['still_rejected']} kept "
              f"anyway; sample s {f['sample_seconds'][0]:.1f} + {f['sample_seconds'][1]:.1f} "
              f"(filter included); FID {number(f.get('fid'))} (unfiltered "
              f"{number(hdd.get('fid'))}), FCD {f['fcd']:.2f} (unfiltered {hdd['fcd']:.2f}).", ""]
  for method, title, key_name in (("mix", f"mix: x = gamma up(x_{low}) + (1 - gamma) z", "gamma"),
                                  ("truncate", f"truncate: x = q(x_t* | up(x_{low}))", "t*")):
    points = results["sweeps"].get(method, {})
    if not points:
      continue
    lines += [f"Stage-2 hand-over, {title} (one set of stage-1 samples):", "",
              f"| {key_name} | SNR-equivalent gamma | stage-2 evals | stage-2 sample s | "
              f"{quality_header} |", "|---|---|---|---|---|---|---|---|"]
    for key, point in sorted(points.items(), key=lambda kv: float(kv[0])):
      lines.append(f"| {key} | {point['gamma']:.3f} | {point['evaluations']} | "
                   f"{point['stage2_sample_seconds']:.1f} | {_quality_cells(point)} |")
    lines.append("")
  return "\n".join(lines)


def sweep_plot(sweeps: dict, path: str, title: str) -> None:
  """FID (when measured) and FCD against the (SNR-equivalent) gamma, both hand-over rules."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  metrics = [(key, label) for key, label in (("fid", "FID"), ("fcd", "classifier Fréchet distance"))
             if all(key in p for points in sweeps.values() for p in points.values())]
  figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), dpi=120,
                              squeeze=False)
  for axis, (key, label) in zip(axes[0], metrics):
    for method, marker in (("mix", "o-"), ("truncate", "s--")):
      points = sorted(sweeps.get(method, {}).values(), key=lambda p: p["gamma"])
      if points:
        axis.plot([p["gamma"] for p in points], [p[key] for p in points], marker, label=method)
    axis.set_xlabel("gamma (truncate: SNR-equivalent gamma of t*)")
    axis.set_ylabel(f"{label} (lower is better)")
    axis.grid(alpha=0.3)
    axis.legend()
  figure.suptitle(title, fontsize=9)
  study.save_figure(figure, path)
