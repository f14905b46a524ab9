"""The pure mathematics of diffusion: noise schedules, the forward and reverse steps, the
sampling chain, the hand-over between cascade stages and the U-Net. Functions of arrays
and small dataclasses only: nothing here reads a config, a file or another part of `hdd`
(tests/test_layering.py keeps it so)."""
