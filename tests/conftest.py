"""Every test runs with Ctrl-C as a terminal gives it.

A shell starts a background command (`pytest &`, nohup, some CI runners) with SIGINT ignored, Python then keeps it
ignored, and so does every process the tests start. A run leaves an ignored SIGINT ignored (tools.runtime.stop_on_signal:
a background job must not stop on a Ctrl-C meant for the foreground), so the Ctrl-C tests would test nothing and
fail: they failed in this way, and only in this way, when the fast tier ran in the background. The tests are about
what a person at a terminal gets, so they start from that (tests/test_robustness.py checks the ignored case by
itself)."""
import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
