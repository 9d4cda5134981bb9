"""JSON lines files (one JSON object per line): the line parser the item text store and the summary store share,
with errors that name the file and the line."""
import json


def parse_object(line: str, path, line_no, error=ValueError) -> dict:
    """The JSON object on ``line`` (line ``line_no`` of ``path``).

    Raises:
        ``error``: naming the file and the line when the line is not valid JSON or not an object.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise error(f"{path}, line {line_no}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise error(f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}")
    return record
