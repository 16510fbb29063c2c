"""BentoML services over ONNX Runtime sessions."""
