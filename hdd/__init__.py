"""HDD: hierarchical (cascaded) denoising diffusion models in JAX/Flax."""
