"""The Flex Template launcher's FLEX_TEMPLATE_PYTHON_PY_FILE (see the Dockerfile beside it).

Runs the pipeline module HERALD_PIPELINE names (set per template image) as `python -m` would, with
the template's parameters and Dataflow's options as its command line: the same entry point as
`python -m pipelines.herald_pipeline ...` everywhere else.
"""

import os
import runpy

runpy.run_module(os.environ["HERALD_PIPELINE"], run_name="__main__", alter_sys=True)
