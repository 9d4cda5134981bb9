"""EmbSum (Zhang et al. 2024, "EmbSum: Leveraging the Summarization Capabilities of Large Language Models for
Content-Based Recommendations") as a RecBole plugin.

``import recbole_embsum`` registers the EmbSum model, EmbSumTrainer, the MIND per-impression metrics and the packaged
yaml defaults with RecBole, so RecBole's own entry points find them by name::

    import recbole_embsum
    recbole_embsum.run_recbole(model="EmbSum", dataset="mind", config_dict={"data_path": "data"})
"""
from recbole_embsum import compat  # noqa: F401  (first: its warning filter must precede RecBole's ray import)
from recbole_embsum.registry import default_config_files, register

register()

from recbole_embsum.model.embsum import EmbSum  # noqa: E402
from recbole_embsum.quick_start import load_data_and_model, run, run_recbole  # noqa: E402
from recbole_embsum.trainer import EmbSumTrainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EmbSum", "EmbSumTrainer", "default_config_files", "load_data_and_model", "register", "run", "run_recbole"]
