"""The peak of a measured quantity (memory), sampled in a background thread while a ``with`` block runs."""
import threading


class PeakSampler:
    """Calls ``measure()`` every ``interval`` seconds in a thread while the block runs, and once more at its end;
    ``peak`` is the largest reading (NaN readings are skipped)."""

    def __init__(self, measure, interval):
        self.measure, self.interval, self.peak = measure, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        value = self.measure()
        if value == value:  # not NaN
            self.peak = max(self.peak, value)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
