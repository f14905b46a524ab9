"""Tables and figures of the experiments: markdown for the README, PNG plots."""
from __future__ import annotations


def _ratio(a: float, b: float) -> str:
  return f"{a / b:.2f}x" if b else "-"


def _fid(row: dict) -> str:
  return f"{row['fid']:.2f} | {row['inception_kid_x1e3']:.2f}" if "fid" in row else "- | -"


def results_markdown(results: dict, dataset: str, num_samples: int) -> str:
  """The DDPM-vs-HDD table and the two sweep tables of experiments/hdd_vs_ddpm.py."""
  ddpm, hdd = results["ddpm"], results["hdd"]
  hdd_train, hdd_sample = sum(hdd["train_seconds"]), sum(hdd["sample_seconds"])
  fid_note = (f" FID and Inception KID x1e3 against the {results['fid_reference']}."
              if "fid" in hdd else "")
  lines = [
      f"Dataset: {dataset}; {num_samples} samples per row; quality = classifier Fréchet "
      f"distance (FCD, not FID) and KID in the same (unnormalised) features, against the "
      f"{results['classifier']['reference']} (classifier test accuracy "
      f"{results['classifier']['test_accuracy']:.3f}).{fid_note}", "",
      "| method | train s | sample s | network evals / image | FCD | classifier KID | FID | "
      "Inception KID x1e3 |",
      "|---|---|---|---|---|---|---|---|",
      f"| DDPM 28x28 (T=1000) | {ddpm['train_seconds']:.0f} | {ddpm['sample_seconds']:.1f} | "
      f"{ddpm['evaluations']} | {ddpm['fcd']:.2f} | {ddpm['kid_x1e3'] / 1e3:.1f} | {_fid(ddpm)} |",
      f"| HDD 14x14 + 28x28 (T=500 + 500) | {hdd['train_seconds'][0]:.0f} + "
      f"{hdd['train_seconds'][1]:.0f} | {hdd['sample_seconds'][0]:.1f} + "
      f"{hdd['sample_seconds'][1]:.1f} | {hdd['evaluations'][0]} + {hdd['evaluations'][1]} | "
      f"{hdd['fcd']:.2f} | {hdd['kid_x1e3'] / 1e3:.1f} | {_fid(hdd)} |",
      f"| HDD / DDPM | {_ratio(hdd_train, ddpm['train_seconds'])} | "
      f"{_ratio(hdd_sample, ddpm['sample_seconds'])} | | "
      f"{_ratio(hdd['fcd'], ddpm['fcd'])} | | "
      f"{_ratio(hdd['fid'], ddpm['fid']) if 'fid' in hdd else '-'} | |", ""]
  if "filter" in results:
    f = results["filter"]
    lines += [f"Low-resolution filter (threshold {f['threshold']}: 14x14 classifier confidence): "
              f"{f['initially_rejected']} of {num_samples} stage-1 samples rejected, "
              f"{f['redrawn']} re-drawn in {f['rounds']} round(s), {f['still_rejected']} kept "
              f"anyway; sample s {f['sample_seconds'][0]:.1f} + {f['sample_seconds'][1]:.1f} "
              f"(filter included); FCD {f['fcd']:.2f} (unfiltered {hdd['fcd']:.2f}), "
              f"classifier KID {f['kid_x1e3'] / 1e3:.1f}.", ""]
  for method, title, key_name in (("mix", "mix: x = gamma up(x_14) + (1 - gamma) z", "gamma"),
                                  ("truncate", "truncate: x = q(x_t* | up(x_14))", "t*")):
    points = results["sweeps"].get(method, {})
    if not points:
      continue
    lines += [f"Stage-2 hand-over, {title} (one set of stage-1 samples):", "",
              f"| {key_name} | SNR-equivalent gamma | stage-2 evals | stage-2 sample s | FCD | "
              "classifier KID |", "|---|---|---|---|---|---|"]
    for key, point in sorted(points.items(), key=lambda kv: float(kv[0])):
      lines.append(f"| {key} | {point['gamma']:.3f} | {point['evaluations']} | "
                   f"{point['stage2_sample_seconds']:.1f} | {point['fcd']:.2f} | "
                   f"{point['kid_x1e3'] / 1e3:.1f} |")
    lines.append("")
  return "\n".join(lines)


def sweep_plot(sweeps: dict, path: str, title: str) -> None:
  """FCD against the (SNR-equivalent) gamma for both hand-over rules."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=120)
  for method, marker in (("mix", "o-"), ("truncate", "s--")):
    points = sorted(sweeps.get(method, {}).values(), key=lambda p: p["gamma"])
    if points:
      axis.plot([p["gamma"] for p in points], [p["fcd"] for p in points], marker,
                label=method)
  axis.set_xlabel("gamma (truncate: SNR-equivalent gamma of t*)")
  axis.set_ylabel("classifier Fréchet distance (lower is better)")
  axis.set_title(title, fontsize=9)
  axis.grid(alpha=0.3)
  axis.legend()
  figure.tight_layout()
  figure.savefig(path)
  plt.close(figure)
