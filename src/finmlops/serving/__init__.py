"""finmlops.serving: the Open Inference Protocol V2 server (ONNX models from files or the registry, Seldon-style
experiments, feedback, request log, Prometheus metrics) and the traffic replayer; no torch, no training code."""
