"""Fixed-point deployment of the routing FCN with Trained Quantization Thresholds.

Jain, Gural, Wu & Dick (2019), "Trained Quantization Thresholds for Accurate and Efficient
Fixed-Point Inference of Deep Neural Networks". The modules follow the data's path.

- fold: batch norm folded into each convolution.
- calibrate: static thresholds (max, percentile or KL-J for activations, max or MSE for weights).
- quantizer: the TQT quantizer, with a power-of-2 scale and a trained log2 threshold.
- qmodel: the fake-quantized network, bit-identical to the engine in eval mode.
- retrain: TQT retraining of weights and thresholds.
- export: integers and shifts written as model.npz and model.json.
- integer: the numpy integer engine and its loader, `load_int8_engine`.
- onnx_export: the same model as ONNX with QuantizeLinear and DequantizeLinear.
- pipeline: all of the above behind `deeproute quantize`.

Only the integer engine is imported here, so loading an exported model needs numpy alone.
"""

from deeproute.quant.integer import IntegerFCN, load_int8_engine

__all__ = ["IntegerFCN", "load_int8_engine"]
