"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its venvs.

ansible-test fetches get-pip from a server of its own; the machines that run our checks reach
only the package registries. This stand-in does the same job with what Python brings:
ensurepip, then `pip install ARGS` (the pinned pip, setuptools and wheel ansible-test asks
for) from the configured package index. get-pip's own options --no-setuptools and --no-wheel
(do not install those) need nothing done. .ci/setup saves it where ansible-test caches get-pip.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")
arguments = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "pip", "install", *arguments])
