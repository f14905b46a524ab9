"""Defaults shared by every config: a 28x28 grayscale DDPM (Ho et al. 2020 settings).

Experiment configs import this, override a few fields and add a `quick` variant.
Every field is documented here; `hdd.config_checks` validates them at start-up.
"""
import ml_collections


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
  data.extra_resolutions = ()   # also yield image_<r> views (the cascade's low-res stages)
  data.eval_split = "test"

  config.model = model = ml_collections.ConfigDict()
  model.base_channels = 64
  model.channel_mult = (1, 2, 2)
  model.num_res_blocks = 2
  model.attention_resolutions = (14,)
  model.num_heads = 1
  model.dropout = 0.1
  model.norm_groups = 32
  model.num_classes = 0         # > 0: class-conditional (labels from the data)

  config.diffusion = diffusion = ml_collections.ConfigDict()
  diffusion.schedule = "linear"  # linear | cosine | quadratic
  diffusion.num_steps = 1000     # T
  diffusion.beta_start = 1e-4
  diffusion.beta_end = 0.02
  diffusion.prediction = "eps"   # eps | x0 | v

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 128         # global batch, split over all devices
  train.num_steps = 20_000
  train.optimizer = "adam"       # adam | adamw
  train.learning_rate = 2e-4
  train.lr_schedule = "cosine"   # cosine (warm-up + cosine annealing) | constant (warm-up + flat)
  train.warmup_steps = 500
  train.min_learning_rate = 0.0
  train.weight_decay = 0.0       # adamw only
  train.grad_clip = 1.0          # global-norm clip; 0 disables
  train.grad_accum_steps = 1     # micro-batches per update (batch_size must divide evenly)
  train.ema_decay = 0.9999
  train.ema_warmup = True        # decay_t = min(decay, (1 + t) / (10 + t))
  train.mixed_precision = False  # bfloat16 compute, float32 parameters
  train.label_dropout = 0.1      # conditional models: drop labels for classifier-free guidance
  train.nonfinite = "stop"       # stop | skip: what a non-finite loss or gradient does
  train.log_every = 50
  train.checkpoint_every = 1000
  train.keep_checkpoints = 3
  train.sample_every = 0         # log a sample grid every N steps; 0 = never during training

  config.sample = sample = ml_collections.ConfigDict()
  sample.sampler = "ddpm"        # ddpm | ddim
  sample.num_steps = 0           # DDIM steps; 0 = T. DDPM always runs all T steps
  sample.eta = 0.0               # DDIM noise; 1.0 = DDPM-like
  sample.ddpm_variance = "fixed_small"  # fixed_small (beta~) | fixed_large (beta)
  sample.clip_x0 = True
  sample.num_samples = 64
  sample.batch_size = 64
  sample.seed = 0
  sample.trajectory_every = 0    # > 0: also save every k-th step of the chain as a strip
  sample.trajectory_images = 8
  sample.guidance_scale = 0.0    # classifier-free guidance weight w (conditional models)
  sample.label = -1              # conditional: -1 = cycle through all classes

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 2000  # held-out images for the denoising-loss evaluation
  config.eval.batch_size = 250
  return config
