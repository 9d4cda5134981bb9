"""`recbole-embsum --help` and every `recbole-embsum <command> --help` answer at once: building the parser imports
neither torch nor RecBole (their import alone takes seconds), and a command still finds EmbSum registered."""
import json
import os
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "transformers", "recbole", "ray", "pandas")

# In a fresh interpreter, as the console script does: build the parser, render every (sub)command's help, report
# which heavy libraries got imported and how long it took.
PROBE = """
import json, sys, time
start = time.process_time()  # CPU time: the import cost, not the wait for a busy CPU
import recbole_embsum_cli
from recbole_embsum.cli import build_parser
parser = build_parser()
helps = [parser.format_help()]
for name, sub in parser._subparsers._group_actions[0].choices.items():
    helps.append(sub.format_help())
    for action in sub._actions:
        if isinstance(action.choices, dict):  # nested subcommands: convert mind|goodreads
            helps.extend(nested.format_help() for nested in action.choices.values())
elapsed = time.process_time() - start
print(json.dumps({"heavy": [m for m in %r if m in sys.modules], "helps": len(helps), "seconds": elapsed}))
""" % (HEAVY,)


def test_building_every_help_imports_no_heavy_library_and_takes_under_a_second():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    assert report["helps"] >= 8  # convert mind/goodreads, synth, summarize, compare, export, recommend, demo, ...
    assert report["seconds"] < 1.0, report


def test_help_of_each_command_exits_quickly_and_cleanly():
    commands = [[], ["convert"], ["convert", "mind"], ["synth"], ["summarize"], ["compare"], ["evaluate-summaries"],
                ["export"], ["recommend"], ["demo"]]
    for command in commands:
        start = time.perf_counter()
        # The console script runs recbole_embsum_cli:main (setup.py; the wheel's entry point is tested in
        # test_registry.py); -m runs the same module whether or not this environment's script predates it.
        result = subprocess.run([sys.executable, "-m", "recbole_embsum_cli", *command, "--help"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)
        elapsed = time.perf_counter() - start
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("usage: recbole-embsum"), command
        assert result.stderr == "", (command, result.stderr)  # no warnings
        assert elapsed < 10, (command, elapsed)  # interpreter start-up included; the import cost is checked above


@pytest.mark.slow  # imports RecBole, torch and transformers in a fresh interpreter
def test_a_command_run_through_the_console_script_finds_embsum_registered(tmp_path):
    # The script defers registration while it parses; cli.main registers before the command runs.
    code = ("import sys, recbole_embsum_cli, recbole_embsum\n"
            "assert 'recbole_embsum.registry' not in sys.modules\n"
            "from recbole_embsum.cli import main\n"
            "assert main(['synth', 'mind', '--output', 'raw', '--users', '10', '--items', '60']) == 0\n"
            "assert 'recbole_embsum.registry' not in sys.modules  # synth and convert only read and write files\n"
            "try:\n"
            "    main(['summarize', '--dataset', 'none', '--data-path', 'missing'])  # registers, then fails\n"
            "except BaseException:\n"
            "    pass\n"
            "import recbole.utils\n"
            "print(recbole.utils.get_model('EmbSum').__module__)\n")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "recbole_embsum.model.embsum"
