"""Installs jaxprune: structured pruning for JAX/Flax."""
import setuptools

setuptools.setup(
    name='jaxprune',
    version='0.1.0',
    description='Structured neural-network pruning for JAX/Flax: channel '
                'graphs, masks in optax state, physical slimming, REPrune.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['jaxprune', 'jaxprune.*']),
    python_requires='>=3.10',
    install_requires=[
        'jax>=0.7.2',
        'flax>=0.11.2',
        'optax>=0.2.4',
        'orbax-checkpoint>=0.11.0',
        'tensorflow-datasets>=4.9.7',
        'importlib_resources',  # tfds needs it to build local datasets.
        'flatbuffers',  # jax.export serialization.
        'grain>=0.2.12',
        'numpy>=2.0',
        'scipy>=1.11',
        'ml_collections>=1.0.0',
        'absl-py>=2.0',
        'pillow>=10.0',
        'scikit-learn>=1.3',
        'tensorboardX>=2.6',
        'matplotlib>=3.7',
        'pycocotools>=2.0.7',  # COCO mAP (the standard evaluator).
    ],
    extras_require={
        'test': ['pytest>=7.4', 'pytest-xdist>=3.3', 'hypothesis>=6.80'],
        'tf': ['tensorflow-cpu>=2.15'],
        # Hugging Face Flax models for tests/test_real_models.py (Flax
        # support ends with transformers 5).
        'hf': ['transformers>=4.40,<5'],
    },
)
