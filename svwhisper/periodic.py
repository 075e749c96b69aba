"""Work repeated on a timer in a daemon thread: sweeps that must run also while no request comes."""

import threading


def run_every(seconds: float, work, name: str) -> threading.Event:
    """Call `work()` every `seconds` from a daemon thread named `name`; set the event returned to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            work()

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop
