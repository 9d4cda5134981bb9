"""EmbSum (Zhang et al. 2024, "EmbSum: Leveraging the Summarization Capabilities of Large Language Models for
Content-Based Recommendations") as a RecBole plugin.

``import recbole_embsum`` registers the EmbSum model, EmbSumTrainer, the MIND per-impression metrics and the packaged
yaml defaults with RecBole, so RecBole's own entry points find them by name::

    import recbole_embsum
    recbole_embsum.run_recbole(model="EmbSum", dataset="mind", config_dict={"data_path": "data"})

Registration imports RecBole, torch and transformers (several seconds). The ``recbole-embsum`` console script
(``recbole_embsum_cli``) imports this package with registration deferred, so ``--help`` answers at once; it registers
before it runs a command. The public names below are imported on first use.
"""
import sys

from recbole_embsum.lazy import lazy_attributes

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first attribute access).
_PUBLIC = {
    "EmbSum": "recbole_embsum.model.embsum",
    "EmbSumTrainer": "recbole_embsum.trainer",
    "default_config_files": "recbole_embsum.registry",
    "load_data_and_model": "recbole_embsum.quick_start",
    "run": "recbole_embsum.quick_start",
    "run_recbole": "recbole_embsum.quick_start",
}
__all__ = sorted([*_PUBLIC, "register"])
__getattr__ = lazy_attributes(__name__, _PUBLIC)


def register():
    """Make RecBole find EmbSum, its trainer, metrics, collector and packaged yaml by name (idempotent)."""
    from recbole_embsum import compat  # noqa: F401  (first: its warning filter must precede RecBole's ray import)
    from recbole_embsum import registry

    registry.register()


def _registration_deferred():
    """True while the ``recbole-embsum`` console script builds its parser (see ``recbole_embsum_cli``)."""
    launcher = sys.modules.get("recbole_embsum_cli")
    return bool(getattr(launcher, "DEFER_REGISTRATION", False))


if not _registration_deferred():
    register()
