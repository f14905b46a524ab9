"""Defaults shared by every config: a 28x28 grayscale DDPM (Ho et al. 2020 settings), and
the layout of a hierarchical (cascaded) config (`make_cascade`).

Experiment configs import this, override a few fields and add a `quick` variant.
Every field is documented here; `hdd.config_checks` validates them at start-up.
"""
import copy

import ml_collections

# The sample fields that belong to one model's chain; in a cascade each stage sets its own.
CHAIN_FIELDS = ("sampler", "num_steps", "eta", "ddpm_variance", "clip_x0", "clipped_eps",
                "guidance_scale")


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = data = ml_collections.ConfigDict()
  data.source = "tfds"          # tfds | folder | npz | idx
  data.name = "mnist"           # tfds dataset name (source=tfds)
  data.path = ""                # file or folder (source=folder|npz|idx)
  data.split = "train"
  data.tfds_data_dir = ""       # tfds data_dir; "" = tfds' default
  data.download = True          # let tfds download the dataset if it is not prepared
  data.image_size = 28
  data.channels = 1
  data.crop = "center"          # center | bbox (datasets with boxes) | none
  data.random_flip = False
  data.eval_split = "test"
  data.eval_path = ""           # file or folder of the eval split when not data.path (e.g.
                                # CIFAR-10's test npz); "" = data.path (source=folder|npz|idx)
  data.bad_images = "error"     # folder: unreadable image files are an error | skip (counted)

  config.model = model = ml_collections.ConfigDict()
  model.base_channels = 64
  model.channel_mult = (1, 2, 2)
  model.num_res_blocks = 2
  model.attention_resolutions = (14,)
  model.num_heads = 1
  model.dropout = 0.1
  model.norm_groups = 32
  model.num_classes = 0         # > 0: class-conditional (labels from the data)
  # A cascade's later stage: > 0 (the previous stage's image_size) makes it a conditional
  # stage that also sees up(x_low) as input channels (Cascaded Diffusion Models); 0 = the
  # published unconditional stage, which sees x_low only through its chain's start.
  model.low_res_size = 0

  config.diffusion = diffusion = ml_collections.ConfigDict()
  diffusion.schedule = "linear"  # linear | cosine | quadratic
  diffusion.num_steps = 1000     # T
  diffusion.beta_start = 1e-4
  diffusion.beta_end = 0.02
  diffusion.prediction = "eps"   # eps | x0 | v

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 128         # global batch, split over all devices
  train.num_steps = 20_000
  # > 0: train for this many minutes of training time (compilation and measuring hooks not
  # counted; resumed runs train what is left) with the learning rate annealed over the
  # budget; num_steps then only caps the steps. A cascade: config.time_budget_minutes.
  train.time_budget_minutes = 0.0
  train.optimizer = "adam"       # adam | adamw
  train.learning_rate = 2e-4
  train.lr_schedule = "cosine"   # cosine (warm-up + cosine annealing) | constant (warm-up + flat)
  train.warmup_steps = 500
  train.min_learning_rate = 0.0
  train.weight_decay = 0.0       # adamw only
  # > 0: Min-SNR-gamma loss weighting (Hang et al. 2023; 5 in the paper); 0: the simple loss.
  # A training choice, not the model's meaning: a run may resume under another gamma. On the
  # MNIST budget cascade it helped stage 1 (14x14) and hurt stage 2's FID (docs/results.md,
  # ablations).
  train.min_snr_gamma = 0.0
  train.grad_clip = 1.0          # global-norm clip; 0 disables
  train.grad_accum_steps = 1     # micro-batches per update (batch_size must divide evenly)
  train.ema_decay = 0.9999
  train.ema_warmup = True        # decay_t = min(decay, (1 + t) / (10 + t))
  train.mixed_precision = False  # bfloat16 compute, float32 parameters
  train.label_dropout = 0.1      # conditional models: drop labels for classifier-free guidance
  # Conditional stages (model.low_res_size > 0): the low-res input is noised to a step
  # s ~ U{0..f (T-1)} of the stage's schedule, and s is a model input (CDM's augmentation).
  train.low_res_noise_max = 0.5
  train.nonfinite = "stop"       # stop | skip: what a non-finite loss or gradient does
  train.log_every = 50
  train.checkpoint_every = 1000
  train.keep_checkpoints = 3
  train.allow_config_change = False  # resume although diffusion/model/size fields changed
  train.sample_every = 0         # log a sample grid every N steps; 0 = never during training
  # FID of fid_samples samples every N steps (needs the weights): logged, and appended to
  # WORKDIR/fid_curve.json with the training seconds; a cascade stage's FID is that of the
  # cascade up to it (the earlier stages' samples handed over). Plot: experiments/fid_curve.py.
  train.fid_every = 0
  train.fid_samples = 1000       # a small-N FID, logged as fid_<N>samples: not the final FID
  # Weights & Biases: a project name also logs the metrics, sample grids and config there
  # (pip install -e ".[tracking]"; WANDB_MODE=offline keeps them on disk); "" = off.
  train.wandb_project = ""

  config.sample = sample = ml_collections.ConfigDict()
  sample.sampler = "ddpm"        # ddpm | ddim | dpm_solver_2m (DPM-Solver++(2M), 10-25 steps)
  sample.num_steps = 0           # DDIM steps; 0 = T. DDPM always runs all T steps
  sample.eta = 0.0               # DDIM noise; 1.0 = DDPM-like
  sample.ddpm_variance = "fixed_small"  # fixed_small (beta~) | fixed_large (beta)
  sample.clip_x0 = True
  sample.clipped_eps = False     # DDIM + clip_x0: eps from the clipped x0 (GLIDE; for guidance)
  sample.num_samples = 64
  sample.batch_size = 64
  sample.seed = 0
  sample.trajectory_every = 0    # > 0: also save every k-th step of the chain as a strip
  sample.trajectory_images = 8
  sample.guidance_scale = 0.0    # classifier-free guidance weight w (conditional models)
  sample.label = -1              # conditional: -1 = cycle through all classes

  # What `--mode=interpolate` and `--mode=forward_process` draw.
  config.pictures = pictures = ml_collections.ConfigDict()
  pictures.interpolation_pairs = 4    # rows: pairs of endpoints (noises, or classes)
  pictures.interpolation_frames = 9   # columns: points from one endpoint to the other
  pictures.forward_steps = ()         # steps t of the forward strip; () = 8 evenly spaced
  pictures.forward_images = 4         # real images in the forward strip

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 2000  # held-out images for the denoising-loss evaluation
  config.eval.batch_size = 250
  # Sample quality in the features of a classifier trained on the real data (FCD, KID);
  # `--mode=train_classifier` trains it into WORKDIR/classifier_<size> (or classifier_dir).
  config.eval.classifier_dir = ""
  config.eval.classifier_classes = 10
  config.eval.classifier_steps = 1000
  config.eval.classifier_recipe = ""   # a name in evaluation/classifier_recipe.py; "": small
  config.eval.reference_examples = 0   # real images for the reference statistics; 0 = all
  # FID/KID: weights from `python -m evaluation.weights` (default path) or pytorch-fid's .pth;
  # reference statistics are cached in stats_dir ("" = ~/.cache/hdd/fid_stats).
  config.eval.inception_weights = ""
  config.eval.stats_dir = ""
  return config


