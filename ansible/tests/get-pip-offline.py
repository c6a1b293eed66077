"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its venvs.

ansible-test fetches get-pip from a server of its own; the machines that run our checks reach
only the package registries. This stand-in does the same job with what Python brings:
ensurepip, then `pip install ARGS` (the pinned pip, setuptools and wheel ansible-test asks
for) from the configured package index. .ci/setup saves it where ansible-test caches get-pip.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", *sys.argv[1:]])
