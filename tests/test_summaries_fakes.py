"""Shared helpers of the summaries tests (no tests here): a hand-written dataset folder and a scripted
OpenAI-compatible chat-completions server on 127.0.0.1."""
import csv
import http.server
import json
import re
import threading

INTER_HEADER = ["impression_id:token", "user_id:token", "item_id:token", "label:float", "timestamp:float",
                "item_id_list:token_seq", "neg_items:token_seq"]

# item_id, title, abstract, category, subcategory
ITEMS = [
    ("N1", "Lakers beat Celtics in overtime", "The Lakers won a close game in Boston.", "sports", "nba"),
    ("N2", "Stocks rally as inflation cools", "Markets rose after the report.", "finance", "markets"),
    ("N3", "Celtics sign veteran guard", "Boston adds depth to its roster.", "sports", "nba"),
    ("N4", "Easy pasta recipes for weeknights", "Five dinners in twenty minutes.", "foodanddrink", "recipes"),
    ("N5", "Storm closes highways", "Snow hits the region.", "news", "weather"),
]

# impression_id, user_id, item_id (clicked), timestamp, history (oldest first), negatives
TRAIN_ROWS = [
    ("I1", "U1", "N3", 100, "N1 N2", "N4"),
    ("I2", "U2", "N1", 50, "N3", "N2 N5"),
    ("I3", "U1", "N4", 200, "N1 N2 N3", "N5"),  # U1's latest row: its history holds the I1 click (not summarised)
    ("I4", "U3", "N5", 10, "N2", "N1"),
    ("I5", "U3", "N2", 20, "N2", "N1"),  # U3 clicks an item already in its history
]


def write_dataset(root, name="toy", items=ITEMS, rows=TRAIN_ROWS):
    """Write ``<root>/<name>/<name>.train.inter`` and ``<name>.text.jsonl`` in the design contract's format."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.train.inter", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(INTER_HEADER)
        for impression, user, item, stamp, history, negatives in rows:
            writer.writerow([impression, user, item, "1", str(stamp), history, negatives])
    with open(folder / f"{name}.text.jsonl", "w", encoding="utf-8") as handle:
        for item in items:
            fields = dict(zip(("item_id", "title", "abstract", "category", "subcategory"), item))
            handle.write(json.dumps(fields, ensure_ascii=False) + "\n")
    return folder


def many_users_dataset(root, name, users):
    """A dataset where user ``Uk``'s history is one own item titled ``Item of Uk`` (so a server can tell users
    apart); each user clicks the next user's item."""
    items = [(f"M{k}", f"Item of U{k}", f"About thing {k}.", "news", "misc") for k in range(users)]
    rows = [(f"I{k}", f"U{k}", f"M{(k + 1) % users}", k, f"M{k}", "") for k in range(users)]
    return write_dataset(root, name, items, rows)


class ChatServer:
    """A chat-completions server that follows a script, then answers normally.

    ``script`` holds one action per request, in arrival order: ``("status", code, headers, message)``, ``"drop"``
    (close the connection without answering) or ``("hang", event)`` (wait for ``event``, then drop). Normal answers
    are ``"Summary for <user>."`` where ``<user>`` is the first ``Item of Uk`` owner in the prompt, else ``someone``.
    ``requests`` records every request body; ``users`` every user seen, in arrival order.
    """

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        self.users = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                found = re.search(r"Item of (U\d+)", body["messages"][-1]["content"])
                user = found.group(1) if found else "someone"
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "authorization": self.headers.get("Authorization")})
                    server.users.append(user)
                    action = server.script.pop(0) if server.script else "ok"
                if action == "drop":
                    self.close_connection = True
                    return
                if action[0] == "hang":
                    action[1].wait(30)
                    self.close_connection = True
                    return
                if action == "ok":
                    code, headers = 200, {}
                    payload = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                        {"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f" Summary for {user}.\n"}}]}
                else:
                    _, code, headers, message = action
                    payload = {"error": {"message": message, "type": "invalid_request_error"}}
                data = json.dumps(payload).encode("utf-8")
                self.send_response(code)
                for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                   **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client killed mid-request is expected
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
