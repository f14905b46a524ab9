"""A web page that samples a trained model or cascade (Gradio, on 127.0.0.1):

  python -m hdd.app --workdir=runs/hdd_fmnist_quick [--port=7860] [--workdirs=A,B]

Controls: sampler and steps (per stage), the hand-over into later stages (mix gamma /
truncate t*), guidance weight and class of a conditional model, seed, number of images. It
shows the images, every stage side by side, one image's chain through the stages (a block
per stage, a column per recorded step t), the grid (a row per class), the timing of each
stage, and PNG / npz / GIF (the chain, animated) downloads. Its generate action is also the
API endpoint /generate (gradio_client). Bad input is reported in the page; the server keeps
running. The page can switch to the workdirs given with --workdirs, chosen from a list,
and to no other: what is served is the operator's choice, not a request's. It takes no
uploads, keeps the files of the last --keep_outputs requests and removes them on exit.

  __main__  the flags and the start     page     the page, its handlers and HTTP server
  serving   sampling on request: checked requests, restored parameters, kept chains
"""
