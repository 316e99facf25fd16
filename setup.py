from setuptools import find_packages, setup

setup(
    name="recon-mtl",
    version="0.1.0",
    description="Multi-task learning with gradient manipulation and Recon layer branching",
    packages=find_packages(include=["recon", "recon.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "pyyaml",
        "tqdm",
        "wandb",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "scipy"]},
    entry_points={"console_scripts": ["recon=recon.cli:main"]},
)
