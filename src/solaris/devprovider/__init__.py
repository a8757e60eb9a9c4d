"""`solaris dev-provider`: a local OpenAI-compatible server for tests and benchmarks."""

from solaris.devprovider.request import Behaviour
from solaris.devprovider.server import DevProvider, build_app, run

__all__ = ["Behaviour", "DevProvider", "build_app", "run"]
