from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="deeproute",
    version="0.1.0",
    description="Route IC nets with a fully convolutional network and deploy it in fixed point",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["deeproute", "deeproute.*"]),
    package_data={"deeproute": ["weights/*.pt", "weights/*.md", "weights/fcn32-int8/*", "weights/fcn32-w4a8/*"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "isal>=1.6",
        "click>=8.1",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "torch>=2.2",
        "gdstk>=0.9",  # `deeproute route` writes GDSII
    ],
    extras_require={
        "layout": ["klayout>=0.28"],
        "deploy": ["onnx>=1.15", "onnxruntime>=1.17"],
        "test": [
            "pytest>=7.4",
            "hypothesis>=6.80",
            "gdstk>=0.9",
            "klayout>=0.28",
            "onnx>=1.15",
            "onnxruntime>=1.17",
        ],
    },
    entry_points={"console_scripts": ["deeproute = deeproute.cli:main"]},
)
