"""Harnesses that run models and files and measure them (``metrics/`` holds the measures).

- :mod:`.files`: a video against its reference (``mstgan eval``), or on its own for flicker;
- :mod:`.protocol`: the benchmark protocol (``mstgan eval --protocol``): every method and metric
  on high-resolution clips degraded as the model cards say;
- :mod:`.bench`: throughput and memory of each part of an upscale (``mstgan bench``);
- :mod:`.compare`: side-by-side collages and split screens (``mstgan compare``);
- :mod:`.report`: CSV, JSON, markdown tables and plots of the above.
"""
