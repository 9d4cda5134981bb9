"""The ``recbole-embsum`` console script.

``import recbole_embsum`` registers EmbSum with RecBole, which imports RecBole, ray, torch and transformers (seconds
on a small machine). The script needs them only once a command runs, so it imports the package with registration
deferred (``DEFER_REGISTRATION``, read by ``recbole_embsum/__init__.py``): ``recbole-embsum --help`` and every
``recbole-embsum <command> --help`` answer at once, and ``recbole_embsum.cli.main`` registers before running a command.
"""
import sys

DEFER_REGISTRATION = True


def main(argv=None):
    from recbole_embsum.cli import main as run_command

    return run_command(argv)


if __name__ == "__main__":  # python -m recbole_embsum_cli: let the package find the flag under its usual name
    sys.modules.setdefault("recbole_embsum_cli", sys.modules[__name__])
    sys.exit(main())
