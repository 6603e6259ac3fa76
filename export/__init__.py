"""Checkpoint to ONNX (plugin and portable graphs) to TensorRT engines: `bdinn-export`."""
