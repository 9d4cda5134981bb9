"""One spelling for the options of every ``recbole-embsum`` command: dashes (``--data-path``, ``--max-users``).

RecBole's own configuration keys keep RecBole's ``--key=value`` spelling (``--train_batch_size=64``) where a command
passes them on to ``Config`` (``run_recbole``, ``compare``); the options a command defines itself are dashed.

:class:`DashedParser` is the argparse parser of ``recbole-embsum`` (``recbole_embsum.cli``); argparse builds every
subcommand's parser with the class of its parent, so a command module that calls ``subparsers.add_parser(...)`` and
``add_argument("--new-option", ...)`` gets this behaviour without doing anything:

* the underscore spelling of a dashed option (``--data_path DIR``, ``--max_users=5``) still works until the next
  release, and each use prints one line on stderr naming the new spelling; a flag written the old ``key=value`` way
  (``--drop_empty_history=True`` / ``=False``) becomes ``--drop-empty-history`` / ``--no-drop-empty-history``;
* an option defined with an underscore is a programming error: parsing or ``--help`` raises ``ValueError`` naming
  it, so a new option cannot bring the mixed style back.
"""
import argparse
import sys

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def dashed(option):
    """``"--data_path"`` -> ``"--data-path"`` (the leading ``--`` kept)."""
    return "--" + option[2:].replace("_", "-")


class DashedParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose options are dashed and which accepts their old underscore spellings (deprecated)."""

    def check_dashed(self):
        """ValueError for an option of this parser spelled with an underscore."""
        for action in self._actions:
            for option in action.option_strings:
                if option.startswith("--") and "_" in option:
                    raise ValueError(f"{self.prog}: option {option} is spelled with '_'; options of recbole-embsum "
                                     f"commands are dashed: {dashed(option)}")

    def format_help(self):
        self.check_dashed()
        return super().format_help()

    def parse_known_args(self, args=None, namespace=None):
        self.check_dashed()
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.respell(args), namespace)

    def respell(self, args):
        """``args`` with each deprecated underscore spelling of one of this parser's options replaced by the dashed
        one (one stderr line each); everything after ``--`` and every other token stays as it is."""
        respelled = []
        for position, token in enumerate(args):
            if token == "--":
                return respelled + args[position:]
            respelled.extend(self._respell_token(token))
        return respelled

    def _respell_token(self, token):
        option, equals, value = token.partition("=")
        if not option.startswith("--") or "_" not in option:
            return [token]
        new = dashed(option)
        action = self._option_string_actions.get(new)
        if action is None:  # not one of ours: a RecBole --key=value (compare) or a misspelling argparse reports
            return [token]
        print(f"{self.prog}: warning: {option} is deprecated and stops working in the next release; write {new}",
              file=sys.stderr)
        if not equals or action.nargs != 0:
            return [new + equals + value]
        # An on/off flag given the old key=value way, e.g. --drop_empty_history=True.
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return [new]
        negative = "--no-" + new[2:]
        if word in FALSE_WORDS and negative in action.option_strings:
            return [negative]
        if word in FALSE_WORDS:
            return []  # a flag that can only be switched on: leaving it out is False
        self.error(f"argument {new}: expected True or False after {option}=, got {value!r}")
