"""Start the chat page and API with the settings from the environment (``make run``).

No logic here: ``rag.serve.run_server`` builds the app, loads the model and index in the
background (logging progress) and serves until Ctrl-C. Build the index first:
``rag index build data/``.
"""

from __future__ import annotations

import os
import sys

# Offline by default, before gradio / huggingface_hub are imported: nothing may reach outside hosts.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin-wait collapse on a busy 2-core box (a query took 2 s instead of 40 ms);
# passive waiting must be set before torch/faiss load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rag.config import Settings  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.serve import run_server  # noqa: E402

if __name__ == "__main__":
    sys.stderr.write("启动《广东工运》智能问答服务（首次启动需加载向量模型，约半分钟）…\n")
    try:
        run_server(Settings())
    except RagError as exc:
        sys.stderr.write(f"错误：{exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("已停止。\n")
