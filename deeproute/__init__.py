"""deeproute: route IC nets with a fully convolutional network and deploy it in fixed point.

Implements Jain & Okabe (2017), "Training a Fully Convolutional Neural Network to Route
Integrated Circuits", and Jain, Gural, Wu & Dick (2019), "Trained Quantization Thresholds
for Accurate and Efficient Fixed-Point Inference of Deep Neural Networks".
"""

__version__ = "0.1.0"
