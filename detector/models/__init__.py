"""Assembled networks: the video and audio streams, the sync stream, the {2+1}-stream model and
the single-stream baselines. Build them with :func:`detector.builder.build_model`."""
