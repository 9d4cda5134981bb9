"""recbole-embsum: EmbSum (Zhang et al. 2024) as a RecBole plugin.

Ranges below say what RecBole 1.2.1 needs to run unmodified; `constraints.txt` pins the exact versions CI tests.
"""
from setuptools import setup

INSTALL_REQUIRES = [
    "recbole==1.2.1",              # the release this plugin registers into (its internals are relied on)
    "numpy>=1.24,<2",              # RecBole's Config touches np.float_/np.complex_/np.unicode_ (gone in numpy 2)
    "pandas>=2.2,<2.3",            # pandas 3 copy-on-write silently breaks RecBole's fillna(inplace) and agg(len)
    "setuptools<81",               # ray 2.6.3 (imported by recbole.quick_start) needs pkg_resources
    "ray>=1.13,<=2.6.3",           # RecBole's own bound; ray 2.6.3 has no Python 3.12 wheels -> Python 3.11
    "torch>=2.6,<2.14",            # the torch.load(weights_only) workaround targets >= 2.6; keep the CPU 2.13 wheel usable
    "transformers>=4.40",          # T5 encoder/decoder, from_pretrained, generate
    "tokenizers>=0.19",            # offline tokenizer trained on item text
    "safetensors>=0.4",            # exported poly-embeddings
    "torchmetrics>=1.3",           # per-impression retrieval metrics
    "rouge-score>=0.1.2",          # summary ROUGE (Table 3)
    "matplotlib>=3.7",             # comparison bar chart
    "tqdm>=4.60",
    "PyYAML>=6.0",
    "thop",                        # RecBole's get_flops imports it
    "tensorboard",                 # RecBole's trainer imports SummaryWriter
]

setup(
    name="recbole-embsum",
    version="0.1.0",
    description="EmbSum (summarization-supervised poly-embeddings for content-based recommendation) for RecBole",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    packages=[
        "recbole_embsum",
        "recbole_embsum.model",
        "recbole_embsum.evaluation",
        "recbole_embsum.summaries",
        "recbole_embsum.serving",
        "recbole_embsum.properties",
        "dataset_converters",
    ],
    py_modules=["recbole_embsum_cli"],  # the recbole-embsum script: builds its parser without importing torch
    # The top-level properties/ folder is shipped inside the package, so a non-editable install finds the yaml.
    package_dir={"recbole_embsum.properties": "properties"},
    package_data={"recbole_embsum.properties": ["model/*.yaml", "dataset/*.yaml", "presets/*.yaml", "*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2"]},
    entry_points={
        "console_scripts": [
            "run_recbole = recbole_embsum.quick_start:main",
            "recbole-embsum = recbole_embsum_cli:main",
        ]
    },
)
