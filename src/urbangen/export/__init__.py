"""Deployment of generators: ONNX export, TensorRT engines, the runtime backends and the KServe server."""
