"""The checkers load and run with no network and no NLTK download, without lm_eval.tasks' __init__."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import socket, sys

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    socket.socket.connect = no_network
    socket.create_connection = no_network

    import nltk.downloader

    def no_download(self, *args, **kwargs):
        raise AssertionError(f"nltk download attempted: {args}")

    nltk.downloader.Downloader.download = no_download
    nltk.download = nltk.downloader.Downloader().download  # nltk.download is a bound method made at import

    from herl.rewards import checkers
    from herl.rewards.instruction_following import score_if
    import os

    ifeval = {"instruction_id_list": ["length_constraints:number_sentences", "language:response_language",
                                      "detectable_format:title"],
              "kwargs": [{"relation": "at least", "num_sentences": 2}, {"language": "en"}, {}]}
    r = score_if("<<T>> This is one sentence. This is another one.", ifeval, "ifeval")
    assert r.error is None and [c.followed for c in r.constraints] == [True, True, True], r
    ifbench = {"instruction_id_list": ["ratio:stop_words", "words:start_verb"],
               "kwargs": [{"percentage": 90}, {}]}
    r = score_if("The cat sat on the mat and it was happy.", ifbench, "ifbench")
    assert r.error is None and r.constraints[0].followed is True and r.constraints[1].followed is None, r
    assert os.environ["NLTK_DATA"].split(os.pathsep)[0] == checkers.configure_nltk()
    assert "averaged_perceptron_tagger_eng" in checkers.MISSING_NLTK_RESOURCES
    assert nltk.download.__func__ is no_download  # our guard put the patched one back
    heavy = [m for m in ("lm_eval.tasks", "datasets", "if_verifiable.api") if m in sys.modules]
    assert not heavy, heavy
    assert "lm_eval.tasks.ifeval.instructions_registry" in sys.modules
    print("OK")
    """
)


def test_checkers_run_offline_without_downloads() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("OK")