def make_cascade(config: ml_collections.ConfigDict, image_sizes) -> ml_collections.ConfigDict:
  """Turns a single-model config into a cascade with one stage per image size.

  Stage k (named stage1, stage2, ...) starts as a copy of config.model, .diffusion,
  .train and the chain fields of .sample, plus its resolution and its hand-over from the
  stage before; those top-level sections are then removed, so every setting lives in
  exactly one place: `config.stages.stage2.diffusion.beta_end`, and so on.
  """
  config.stages = ml_collections.ConfigDict()
  for index, size in enumerate(image_sizes, start=1):
    stage = ml_collections.ConfigDict()
    stage.image_size = size
    stage.model = copy.deepcopy(config.model)
    stage.diffusion = copy.deepcopy(config.diffusion)
    stage.train = copy.deepcopy(config.train)
    stage.sample = ml_collections.ConfigDict({k: config.sample[k] for k in CHAIN_FIELDS})
    stage.sample.handover = "mix"     # mix | truncate | noise (conditional stages; not stage1)
    stage.sample.gamma = 0.3          # mix: x = gamma up(x_low) + (1 - gamma) z
    stage.sample.start_step = -1      # truncate: t*; -1 = the step with the SNR of gamma
    stage.sample.upsample = "bilinear"  # nearest | bilinear | bicubic
    # Conditional stages: the low-res input noised to the step f (T-1) at sampling time.
    stage.sample.low_res_noise = 0.1
    stage.budget_fraction = 1.0 / len(image_sizes)  # its share of config.time_budget_minutes
    config.stages[f"stage{index}"] = stage
  config.data.image_size = image_sizes[-1]
  config.stage = 0                    # train only stage k (1-based); 0 = all, in order
  # > 0: one wall-clock budget for the whole cascade, stage k training for
  # stages.stageK.budget_fraction of it (see train.time_budget_minutes).
  config.time_budget_minutes = 0.0
  for section in ("model", "diffusion", "train"):
    del config[section]
  for field in CHAIN_FIELDS:
    del config.sample[field]

  config.filter = ml_collections.ConfigDict()
  config.filter.enabled = False       # re-draw low-confidence stage-1 samples
  config.filter.classifier_dir = ""   # from `main.py --mode=train_classifier`
  config.filter.threshold = 0.5       # minimum top-class probability of the critic
  config.filter.max_rounds = 3        # re-draw rounds before the rest are kept anyway
  return config
