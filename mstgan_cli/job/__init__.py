"""One upscale job, from input file to finished output, and many of them over a folder.

Read in this order:

- :mod:`.plan`: decisions made before any frame moves (output size, model factor, output path,
  colour);
- :mod:`.upscale`: :func:`~.upscale.upscale_file`, the job of one input: probe, plan, run the
  :class:`~.pipeline.Pipeline` (in one pass or in resumable :mod:`.segments`), remux the other
  streams, check the result (:mod:`.integrity`) and rename it into place;
- :mod:`.pipeline`: decode -> upscale -> encode as three overlapping threads;
- :mod:`.segments`: long files cut at keyframes into resumable pieces, joined at the end;
- :mod:`.pipes`: a video read once from stdin, a video written to stdout;
- :mod:`.archive`: every video under a folder, resumable and shardable;
- :mod:`.identity`: stable names for "these settings" and "this input" (what is finished);
- :mod:`.omp`: OpenMP threads that sleep when they wait (the command's choice, not the library's).

The pieces it drives live beside it: ``media/`` (FFmpeg), ``runtime/`` (the model on frames),
``model/`` (the network and its weights).
"""
